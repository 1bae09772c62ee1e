//! What an operator watches: `GET /metrics` in the OpenMetrics text format, for admins only.

use crate::common::{draft, phone, segment};
use anyhow::Result;
use reqwest::StatusCode;
use riverchief_shared::domain::{IssueCategory, Severity};
use riverchief_tests::{login, TestServer};

async fn scrape(base: &str, token: Option<&str>) -> Result<(StatusCode, String)> {
    let mut r = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await?;
    Ok((r.status(), r.text().await?))
}

/// The value of the sample whose line starts with `series` (name and labels as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|rest| rest.trim().split(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_pushes_and_alerts_for_admins_only() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let (status, _) = scrape(&base, None).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = scrape(&base, Some(&login(&base, "chen").await?)).await?;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A webhook to a receiver that is not there: its delivery stays pending in the outbox.
    let admin = login(&base, "admin").await?;
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(&admin)
        .json(
            &serde_json::json!({"url": "http://127.0.0.1:9/hook", "secret": "s3cret", "kinds": [],
                                  "format": "generic", "include_drill": false}),
        )
        .send()
        .await?;
    assert!(r.status().is_success(), "{}", r.text().await?);

    let dir = tempfile::tempdir()?;
    let phone = phone(dir.path(), &base, "zhangwei").await?;
    let qhl02 = segment(&phone, "QHL-02").await?;
    phone
        .report_issue(draft(
            &qhl02,
            0.4,
            IssueCategory::Leak,
            Severity::Significant,
            None,
            "漏洞",
            None,
            vec![],
        ))
        .await?;
    phone.sync(&|_| {}).await?;

    let (status, text) = scrape(&base, Some(&admin)).await?;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics text: {text}");
    assert_eq!(
        sample(
            &text,
            r#"riverchief_sync_mutations_total{status="applied",code=""}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"riverchief_alerts_active{kind="critical_hazard",level="critical",drill="false",acknowledged="false"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"riverchief_webhook_deliveries{state="pending"}"#),
        Some(1.0),
        "{text}"
    );
    // Requests are counted by route pattern, not by raw path.
    let pushes = sample(
        &text,
        r#"riverchief_http_requests_total{method="POST",route="/api/v1/sync/push",status="200"}"#,
    );
    assert_eq!(pushes, Some(1.0), "{text}");
    assert!(
        sample(
            &text,
            r#"riverchief_http_requests_total{method="GET",route="/metrics",status="403"}"#
        ) == Some(1.0),
        "{text}"
    );
    Ok(())
}
