//! What a webhook receives: the body in the webhook's format, and the signatures.
//!
//! Every delivery, whatever its format, carries `X-Riverchief-Signature: sha256=<hex of
//! HMAC-SHA256(secret, body)>`, `X-Riverchief-Timestamp` (Unix seconds of this attempt) and
//! `Idempotency-Key` (the delivery id, the same on every attempt). A DingTalk robot also gets its
//! own signature in the URL: `timestamp` (Unix milliseconds) and `sign` = base64(HMAC-SHA256(secret,
//! timestamp + "\n" + secret)). Drill alerts say 演练 in every format (and `drill: true` in JSON).

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use riverchief_shared::alert::{Alert, AlertKind, AlertLevel};
use riverchief_shared::id::DeliveryId;
use riverchief_shared::webhook::{AlertEvent, AlertNotice, WebhookFormat};
use serde_json::json;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// WeCom's limit on a markdown message's content, in bytes.
const WECOM_MAX_BYTES: usize = 4096;
/// DingTalk's markdown text: kept to the same size.
const DINGTALK_MAX_BYTES: usize = 4096;

/// HMAC-SHA256 of `message` under `secret`.
pub fn hmac_sha256(secret: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The `X-Riverchief-Signature` header value.
pub fn signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(secret.as_bytes(), body))
    )
}

/// DingTalk's `sign` query parameter for `timestamp_ms` (before URL encoding).
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let to_sign = format!("{timestamp_ms}\n{secret}");
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(secret.as_bytes(), to_sign.as_bytes()))
}

fn kind_zh(k: AlertKind) -> &'static str {
    match k {
        AlertKind::StageChanged => "水位分级变化",
        AlertKind::RapidRise => "水位快速上涨",
        AlertKind::SegmentOverdue => "堤段巡查超时",
        AlertKind::CriticalHazard => "险情",
        AlertKind::StockBelowQuota => "物资低于定额",
        AlertKind::LotExpiring => "物资批次到期",
        AlertKind::DispatchOverdue => "派遣逾期",
        AlertKind::IssueUnaccepted => "受理超时",
        AlertKind::ResponseChanged => "应急响应",
    }
}

fn level_zh(l: AlertLevel) -> &'static str {
    match l {
        AlertLevel::Info => "提示",
        AlertLevel::Warning => "警告",
        AlertLevel::Critical => "严重",
    }
}

/// Beijing time, as the duty lead's group chat reads it (China keeps no daylight saving).
fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&riverchief_shared::domain::shanghai())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The title line: `【演练】险情 · 新告警`.
pub fn title(event: AlertEvent, alert: &Alert) -> String {
    let drill = if alert.drill { "【演练】" } else { "" };
    format!("{drill}{} · {}", kind_zh(alert.kind), event.zh())
}

/// The markdown lines both group robots render: the title, the message, level and times, the
/// English message.
fn markdown_lines(event: AlertEvent, alert: &Alert, wecom: bool) -> Vec<String> {
    let level = level_zh(alert.level);
    let level = if wecom {
        let color = match alert.level {
            AlertLevel::Info => "info",
            AlertLevel::Warning | AlertLevel::Critical => "warning",
        };
        format!("<font color=\"{color}\">{level}</font>")
    } else {
        level.to_owned()
    };
    let mut lines = vec![
        format!("## {}", title(event, alert)),
        format!("**{}**", alert.message),
        format!("> 级别：{level}"),
        format!("> 发生：{}（北京时间）", local(alert.raised_at)),
    ];
    if let Some(at) = alert.acknowledged_at {
        let who = alert
            .acknowledged_by_name
            .as_deref()
            .unwrap_or("值班负责人");
        lines.push(format!("> 确认：{who} {}", local(at)));
    }
    if let Some(at) = alert.resolved_at {
        lines.push(format!("> 解除：{}", local(at)));
    }
    if alert.drill {
        lines.push("> 演练消息，非真实险情".to_owned());
    }
    lines.push(String::new());
    lines.push(alert.message_en.clone());
    lines
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The body of a delivery in `format`.
pub fn body(format: WebhookFormat, event: AlertEvent, alert: &Alert) -> serde_json::Value {
    match format {
        WebhookFormat::Generic => serde_json::to_value(AlertNotice {
            event,
            alert: alert.clone(),
        })
        .unwrap_or_else(|_| json!({"event": event, "alert": {"id": alert.id}})),
        WebhookFormat::Wecom => json!({
            "msgtype": "markdown",
            "markdown": {
                "content": cut(markdown_lines(event, alert, true).join("\n"), WECOM_MAX_BYTES),
            },
        }),
        WebhookFormat::Dingtalk => json!({
            "msgtype": "markdown",
            "markdown": {
                "title": title(event, alert),
                "text": cut(markdown_lines(event, alert, false).join("\n\n"), DINGTALK_MAX_BYTES),
            },
        }),
    }
}

/// One attempt, ready to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub url: reqwest::Url,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// Builds the attempt made at `now` of a delivery to `url` with `secret`. Fails only when the stored
/// URL no longer parses.
pub fn outgoing(
    url: &str,
    secret: &str,
    format: WebhookFormat,
    delivery: DeliveryId,
    event: AlertEvent,
    alert: &Alert,
    now: DateTime<Utc>,
) -> Result<Outgoing, String> {
    let mut url = reqwest::Url::parse(url).map_err(|e| format!("the URL {url:?}: {e}"))?;
    if format == WebhookFormat::Dingtalk {
        let ms = now.timestamp_millis();
        url.query_pairs_mut()
            .append_pair("timestamp", &ms.to_string())
            .append_pair("sign", &dingtalk_sign(secret, ms));
    }
    let body = body(format, event, alert).to_string().into_bytes();
    let headers = vec![
        ("content-type", "application/json; charset=utf-8".to_owned()),
        ("x-riverchief-signature", signature(secret, &body)),
        ("x-riverchief-timestamp", now.timestamp().to_string()),
        ("x-riverchief-event", event.as_str().to_owned()),
        ("idempotency-key", delivery.to_string()),
    ];
    Ok(Outgoing { url, body, headers })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use riverchief_shared::alert::AlertState;
    use riverchief_shared::id::AlertId;

    fn alert(drill: bool) -> Alert {
        let t = DateTime::parse_from_rfc3339("2024-07-03T00:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Alert {
            id: AlertId::new(),
            kind: AlertKind::CriticalHazard,
            subject: "issue:x".into(),
            state: AlertState::Open,
            level: AlertLevel::Critical,
            drill,
            message: "险情：QHL-02 K1+100 管涌（浑水）".into(),
            message_en: "Hazard: QHL-02 K1+100 piping (muddy)".into(),
            segment_id: None,
            issue_id: None,
            station: None,
            details: serde_json::Value::Null,
            raised_at: t,
            updated_at: t,
            acknowledged_at: None,
            acknowledged_by: None,
            acknowledged_by_name: None,
            resolved_at: None,
        }
    }

    #[test]
    fn wecom_is_a_markdown_message_in_beijing_time() {
        let b = body(WebhookFormat::Wecom, AlertEvent::Raised, &alert(false));
        assert_eq!(b["msgtype"], "markdown");
        let content = b["markdown"]["content"].as_str().unwrap();
        assert!(content.starts_with("## 险情 · 新告警\n"), "{content}");
        assert!(content.contains("**险情：QHL-02 K1+100 管涌（浑水）**"));
        assert!(content.contains("<font color=\"warning\">严重</font>"));
        assert!(
            content.contains("2024-07-03 08:30:00（北京时间）"),
            "{content}"
        );
        assert!(!content.contains("演练"));
        assert_eq!(b.as_object().unwrap().len(), 2);
    }

    #[test]
    fn dingtalk_has_a_title_and_text_and_drills_say_so() {
        let mut a = alert(true);
        a.acknowledged_at = Some(a.raised_at + chrono::Duration::minutes(5));
        a.acknowledged_by_name = Some("陈值班".into());
        a.state = AlertState::Acknowledged;
        let b = body(WebhookFormat::Dingtalk, AlertEvent::Acknowledged, &a);
        assert_eq!(b["msgtype"], "markdown");
        assert_eq!(b["markdown"]["title"], "【演练】险情 · 已确认");
        let text = b["markdown"]["text"].as_str().unwrap();
        assert!(text.starts_with("## 【演练】险情 · 已确认"), "{text}");
        assert!(text.contains("确认：陈值班 2024-07-03 08:35:00"), "{text}");
        assert!(text.contains("演练消息"));
        let wecom = body(WebhookFormat::Wecom, AlertEvent::Raised, &a);
        assert!(wecom["markdown"]["content"]
            .as_str()
            .unwrap()
            .contains("【演练】"));
    }

    #[test]
    fn generic_is_the_event_and_the_alert() {
        let a = alert(false);
        let b = body(WebhookFormat::Generic, AlertEvent::Resolved, &a);
        let notice: AlertNotice = serde_json::from_value(b).unwrap();
        assert_eq!(notice.event, AlertEvent::Resolved);
        assert_eq!(notice.alert, a);
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let mut a = alert(false);
        a.message = "管".repeat(3000);
        let b = body(WebhookFormat::Wecom, AlertEvent::Raised, &a);
        let content = b["markdown"]["content"].as_str().unwrap();
        assert!(content.len() <= WECOM_MAX_BYTES);
        assert!(content.ends_with('…'));
    }

    #[test]
    fn dingtalk_sign_matches_a_vector_computed_elsewhere() {
        // Computed with Python's hmac, hashlib and base64, as DingTalk's documentation does it.
        assert_eq!(
            dingtalk_sign("this is secret", 1_577_836_800_000),
            "fFV9t5lBS7KH4+5B0JjR99ab+AJkXFauQXycgTkS/tc="
        );
        assert_eq!(
            dingtalk_sign("SECsecret", 1_719_966_600_123),
            "R0lF315xcB0UoHHxzQ9fhwp515bBTsISNZtcob1TJos="
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn every_attempt_is_signed_and_dingtalk_urls_carry_their_sign() {
        let a = alert(false);
        let id = DeliveryId::new();
        let now = DateTime::parse_from_rfc3339("2024-07-03T00:30:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let out = outgoing(
            "https://oapi.dingtalk.com/robot/send?access_token=abc",
            "SECsecret",
            WebhookFormat::Dingtalk,
            id,
            AlertEvent::Raised,
            &a,
            now,
        )
        .unwrap();
        let q: Vec<(String, String)> = out.url.query_pairs().into_owned().collect();
        assert_eq!(q[0], ("access_token".into(), "abc".into()));
        assert_eq!(q[1], ("timestamp".into(), "1719966600123".into()));
        assert_eq!(q[2].1, dingtalk_sign("SECsecret", 1_719_966_600_123));
        let header = |n: &str| {
            out.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(header("idempotency-key"), id.to_string());
        assert_eq!(header("x-riverchief-timestamp"), "1719966600");
        assert_eq!(
            header("x-riverchief-signature"),
            format!(
                "sha256={}",
                hex::encode(hmac_sha256(b"SECsecret", &out.body))
            )
        );
    }
}
