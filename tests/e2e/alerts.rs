//! Alerts raised by what patrollers report: a critical hazard becomes an alert the moment its report
//! is pushed, a duty lead acknowledges it, and the reporter's next sync shows the acknowledgement.

use crate::common::{add_user, draft, open_client, phone, segment, Http};
use anyhow::Result;
use reqwest::StatusCode;
use riverchief_shared::alert::{AlertKind, AlertState};
use riverchief_shared::domain::{IssueCategory, Outflow, Severity};
use riverchief_tests::{login, TestServer};
use serde_json::Value;

async fn post(base: &str, token: &str, path: &str) -> Result<(StatusCode, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await?;
    crate::common::status_and_body(r).await
}

fn alerts_of(list: &Value) -> Vec<Value> {
    list["alerts"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_critical_hazard_is_an_alert_whose_acknowledgement_reaches_the_reporter() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    add_user(&server, "wang", "patroller", &["QHL-01"])?;
    let dir = tempfile::tempdir()?;
    let zhangwei = phone(dir.path(), &base, "zhangwei").await?;
    let qhl02 = segment(&zhangwei, "QHL-02").await?;

    // An ordinary report raises nothing; muddy piping does.
    zhangwei
        .report_issue(draft(
            &qhl02,
            0.2,
            IssueCategory::Litter,
            Severity::Minor,
            None,
            "塑料袋",
            None,
            vec![],
        ))
        .await?;
    let piping = zhangwei
        .report_issue(draft(
            &qhl02,
            0.5,
            IssueCategory::Piping,
            Severity::Major,
            Some(Outflow::Muddy),
            "背水坡脚冒浑水",
            None,
            vec![],
        ))
        .await?;
    zhangwei.sync(&|_| {}).await?;

    let lead = Http::new(&base, &login(&base, "chen").await?);
    let open = alerts_of(&lead.get("/api/v1/alerts").await?);
    assert_eq!(open.len(), 1, "{open:?}");
    let alert = &open[0];
    assert_eq!(alert["kind"], "critical_hazard");
    assert_eq!(alert["state"], "open");
    assert_eq!(alert["level"], "critical");
    assert_eq!(alert["drill"], false);
    assert_eq!(alert["issue_id"], piping.to_string());
    assert!(
        alert["message"].as_str().unwrap_or("").contains("管涌"),
        "{alert}"
    );
    let id = alert["id"].as_str().unwrap_or_default().to_owned();

    // Who sees it: the reporter, a patroller assigned to the segment; not one elsewhere.
    let lina = Http::new(&base, &login(&base, "lina").await?);
    assert_eq!(alerts_of(&lina.get("/api/v1/alerts").await?).len(), 1);
    let wang_token = login(&base, "wang").await?;
    let wang = Http::new(&base, &wang_token);
    assert!(alerts_of(&wang.get("/api/v1/alerts").await?).is_empty());

    // A patroller may not acknowledge; a malformed or unknown id is refused; nothing changes.
    let (status, body) = post(&base, &wang_token, &format!("/api/v1/alerts/{id}/ack")).await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let lead_token = login(&base, "chen").await?;
    let (status, body) = post(&base, &lead_token, "/api/v1/alerts/nope/ack").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "id");
    let unknown = riverchief_shared::id::AlertId::new();
    let (status, _) = post(&base, &lead_token, &format!("/api/v1/alerts/{unknown}/ack")).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = reqwest::Client::new()
        .get(format!("{base}/api/v1/alerts?state=bogus"))
        .bearer_auth(&lead_token)
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await?;
    assert_eq!(body["error"]["field"], "state");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        alerts_of(&lead.get("/api/v1/alerts?state=open").await?).len(),
        1
    );

    // The duty lead acknowledges; a second acknowledgement keeps the first.
    let (status, acked) = post(&base, &lead_token, &format!("/api/v1/alerts/{id}/ack")).await?;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    assert!(
        acked["acknowledged_by_name"]
            .as_str()
            .unwrap_or("")
            .contains("陈"),
        "{acked}"
    );
    let admin_token = login(&base, "admin").await?;
    let (status, again) = post(&base, &admin_token, &format!("/api/v1/alerts/{id}/ack")).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["acknowledged_by"], acked["acknowledged_by"]);
    assert_eq!(again["acknowledged_at"], acked["acknowledged_at"]);

    // The receipt: the reporter's next sync shows who acknowledged and when.
    zhangwei.sync(&|_| {}).await?;
    let mine = zhangwei.alerts().await?;
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].kind, AlertKind::CriticalHazard);
    assert_eq!(mine[0].issue_id, Some(piping));
    assert_eq!(mine[0].state, AlertState::Acknowledged);
    assert_eq!(
        mine[0]
            .acknowledged_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        acked["acknowledged_at"].as_str().map(|s| {
            crate::common::parse_time(s)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_default()
        })
    );
    // The other patroller's device never receives it.
    let wang_dir = tempfile::tempdir()?;
    let wang_phone = open_client(wang_dir.path(), &base)?;
    wang_phone
        .login(&base, "wang", riverchief_tests::DEMO_PASSWORD, "phone")
        .await?;
    wang_phone.sync(&|_| {}).await?;
    assert!(wang_phone.alerts().await?.is_empty());
    Ok(())
}
