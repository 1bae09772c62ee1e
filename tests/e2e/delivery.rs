//! Alerts that reach people: the live stream (`GET /alerts/stream`, Server-Sent Events) and webhooks
//! sent from the durable outbox. The webhook receiver is a real HTTP server inside the test that
//! checks every signature and keeps the idempotency keys it accepted, as a careful receiver would.

use crate::common::{add_user, draft, phone, segment, Http};
use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use futures_util::StreamExt;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use riverchief_client::Client;
use riverchief_shared::alert::AlertState;
use riverchief_shared::domain::{IssueCategory, Outflow, Severity};
use riverchief_shared::id::IssueId;
use riverchief_shared::webhook::{AlertEvent, AlertNotice, DeliveryList, DeliveryState};
use riverchief_tests::{login, ServerProcess, TestDb, TestServer};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous: the machines are shared and slow at times. Nothing here asserts on wall time.
const PATIENCE: Duration = Duration::from_secs(60);

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

// ---------------------------------------------------------------------------------------------
// The webhook receiver

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: HashMap<String, String>,
    key: String,
    signature_ok: bool,
    status: u16,
    body: Value,
}

#[derive(Debug, Default)]
struct Inbox {
    /// Answer 500 to this many requests (the first ones) before accepting.
    fail_first: usize,
    seen: Vec<Seen>,
    /// The idempotency keys accepted, in the order they were, with the body accepted.
    accepted: Vec<(String, Value)>,
    keys: HashSet<String>,
}

/// A webhook receiver on a free port: verifies `X-Riverchief-Signature` with `secret`, answers 401
/// to a bad one, 500 to the first `fail_first` requests, then accepts each `Idempotency-Key` once
/// (a repeat is answered 200 and not accepted again).
struct Receiver {
    url: String,
    inbox: Arc<Mutex<Inbox>>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    async fn start(secret: &str, fail_first: usize) -> Result<Receiver> {
        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
        let inbox = Arc::new(Mutex::new(Inbox {
            fail_first,
            ..Inbox::default()
        }));
        let state = web::Data::new((inbox.clone(), secret.to_owned()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let server = HttpServer::new(move || {
            App::new().app_data(state.clone()).default_service(web::to(
                |req: HttpRequest,
                 body: web::Bytes,
                 state: web::Data<(Arc<Mutex<Inbox>>, String)>| async move {
                    let (inbox, secret) = state.get_ref();
                    let header = |n: &str| {
                        req.headers()
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let expected = format!(
                        "sha256={}",
                        hex::encode(hmac_sha256(secret.as_bytes(), &body))
                    );
                    let signature_ok = header("x-riverchief-signature") == expected
                        && header("x-riverchief-timestamp").parse::<i64>().is_ok();
                    let key = header("idempotency-key");
                    let query = url_query(req.query_string());
                    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mut inbox = inbox.lock().unwrap_or_else(|p| p.into_inner());
                    let status = if !signature_ok || key.is_empty() {
                        401
                    } else if inbox.seen.len() < inbox.fail_first {
                        500
                    } else {
                        if inbox.keys.insert(key.clone()) {
                            inbox.accepted.push((key.clone(), parsed.clone()));
                        }
                        200
                    };
                    inbox.seen.push(Seen {
                        path: req.path().to_owned(),
                        query,
                        key,
                        signature_ok,
                        status,
                        body: parsed,
                    });
                    HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(status)
                            .unwrap_or(actix_web::http::StatusCode::OK),
                    )
                    .body(if status == 500 {
                        "down for a moment"
                    } else {
                        "ok"
                    })
                },
            ))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Receiver {
            url: format!("http://127.0.0.1:{port}"),
            inbox,
            handle,
        })
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `n` deliveries were accepted on `path`.
    async fn until_accepted(&self, path: &str, n: usize) -> Result<Vec<(String, Value)>> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let on_path: Vec<(String, Value)> = {
                let inbox = self.inbox();
                let keys: HashSet<&str> = inbox
                    .seen
                    .iter()
                    .filter(|s| s.path == path)
                    .map(|s| s.key.as_str())
                    .collect();
                inbox
                    .accepted
                    .iter()
                    .filter(|(k, _)| keys.contains(k.as_str()))
                    .cloned()
                    .collect()
            };
            if on_path.len() >= n {
                return Ok(on_path);
            }
            if Instant::now() > deadline {
                bail!("the receiver accepted {} of {n} on {path}", on_path.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn url_query(q: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{q}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// A Server-Sent Events reader over a real streaming HTTP response

#[derive(Debug, Clone, Default)]
struct Event {
    id: String,
    event: String,
    data: String,
}

impl Event {
    fn alert(&self) -> Result<Value> {
        Ok(serde_json::from_str(&self.data)?)
    }
}

type Body = Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

struct Sse {
    body: Body,
    buf: String,
}

impl Sse {
    /// Opens the stream as `token`, resuming after `last_event_id` when given.
    async fn open(base: &str, token: &str, last_event_id: Option<&str>) -> Result<Sse> {
        let mut req = reqwest::Client::new()
            .get(format!("{base}/api/v1/alerts/stream"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await?;
        if resp.status() != StatusCode::OK {
            bail!("stream: {} {}", resp.status(), resp.text().await?);
        }
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !ct.starts_with("text/event-stream") {
            bail!("stream content type {ct:?}");
        }
        Ok(Sse {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        })
    }

    /// The next event (comments and `retry:` lines skipped), waiting at most `PATIENCE`.
    async fn next(&mut self) -> Result<Event> {
        tokio::time::timeout(PATIENCE, self.next_inner())
            .await
            .map_err(|_| anyhow!("no event within {PATIENCE:?}"))?
    }

    async fn next_inner(&mut self) -> Result<Event> {
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Event::default();
                let mut any = false;
                for line in block.lines() {
                    if line.starts_with(':') {
                        continue; // a keep-alive comment
                    }
                    let (field, value) = line.split_once(": ").unwrap_or((line, ""));
                    match field {
                        "id" => ev.id = value.to_owned(),
                        "event" => ev.event = value.to_owned(),
                        "data" => {
                            ev.data.push_str(value);
                            any = true;
                        }
                        _ => {}
                    }
                }
                if any {
                    return Ok(ev);
                }
            }
            match self.body.next().await {
                Some(chunk) => self.buf.push_str(std::str::from_utf8(&chunk?)?),
                None => bail!("the stream ended"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The change-log sequence number in a cursor `"<epoch>.<seq>"` (-1 when it has none).
fn seq_of(cursor: &str) -> i64 {
    cursor
        .rsplit_once('.')
        .and_then(|(_, s)| s.parse().ok())
        .unwrap_or(-1)
}

async fn muddy_piping(client: &Client, fraction: f64, what: &str) -> Result<IssueId> {
    let qhl02 = segment(client, "QHL-02").await?;
    Ok(client
        .report_issue(draft(
            &qhl02,
            fraction,
            IssueCategory::Piping,
            Severity::Major,
            Some(Outflow::Muddy),
            what,
            None,
            vec![],
        ))
        .await?)
}

async fn send_json(
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let mut req = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await?;
    let status = r.status();
    let text = r.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

async fn add_webhook(base: &str, admin: &str, body: Value) -> Result<Value> {
    let (status, hook) = send_json(
        base,
        admin,
        reqwest::Method::POST,
        "/api/v1/webhooks",
        Some(body),
    )
    .await?;
    if status != StatusCode::CREATED {
        bail!("add webhook: {status} {hook}");
    }
    Ok(hook)
}

async fn deliveries(base: &str, admin: &str, hook: &str) -> Result<DeliveryList> {
    let v = Http::new(base, admin)
        .get(&format!("/api/v1/webhooks/{hook}/deliveries"))
        .await?;
    Ok(serde_json::from_value(v)?)
}

// ---------------------------------------------------------------------------------------------
// The tests

#[tokio::test]
async fn a_muddy_piping_report_reaches_the_stream_and_signed_webhooks_and_the_ack_comes_back(
) -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let admin = login(&base, "admin").await?;
    let secret = "SEC-community-office-robot-0001";
    let receiver = Receiver::start(secret, 0).await?;
    let generic = add_webhook(
        &base,
        &admin,
        json!({"url": format!("{}/generic", receiver.url), "secret": secret}),
    )
    .await?;
    assert_eq!(generic["format"], "generic");
    assert_eq!(generic["secret_hint"], "…0001");
    assert!(!generic.to_string().contains(secret), "{generic}");
    add_webhook(
        &base,
        &admin,
        json!({"url": format!("{}/wecom?key=robot", receiver.url), "secret": secret,
               "format": "wecom", "kinds": ["critical_hazard"]}),
    )
    .await?;
    add_webhook(
        &base,
        &admin,
        json!({"url": format!("{}/dingtalk?access_token=robot", receiver.url), "secret": secret,
               "format": "dingtalk", "include_drill": true}),
    )
    .await?;
    // A webhook for other kinds gets nothing of this.
    add_webhook(
        &base,
        &admin,
        json!({"url": format!("{}/stock", receiver.url), "secret": secret, "kinds": ["stock_below_quota"]}),
    )
    .await?;
    let listed = Http::new(&base, &admin).get("/api/v1/webhooks").await?;
    assert_eq!(listed["webhooks"].as_array().map(Vec::len), Some(4));
    assert!(!listed.to_string().contains(secret));

    // The duty lead watches the stream; nothing is active yet.
    let lead_token = login(&base, "chen").await?;
    let mut stream = Sse::open(&base, &lead_token, None).await?;
    // A patroller assigned to the segment watches too.
    let mut lina = Sse::open(&base, &login(&base, "lina").await?, None).await?;

    let dir = tempfile::tempdir()?;
    let zhangwei = phone(dir.path(), &base, "zhangwei").await?;
    let issue = muddy_piping(&zhangwei, 0.5, "背水坡脚冒浑水").await?;
    zhangwei.sync(&|_| {}).await?;

    let raised = stream.next().await?;
    assert_eq!(raised.event, "alert");
    let alert = raised.alert()?;
    assert_eq!(alert["kind"], "critical_hazard");
    assert_eq!(alert["state"], "open");
    assert_eq!(alert["issue_id"], issue.to_string());
    assert!(raised.id.contains('.'), "the id is a cursor: {}", raised.id);
    let id = alert["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(lina.next().await?.alert()?["id"], id);

    // The webhook receivers: each got it once, signed (the receiver refuses bad signatures).
    let got = receiver.until_accepted("/generic", 1).await?;
    let notice: AlertNotice = serde_json::from_value(got[0].1.clone())?;
    assert_eq!(notice.event, AlertEvent::Raised);
    assert_eq!(notice.alert.id.to_string(), id);
    let wecom = receiver.until_accepted("/wecom", 1).await?;
    assert_eq!(wecom[0].1["msgtype"], "markdown");
    let content = wecom[0].1["markdown"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(
        content.contains("管涌") && content.contains("新告警"),
        "{content}"
    );
    receiver.until_accepted("/dingtalk", 1).await?;

    // The duty lead acknowledges: the stream shows it, and so do the webhooks.
    let (status, acked) = send_json(
        &base,
        &lead_token,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/ack"),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{acked}");
    let ack = stream.next().await?;
    assert_eq!(ack.alert()?["id"], id);
    assert_eq!(ack.alert()?["state"], "acknowledged");
    assert!(
        seq_of(&ack.id) > seq_of(&raised.id),
        "{} {}",
        ack.id,
        raised.id
    );
    let got = receiver.until_accepted("/generic", 2).await?;
    let notice: AlertNotice = serde_json::from_value(got[1].1.clone())?;
    assert_eq!(notice.event, AlertEvent::Acknowledged);
    assert_eq!(notice.alert.state, AlertState::Acknowledged);
    let ding = receiver.until_accepted("/dingtalk", 2).await?;
    receiver.until_accepted("/wecom", 2).await?;
    assert_eq!(ding[1].1["markdown"]["title"], "险情 · 已确认");

    // The receipt: the reporter's next sync shows the acknowledgement.
    zhangwei.sync(&|_| {}).await?;
    let mine = zhangwei.alerts().await?;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].state, AlertState::Acknowledged);

    // Every request was signed right; DingTalk's carried its own sign, computed here independently.
    let seen = receiver.inbox().seen.clone();
    assert!(
        seen.iter().all(|s| s.signature_ok && s.status == 200),
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| s.path != "/stock"));
    for s in seen.iter().filter(|s| s.path == "/dingtalk") {
        assert_eq!(
            s.query.get("access_token").map(String::as_str),
            Some("robot")
        );
        let ts = s.query.get("timestamp").context("timestamp")?;
        let expected = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
            secret.as_bytes(),
            format!("{ts}\n{secret}").as_bytes(),
        ));
        assert_eq!(s.query.get("sign"), Some(&expected));
        assert_eq!(s.body["msgtype"], "markdown");
    }
    assert_eq!(seen.len(), 6, "{seen:?}");

    // The delivery log of the generic webhook: two, delivered at the first attempt.
    let hook = generic["id"].as_str().unwrap_or_default();
    let log = deliveries(&base, &admin, hook).await?;
    assert_eq!(log.deliveries.len(), 2);
    assert!(log
        .deliveries
        .iter()
        .all(|d| d.state == DeliveryState::Delivered && d.attempts == 1));
    drop(stream);
    drop(lina);
    receiver.stop().await;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn webhooks_and_the_stream_refuse_bad_input_and_change_nothing() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let admin = login(&base, "admin").await?;
    let lead = login(&base, "chen").await?;
    let before = server.db.digest()?;
    let post = |body: Value| {
        let (base, admin) = (base.clone(), admin.clone());
        async move {
            send_json(
                &base,
                &admin,
                reqwest::Method::POST,
                "/api/v1/webhooks",
                Some(body),
            )
            .await
        }
    };
    for (body, field) in [
        (json!({"url": "ftp://example.org/x", "secret": "s"}), "url"),
        (json!({"url": "not a url", "secret": "s"}), "url"),
        (json!({"url": "", "secret": "s"}), "url"),
        (json!({"url": "http://example.org/x"}), "secret"),
        (
            json!({"url": "http://example.org/x", "secret": ""}),
            "secret",
        ),
        (
            json!({"url": "http://example.org/x", "secret": "s", "kinds": ["critical_hazard", "flood"]}),
            "kinds[1]",
        ),
        (
            json!({"url": "http://example.org/x", "secret": "s", "format": "slack"}),
            "format",
        ),
        (
            json!({"url": "http://example.org/x", "secret": "s", "include_drill": "yes"}),
            "include_drill",
        ),
        (
            json!({"url": "http://example.org/x", "secret": "x".repeat(201)}),
            "secret",
        ),
    ] {
        let (status, err) = post(body.clone()).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {err}");
        assert_eq!(err["error"]["field"], field, "{body} → {err}");
    }
    let (status, _) = send_json(
        &base,
        &lead,
        reqwest::Method::POST,
        "/api/v1/webhooks",
        Some(json!({"url": "http://example.org/x", "secret": "s"})),
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for path in ["/api/v1/webhooks/nope/deliveries", "/api/v1/webhooks/nope"] {
        let method = if path.ends_with("deliveries") {
            reqwest::Method::GET
        } else {
            reqwest::Method::DELETE
        };
        let (status, err) = send_json(&base, &admin, method, path, None).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {err}");
    }
    let unknown = riverchief_shared::id::WebhookId::new();
    let (status, _) = send_json(
        &base,
        &admin,
        reqwest::Method::DELETE,
        &format!("/api/v1/webhooks/{unknown}"),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        server.db.digest()?,
        before,
        "a refused request wrote something"
    );

    // The stream wants a token, like every API route.
    let r = reqwest::Client::new()
        .get(format!("{base}/api/v1/alerts/stream"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A webhook can be deleted; its id is then unknown to delete, its deliveries still readable.
    let hook = add_webhook(
        &base,
        &admin,
        json!({"url": "https://example.org/hook", "secret": "s"}),
    )
    .await?;
    let id = hook["id"].as_str().unwrap_or_default();
    assert_eq!(hook["secret_hint"], "…");
    let (status, _) = send_json(
        &base,
        &admin,
        reqwest::Method::DELETE,
        &format!("/api/v1/webhooks/{id}"),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let listed = Http::new(&base, &admin).get("/api/v1/webhooks").await?;
    assert_eq!(listed["webhooks"].as_array().map(Vec::len), Some(0));
    assert!(deliveries(&base, &admin, id).await?.deliveries.is_empty());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_failing_receiver_gets_each_change_once_and_in_order_across_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = TestDb::fresh(dir.path())?;
    let bin = env!("CARGO_BIN_EXE_rc-server");
    // Short backoff so the test runs in seconds; the schedule is asserted, not the clock.
    let flags = [
        "--webhook-backoff-base-ms",
        "1000",
        "--webhook-backoff-cap-ms",
        "10000",
        "--webhook-timeout-ms",
        "3000",
    ];
    let server = ServerProcess::start_with(bin, dir.path(), &db, 0, &flags).await?;
    let base = server.url();
    let admin = login(&base, "admin").await?;
    let secret = "a-shared-secret-of-the-receiver";
    let receiver = Receiver::start(secret, 3).await?;
    let hook = add_webhook(
        &base,
        &admin,
        json!({"url": format!("{}/hook", receiver.url), "secret": secret}),
    )
    .await?;
    let hook = hook["id"].as_str().unwrap_or_default().to_owned();

    // Three critical hazards, raised in this order.
    let phone_dir = tempfile::tempdir()?;
    let zhangwei = phone(phone_dir.path(), &base, "zhangwei").await?;
    let mut issues = Vec::new();
    for (i, what) in ["一号管涌", "二号管涌", "三号管涌"].iter().enumerate() {
        issues.push(muddy_piping(&zhangwei, 0.2 + 0.3 * i as f64, what).await?);
    }
    zhangwei.sync(&|_| {}).await?;
    let lead = Http::new(&base, &login(&base, "chen").await?);
    let mut raised: Vec<Value> = lead.get("/api/v1/alerts").await?["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    raised.sort_by_key(|a| a["raised_at"].as_str().unwrap_or_default().to_owned());
    let raise_order: Vec<String> = raised
        .iter()
        .map(|a| a["issue_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        raise_order,
        issues.iter().map(|i| i.to_string()).collect::<Vec<_>>()
    );

    // The first attempt fails and is recorded; then the server dies.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let log = deliveries(&base, &admin, &hook).await?;
        if log.deliveries.iter().any(|d| d.attempts >= 1) {
            break;
        }
        if Instant::now() > deadline {
            bail!("no attempt was recorded: {log:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill()?;

    // A new process on the same data carries on from the outbox.
    let server = ServerProcess::start_with(bin, dir.path(), &db, 0, &flags).await?;
    let base = server.url();
    let got = receiver.until_accepted("/hook", 3).await?;
    let accepted_issues: Vec<String> = got
        .iter()
        .map(|(_, body)| {
            body["alert"]["issue_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(accepted_issues, raise_order, "accepted out of raise order");

    let (seen, accepted) = {
        let inbox = receiver.inbox();
        (inbox.seen.clone(), inbox.accepted.clone())
    };
    // Exactly once: three keys accepted, none twice; every request well signed.
    assert_eq!(accepted.len(), 3);
    assert!(seen.iter().all(|s| s.signature_ok));
    // The first delivery was tried with one key until it was accepted, and nothing of the later
    // ones was sent before that (head of line per webhook).
    let first_key = &accepted[0].0;
    let tries: Vec<&Seen> = seen.iter().filter(|s| &s.key == first_key).collect();
    assert!(tries.len() >= 4, "{seen:?}");
    assert_eq!(
        tries.iter().map(|s| s.status).take(4).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    let first_ok = seen
        .iter()
        .position(|s| &s.key == first_key && s.status == 200)
        .unwrap_or(usize::MAX);
    assert!(
        seen.iter()
            .position(|s| &s.key != first_key)
            .is_some_and(|p| p > first_ok),
        "{seen:?}"
    );

    // The delivery log: the schedule of retries grew, and all three are delivered.
    let admin = login(&base, "admin").await?;
    let deadline = Instant::now() + PATIENCE;
    let mut log = deliveries(&base, &admin, &hook).await?;
    while log
        .deliveries
        .iter()
        .any(|d| d.state != DeliveryState::Delivered)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = deliveries(&base, &admin, &hook).await?;
    }
    let mut log = log.deliveries;
    log.sort_by_key(|d| d.seq);
    assert_eq!(log.len(), 3);
    assert!(
        log.iter().all(|d| d.state == DeliveryState::Delivered),
        "{log:?}"
    );
    assert_eq!(log[0].id.to_string(), *first_key);
    assert_eq!(log[0].attempts, 4, "{:?}", log[0]);
    assert_eq!(log[0].history.len(), 4);
    let delays: Vec<u64> = log[0]
        .history
        .iter()
        .filter_map(|a| a.retry_in_ms)
        .collect();
    assert_eq!(delays.len(), 3, "{:?}", log[0].history);
    assert!(delays.windows(2).all(|w| w[0] < w[1]), "{delays:?}");
    assert!(delays[0] >= 1000, "{delays:?}");
    assert_eq!(log[0].history[0].status, Some(500));
    assert_eq!(log[0].last_status, Some(200));
    assert!(log[1..].iter().all(|d| d.attempts == 1));
    server.kill()?;
    receiver.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_stream_that_reconnects_with_last_event_id_misses_nothing() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let lead_token = login(&base, "chen").await?;
    let dir = tempfile::tempdir()?;
    let zhangwei = phone(dir.path(), &base, "zhangwei").await?;
    // A patroller of another segment watches too: they see only what pull would show them.
    add_user(&server, "wang", "patroller", &["QHL-01"])?;
    let mut wang = Sse::open(&base, &login(&base, "wang").await?, None).await?;

    let mut stream = Sse::open(&base, &lead_token, None).await?;
    let a_issue = muddy_piping(&zhangwei, 0.2, "甲").await?;
    zhangwei.sync(&|_| {}).await?;
    let a = stream.next().await?;
    assert_eq!(a.alert()?["issue_id"], a_issue.to_string());
    let a_id = a.alert()?["id"].as_str().unwrap_or_default().to_owned();
    drop(stream);

    // While the dashboard is away: A is acknowledged, B and C are raised.
    let (status, _) = send_json(
        &base,
        &lead_token,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{a_id}/ack"),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    let b_issue = muddy_piping(&zhangwei, 0.5, "乙").await?;
    let c_issue = muddy_piping(&zhangwei, 0.8, "丙").await?;
    zhangwei.sync(&|_| {}).await?;

    let expected = vec![
        (a_issue.to_string(), "acknowledged".to_owned()),
        (b_issue.to_string(), "open".to_owned()),
        (c_issue.to_string(), "open".to_owned()),
    ];
    let read3 = |mut s: Sse| async move {
        let mut got = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let e = s.next().await?;
            assert_eq!(e.event, "alert");
            let v = e.alert()?;
            got.push((
                v["issue_id"].as_str().unwrap_or_default().to_owned(),
                v["state"].as_str().unwrap_or_default().to_owned(),
            ));
            ids.push(e.id);
        }
        anyhow::Ok((got, ids, s))
    };
    let (got, ids, resumed) = read3(Sse::open(&base, &lead_token, Some(&a.id)).await?).await?;
    assert_eq!(got, expected);
    // The ids are cursors that only grow.
    let seqs: Vec<i64> = ids.iter().map(|i| seq_of(i)).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    drop(resumed);

    // `?since=` does the same for tools.
    let r = reqwest::Client::new()
        .get(format!("{base}/api/v1/alerts/stream?since={}", a.id))
        .bearer_auth(&lead_token)
        .send()
        .await?;
    let s = Sse {
        body: Box::pin(r.bytes_stream()),
        buf: String::new(),
    };
    assert_eq!(read3(s).await?.0, expected);

    // A cursor from another database: reset, then the alerts active now, oldest first.
    let mut s = Sse::open(&base, &lead_token, Some("0000000000.5")).await?;
    let reset = s.next().await?;
    assert_eq!(reset.event, "reset");
    let mut snapshot = Vec::new();
    for _ in 0..3 {
        let e = s.next().await?;
        assert_eq!(e.id, reset.id);
        snapshot.push(
            e.alert()?["issue_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(
        snapshot,
        [a_issue, b_issue, c_issue].map(|i| i.to_string()).to_vec()
    );
    // With the reset's id, the stream goes on from there: a new change arrives next.
    let d_issue = muddy_piping(&zhangwei, 0.9, "丁").await?;
    zhangwei.sync(&|_| {}).await?;
    let mut again = Sse::open(&base, &lead_token, Some(&reset.id)).await?;
    assert_eq!(
        again.next().await?.alert()?["issue_id"],
        d_issue.to_string()
    );
    assert_eq!(s.next().await?.alert()?["issue_id"], d_issue.to_string());

    // The first alert the other segment's patroller sees is the one on their own segment.
    let qhl01 = segment(&zhangwei, "QHL-01").await?;
    let e_issue = zhangwei
        .report_issue(draft(
            &qhl01,
            0.5,
            IssueCategory::Leak,
            Severity::Major,
            None,
            "漏洞",
            None,
            vec![],
        ))
        .await?;
    zhangwei.sync(&|_| {}).await?;
    assert_eq!(wang.next().await?.alert()?["issue_id"], e_issue.to_string());
    drop(wang);
    for open in [&mut s, &mut again] {
        assert_eq!(open.next().await?.alert()?["issue_id"], e_issue.to_string());
    }

    // Stopping the server ends open streams cleanly (the last chunk, not a cut connection), so a
    // graceful stop does not wait for them.
    server.stop().await;
    for open in [&mut s, &mut again] {
        let end = open.next().await.err().map(|e| e.to_string());
        assert_eq!(end.as_deref(), Some("the stream ended"));
    }
    Ok(())
}

#[tokio::test]
async fn an_idle_stream_sends_keep_alive_comments_and_ends_when_the_server_is_stopped() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let db = TestDb::fresh(dir.path())?;
    let server = ServerProcess::start_with(
        env!("CARGO_BIN_EXE_rc-server"),
        dir.path(),
        &db,
        0,
        &["--stream-keepalive-ms", "100"],
    )
    .await?;
    let token = login(&server.url(), "chen").await?;
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/alerts/stream", server.url()))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-cache")
    );
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let read = async {
        while text.matches(": keepalive\n\n").count() < 2 {
            match body.next().await {
                Some(chunk) => text.push_str(std::str::from_utf8(&chunk?)?),
                None => bail!("the stream ended: {text:?}"),
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .map_err(|_| anyhow!("no keep-alive within {PATIENCE:?}"))??;
    // Nothing but the reconnection delay and the comments: no alert is active.
    assert!(text.starts_with("retry: 2000\n\n"), "{text:?}");
    assert!(!text.contains("event:"), "{text:?}");

    // SIGTERM: the server ends the open stream cleanly (its last chunk, not a cut connection) and
    // exits by itself, instead of waiting for the stream as a graceful stop would.
    assert!(
        server.terminate(PATIENCE).await?,
        "the server failed to stop"
    );
    let rest = tokio::time::timeout(PATIENCE, async {
        while let Some(chunk) = body.next().await {
            chunk?;
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow!("the stream did not end"))?;
    assert!(rest.is_ok(), "the stream was cut, not ended: {rest:?}");
    Ok(())
}

#[tokio::test]
async fn a_receiver_that_never_accepts_is_given_up_on_visibly_and_the_queue_moves_on() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let db = TestDb::fresh(dir.path())?;
    let server = ServerProcess::start_with(
        env!("CARGO_BIN_EXE_rc-server"),
        dir.path(),
        &db,
        0,
        &[
            "--webhook-max-attempts",
            "2",
            "--webhook-backoff-base-ms",
            "50",
        ],
    )
    .await?;
    let base = server.url();
    let admin = login(&base, "admin").await?;
    let receiver = Receiver::start("secret", usize::MAX).await?;
    let hook = add_webhook(
        &base,
        &admin,
        json!({"url": format!("{}/down", receiver.url), "secret": "secret"}),
    )
    .await?;
    let hook = hook["id"].as_str().unwrap_or_default().to_owned();
    let phone_dir = tempfile::tempdir()?;
    let zhangwei = phone(phone_dir.path(), &base, "zhangwei").await?;
    muddy_piping(&zhangwei, 0.3, "一号").await?;
    muddy_piping(&zhangwei, 0.6, "二号").await?;
    zhangwei.sync(&|_| {}).await?;

    let deadline = Instant::now() + PATIENCE;
    let log = loop {
        let log = deliveries(&base, &admin, &hook).await?.deliveries;
        if log.len() == 2 && log.iter().all(|d| d.state == DeliveryState::Failed) {
            break log;
        }
        if Instant::now() > deadline {
            bail!("not given up: {log:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for d in &log {
        assert_eq!(d.attempts, 2, "{d:?}");
        assert_eq!(d.last_status, Some(500));
        assert!(
            d.last_error.as_deref().unwrap_or("").contains("500"),
            "{d:?}"
        );
        assert!(d.next_attempt_at.is_none());
        assert_eq!(d.history.len(), 2);
        assert!(
            d.history[1].retry_in_ms.is_none(),
            "no retry after the last attempt"
        );
    }
    let listed = Http::new(&base, &admin).get("/api/v1/webhooks").await?;
    assert_eq!(listed["webhooks"][0]["failed"], 2);
    assert_eq!(listed["webhooks"][0]["pending"], 0);
    let failed = Http::new(&base, &admin)
        .get(&format!("/api/v1/webhooks/{hook}/deliveries?state=failed"))
        .await?;
    assert_eq!(failed["deliveries"].as_array().map(Vec::len), Some(2));
    // The receiver saw 2 attempts of the first, then 2 of the second: in order, never interleaved.
    let keys: Vec<String> = receiver
        .inbox()
        .seen
        .iter()
        .map(|s| s.key.clone())
        .collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(
        keys[0] == keys[1] && keys[2] == keys[3] && keys[1] != keys[2],
        "{keys:?}"
    );
    server.kill()?;
    receiver.stop().await;
    Ok(())
}

/// A revoked token stops working at once, also for a stream opened with it: the stream ends at the
/// next keep-alive, and reconnecting is refused.
#[tokio::test]
async fn revoking_a_token_ends_the_stream_it_opened() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let db = TestDb::fresh(dir.path())?;
    let server = ServerProcess::start_with(
        env!("CARGO_BIN_EXE_rc-server"),
        dir.path(),
        &db,
        0,
        &["--stream-keepalive-ms", "100"],
    )
    .await?;
    let base = server.url();
    let token = login(&base, "chen").await?;
    let stream = |token: String| {
        reqwest::Client::new()
            .get(format!("{base}/api/v1/alerts/stream"))
            .bearer_auth(token)
            .send()
    };
    let resp = stream(token.clone()).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.bytes_stream();
    // The stream is alive: a keep-alive arrives.
    let first = tokio::time::timeout(PATIENCE, body.next())
        .await
        .map_err(|_| anyhow!("nothing within {PATIENCE:?}"))?;
    assert!(first.is_some(), "the stream ended before the revocation");

    let admin = Http::new(&base, &login(&base, "admin").await?);
    let chen = crate::common::user_id(&base, "chen").await?;
    let devices = admin.get(&format!("/api/v1/users/{chen}/devices")).await?;
    let ids: Vec<String> = devices["devices"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|d| d["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(!ids.is_empty(), "{devices}");
    for id in &ids {
        let r = reqwest::Client::new()
            .delete(format!("{base}/api/v1/devices/{id}"))
            .bearer_auth(login(&base, "admin").await?)
            .send()
            .await?;
        assert!(r.status().is_success(), "{}", r.status());
    }
    // The open stream ends by itself (cleanly, not cut).
    let rest = tokio::time::timeout(PATIENCE, async {
        while let Some(chunk) = body.next().await {
            chunk?;
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow!("the stream went on after its token was revoked"))?;
    assert!(rest.is_ok(), "the stream was cut, not ended: {rest:?}");
    assert_eq!(stream(token).await?.status(), StatusCode::UNAUTHORIZED);
    server.kill()?;
    Ok(())
}
