//! The issue workflow (issue 7): a report's whole life from two devices and the API, who may take
//! which step, concurrent steps from devices that were offline, and the accounts behind it all
//! (revoked tokens, login rate limits, the audit trail).

use crate::common::*;
use anyhow::{anyhow, Result};
use reqwest::StatusCode;
use riverchief_client::Client;
use riverchief_shared::domain::{
    Issue, IssueCategory, IssueEventKind, IssueState, IssueStatus, Outflow, Severity,
};
use riverchief_shared::id::{DeviceId, IssueEventId, IssueId, UserId};
use riverchief_shared::photo::Sha256;
use riverchief_tests::{login, photo_file, TestServer, DEMO_PASSWORD};
use serde_json::{json, Value};
use std::path::Path;

/// One request as a browser or a script sends it; answers the status and the JSON body (or the
/// text, as a JSON string, when the body is not JSON).
async fn call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(StatusCode, Value)> {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await?;
    let status = r.status();
    let text = r.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

async fn post_event(
    base: &str,
    token: &str,
    issue: IssueId,
    body: Value,
) -> Result<(StatusCode, Value)> {
    call(
        reqwest::Method::POST,
        &format!("{base}/api/v1/issues/{issue}/events"),
        Some(token),
        Some(&body),
    )
    .await
}

async fn get_issue(http: &Http, id: IssueId) -> Result<Issue> {
    Ok(serde_json::from_value(
        http.get(&format!("/api/v1/issues/{id}")).await?,
    )?)
}

/// Reports an issue on QHL-02 by pushing an `issue.report` as `token`'s user.
async fn report_by_push(base: &str, token: &str, description: &str) -> Result<IssueId> {
    let http = Http::new(base, token);
    let segment = http.get("/api/v1/segments").await?["features"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["properties"]["code"] == "QHL-02"))
        .and_then(|f| f["id"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow!("no QHL-02"))?;
    let id = IssueId::new();
    let results = http
        .push(
            DeviceId::new(),
            vec![mutation(
                1,
                "issue.report",
                json!({
                    "issue_id": id, "segment_id": segment,
                    "location": {"lon": 118.7445, "lat": 32.0515},
                    "category": "litter", "severity": 1, "description": description,
                    "reported_at": chrono::Utc::now() - chrono::Duration::minutes(5),
                }),
            )],
        )
        .await?;
    anyhow::ensure!(results[0]["status"] == "applied", "{results:?}");
    Ok(id)
}

fn due_tomorrow() -> String {
    (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()
}

/// The kinds, authors and rejection marks of an issue's history, in server order.
fn story(issue: &Issue) -> Vec<(IssueEventKind, UserId, bool)> {
    issue
        .events
        .iter()
        .map(|e| (e.kind, e.by, e.rejected.is_some()))
        .collect()
}

fn uid(s: &str) -> Result<UserId> {
    Ok(UserId::parse(s)?)
}

async fn phone_of(dir: &Path, base: &str, user: &str, device: &str) -> Result<Client> {
    let c = open_client(dir, base)?;
    c.login(base, user, DEMO_PASSWORD, device).await?;
    c.sync(&|_| {}).await?;
    Ok(c)
}

#[tokio::test]
async fn a_muddy_piping_report_lives_from_report_to_verified_fix() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let zhang = uid(&user_id(&base, "zhangwei").await?)?;
    let li = uid(&user_id(&base, "lina").await?)?;
    let chen = uid(&user_id(&base, "chen").await?)?;
    let lead_token = login(&base, "chen").await?;
    let lead = Http::new(&base, &lead_token);

    // Zhang Wei's phone logs in while there is signal, then reports offline with two photos.
    let zhang_dir = tempfile::tempdir()?;
    let zhang_phone = phone_of(zhang_dir.path(), &base, "zhangwei", "zhangwei's phone").await?;
    let qhl02 = segment(&zhang_phone, "QHL-02").await?;
    let shots = tempfile::tempdir()?;
    let before1 = photo_file(shots.path(), "boil-before-1.jpg", 300_000, 71)?;
    let before2 = photo_file(shots.path(), "boil-before-2.jpg", 280_000, 72)?;
    let after = photo_file(shots.path(), "boil-after.jpg", 260_000, 73)?;
    let after_sha = Sha256::of(&std::fs::read(&after)?);
    let issue = zhang_phone
        .report_issue(draft(
            &qhl02,
            0.4,
            IssueCategory::Piping,
            Severity::Major,
            Some(Outflow::Muddy),
            "背水坡脚浑水管涌，直径约5厘米",
            None,
            vec![before1, before2],
        ))
        .await?;
    // Signal again.
    zhang_phone.sync(&|_| {}).await?;

    // The duty lead accepts and dispatches to Li Na, with a due time, over the API.
    let (s, b) = post_event(
        &base,
        &lead_token,
        issue,
        json!({"kind": "accepted", "note": "已核实，立即处置"}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "accepted", "{b}");
    let (s, b) = post_event(
        &base,
        &lead_token,
        issue,
        json!({"kind": "dispatched", "assignee": li, "due_at": due_tomorrow(), "note": "请李娜带反滤料前往"}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "dispatched", "{b}");
    assert_eq!(b["assignee"], json!(li), "{b}");
    assert_eq!(b["overdue"], false, "{b}");

    // Li Na's phone (a second device) sees the dispatch, starts, and resolves with an after-photo.
    let li_dir = tempfile::tempdir()?;
    let li_phone = phone_of(li_dir.path(), &base, "lina", "lina's phone").await?;
    let mirrored = li_phone.issues().await?;
    let seen = mirrored
        .iter()
        .find(|i| i.id == issue)
        .ok_or_else(|| anyhow!("not mirrored"))?;
    assert_eq!(seen.status, IssueStatus::Dispatched);
    assert_eq!(seen.assignee, Some(li));
    li_phone
        .add_issue_event(
            issue,
            IssueEventKind::InProgress,
            Some("已到场，正在抢护".into()),
            None,
            None,
            vec![],
        )
        .await?;
    li_phone
        .add_issue_event(
            issue,
            IssueEventKind::Resolved,
            Some("反滤围井已完成，出水变清".into()),
            None,
            None,
            vec![after],
        )
        .await?;
    li_phone.sync(&|_| {}).await?;
    assert!(li_phone.status().await?.rejected.is_empty());

    // The lead verifies.
    let (s, b) = post_event(
        &base,
        &lead_token,
        issue,
        json!({"kind": "verified", "note": "复查无渗水"}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // The history tells the story, with actors, in server order.
    let whole = get_issue(&lead, issue).await?;
    assert_eq!(whole.status, IssueStatus::Verified);
    assert_eq!(
        story(&whole),
        vec![
            (IssueEventKind::Reported, zhang, false),
            (IssueEventKind::Accepted, chen, false),
            (IssueEventKind::Dispatched, chen, false),
            (IssueEventKind::InProgress, li, false),
            (IssueEventKind::Resolved, li, false),
            (IssueEventKind::Verified, chen, false),
        ]
    );
    assert!(whole
        .events
        .windows(2)
        .all(|w| w[0].recorded_at <= w[1].recorded_at));
    let dispatch = &whole.events[2];
    assert_eq!(dispatch.assignee, Some(li));
    assert!(dispatch.due_at.is_some());
    let resolved = &whole.events[4];
    assert_eq!(resolved.photos.len(), 1);
    assert_eq!(resolved.photos[0].sha256, after_sha);
    assert!(resolved.photos[0].arrived);
    assert_eq!((whole.photos_expected, whole.photos_arrived), (3, 3));
    assert_eq!(whole.events[0].photos.len(), 2);
    // The status is the fold of the history.
    let folded = IssueState::fold(&whole.events);
    assert_eq!(folded.status, whole.status);
    assert_eq!(folded.assignee, whole.assignee);

    // The reporter's phone learns the outcome.
    zhang_phone.sync(&|_| {}).await?;
    let on_phone = zhang_phone.issues().await?;
    let mine = on_phone
        .iter()
        .find(|i| i.id == issue)
        .ok_or_else(|| anyhow!("gone"))?;
    assert_eq!(mine.status, IssueStatus::Verified);
    assert_eq!(mine.events.len(), 6);

    // The audit trail has every step with its actor and device.
    let admin = Http::new(&base, &login(&base, "admin").await?);
    let trail = admin
        .get("/api/v1/audit?kind=issue.report,issue.event&limit=100")
        .await?;
    let rows: Vec<(String, String, String)> = trail["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["subject"] == json!(issue))
        .map(|e| {
            (
                e["detail"]["to"].as_str().unwrap_or("").to_owned(),
                e["actor_name"].as_str().unwrap_or("").to_owned(),
                e["device_name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .rev()
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "reported".into(),
                "zhangwei".into(),
                "zhangwei's phone".into()
            ),
            ("accepted".into(), "chen".into(), "e2e".into()),
            ("dispatched".into(), "chen".into(), "e2e".into()),
            ("in_progress".into(), "lina".into(), "lina's phone".into()),
            ("resolved".into(), "lina".into(), "lina's phone".into()),
            ("verified".into(), "chen".into(), "e2e".into()),
        ]
    );
    Ok(())
}

/// Reports an issue as zhangwei, accepts it and dispatches it to lina (as chen).
async fn dispatched_issue(base: &str, zhang: &str, chen: &str, li: UserId) -> Result<IssueId> {
    let id = report_by_push(base, zhang, "堤顶垃圾").await?;
    let (s, b) = post_event(base, chen, id, json!({"kind": "accepted"})).await?;
    anyhow::ensure!(s == StatusCode::CREATED, "{b}");
    let (s, b) = post_event(
        base,
        chen,
        id,
        json!({"kind": "dispatched", "assignee": li, "due_at": due_tomorrow()}),
    )
    .await?;
    anyhow::ensure!(s == StatusCode::CREATED, "{b}");
    Ok(id)
}

/// The body of a step of `kind` that is well-formed on its own (reasons, an original, a person).
fn step_body(kind: IssueEventKind, li: UserId, other_issue: IssueId) -> Value {
    match kind {
        IssueEventKind::Rejected => json!({"kind": "rejected", "note": "不属于本段"}),
        IssueEventKind::Reopened => json!({"kind": "reopened", "note": "复查仍有垃圾"}),
        IssueEventKind::Duplicate => json!({"kind": "duplicate", "duplicate_of": other_issue}),
        IssueEventKind::Dispatched => {
            json!({"kind": "dispatched", "assignee": li, "due_at": due_tomorrow()})
        }
        k => json!({"kind": k.as_str(), "note": "matrix"}),
    }
}

#[tokio::test]
async fn who_may_take_which_step_and_forbidden_ones_change_nothing() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    add_user(&server, "wangfang", "patroller", &[])?;
    let li = uid(&user_id(&base, "lina").await?)?;
    let tokens = [
        ("lina", login(&base, "lina").await?),
        ("zhangwei", login(&base, "zhangwei").await?),
        ("chen", login(&base, "chen").await?),
        ("admin", login(&base, "admin").await?),
        ("wangfang", login(&base, "wangfang").await?),
    ];
    let token = |name: &str| {
        tokens
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    };
    let (zhang, chen) = (token("zhangwei"), token("chen"));
    // The issue every refused step is tried on: reported by zhangwei, dispatched to lina.
    let target = dispatched_issue(&base, &zhang, &chen, li).await?;
    let other = report_by_push(&base, &zhang, "另一处垃圾").await?;

    use IssueEventKind as K;
    let kinds = [
        K::Accepted,
        K::Rejected,
        K::Duplicate,
        K::Dispatched,
        K::InProgress,
        K::Resolved,
        K::Verified,
        K::Reopened,
        K::Comment,
    ];
    // What each actor gets on an issue dispatched to lina: 201 taken, 403 forbidden (their role may
    // never), 409 not from `dispatched`, 404 not theirs to see.
    let expect = |who: &str, kind: K| -> StatusCode {
        match (who, kind) {
            ("wangfang", _) => StatusCode::NOT_FOUND,
            (_, K::Comment) => StatusCode::CREATED,
            ("lina", K::InProgress | K::Resolved) => StatusCode::CREATED,
            ("lina" | "zhangwei", _) => StatusCode::FORBIDDEN,
            ("chen", K::InProgress | K::Resolved) => StatusCode::FORBIDDEN,
            (_, K::Dispatched | K::InProgress | K::Resolved) => StatusCode::CREATED,
            _ => StatusCode::CONFLICT,
        }
    };
    for (who, t) in &tokens {
        for kind in kinds {
            let want = expect(who, kind);
            // A step that is taken is taken on an issue of its own, so the others stay comparable.
            let issue = if want == StatusCode::CREATED {
                dispatched_issue(&base, &zhang, &chen, li).await?
            } else {
                target
            };
            let before = server.db.digest()?;
            let (status, body) = post_event(&base, t, issue, step_body(kind, li, other)).await?;
            assert_eq!(status, want, "{who} {kind:?}: {body}");
            if status == StatusCode::CREATED {
                continue;
            }
            assert_eq!(
                server.db.digest()?,
                before,
                "{who} {kind:?} wrote something"
            );
            if status == StatusCode::FORBIDDEN || status == StatusCode::CONFLICT {
                assert_eq!(
                    body["error"]["current_status"], "dispatched",
                    "{who} {kind:?}: {body}"
                );
                let code = if status == StatusCode::FORBIDDEN {
                    "forbidden"
                } else {
                    "invalid_transition"
                };
                assert_eq!(body["error"]["code"], code, "{body}");
            }
        }
    }
    // The target is untouched by all of it.
    let lead = Http::new(&base, &chen);
    let t = get_issue(&lead, target).await?;
    assert_eq!(
        (t.status, t.assignee, t.events.len()),
        (IssueStatus::Dispatched, Some(li), 3)
    );

    // The same from a device: a forbidden step is rejected and writes nothing.
    let before = server.db.digest()?;
    let results = Http::new(&base, &zhang)
        .push(
            DeviceId::new(),
            vec![mutation(
                1,
                "issue.event",
                json!({"event_id": IssueEventId::new(), "issue_id": target, "kind": "verified"}),
            )],
        )
        .await?;
    assert_eq!(results[0]["status"], "rejected", "{results:?}");
    assert_eq!(results[0]["error"]["code"], "forbidden", "{results:?}");
    assert_eq!(
        results[0]["error"]["current_status"], "dispatched",
        "{results:?}"
    );
    assert_eq!(server.db.digest()?, before);

    // Bad steps are 4xx naming the field, and change nothing.
    for (body, field) in [
        (json!({"kind": "rejected"}), "note"),
        (json!({"kind": "dispatched"}), "assignee"),
        (json!({"kind": "duplicate"}), "duplicate_of"),
        (
            json!({"kind": "comment", "due_at": due_tomorrow()}),
            "due_at",
        ),
        (json!({"kind": "reported"}), "kind"),
        (json!({"kind": "teleported"}), "kind"),
    ] {
        let (status, b) = post_event(&base, &chen, target, body.clone()).await?;
        assert!(status.is_client_error(), "{body}: {status} {b}");
        assert!(
            b["error"]["field"].as_str().unwrap_or("").contains(field),
            "{body}: {b}"
        );
        assert_eq!(server.db.digest()?, before, "{body}");
    }
    let (status, _) = post_event(
        &base,
        &chen,
        target,
        json!({"kind": "dispatched", "assignee": UserId::new()}),
    )
    .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = post_event(
        &base,
        &chen,
        IssueId::new(),
        json!({"kind": "comment", "note": "?"}),
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(server.db.digest()?, before);

    // Admin endpoints: patrollers and duty leads get 403 and nothing changes.
    let some_user = user_id(&base, "zhangwei").await?;
    let before = server.db.digest()?;
    // The account list: duty leads read it (whom to dispatch to), patrollers may not.
    let (status, b) = call(
        reqwest::Method::GET,
        &format!("{base}/api/v1/users"),
        Some(&token("chen")),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert!(
        b["users"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["username"] == "zhangwei")),
        "{b}"
    );
    let (status, b) = call(
        reqwest::Method::GET,
        &format!("{base}/api/v1/users"),
        Some(&token("lina")),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{b}");
    let admin_calls: Vec<(reqwest::Method, String, Option<Value>)> = vec![
        (
            reqwest::Method::POST,
            "/api/v1/users".into(),
            Some(
                json!({"username": "mallory", "display_name": "M", "role": "admin", "password": "long-enough-pw"}),
            ),
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/v1/users/{some_user}"),
            Some(json!({"role": "admin"})),
        ),
        (
            reqwest::Method::POST,
            format!("/api/v1/users/{some_user}/password"),
            Some(json!({"password": "new-password-1"})),
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/users/{some_user}/devices"),
            None,
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/devices/0123456789abcdef".into(),
            None,
        ),
        (reqwest::Method::GET, "/api/v1/audit".into(), None),
        (
            reqwest::Method::POST,
            "/api/v1/flood-stage".into(),
            Some(json!({"stage": "warning"})),
        ),
    ];
    for who in ["lina", "chen"] {
        for (method, path, body) in &admin_calls {
            let (status, b) = call(
                method.clone(),
                &format!("{base}{path}"),
                Some(&token(who)),
                body.as_ref(),
            )
            .await?;
            assert_eq!(status, StatusCode::FORBIDDEN, "{who} {method} {path}: {b}");
        }
    }
    assert_eq!(server.db.digest()?, before);
    Ok(())
}

/// The two devices of a concurrent scenario, and the order their syncs arrive in.
struct Concurrent {
    first: Client,
    second: Client,
}

impl Concurrent {
    async fn sync(&self) -> Result<()> {
        self.first.sync(&|_| {}).await?;
        self.second.sync(&|_| {}).await?;
        Ok(())
    }
}

/// An offline patroller (wangfang, who patrols no segment: she sees the issue only because it was
/// sent to her) resolves an issue that a duty lead, meanwhile, re-dispatches to someone else.
/// Answers the final issue and her device.
async fn resolve_versus_redispatch(
    server: &TestServer,
    lead_syncs_first: bool,
    dirs: &Path,
) -> Result<(Issue, Client)> {
    let base = server.url();
    let zhang_id = uid(&user_id(&base, "zhangwei").await?)?;
    let li = uid(&user_id(&base, "wangfang").await?)?;
    let (zhang, chen) = (login(&base, "zhangwei").await?, login(&base, "chen").await?);
    let issue = dispatched_issue(&base, &zhang, &chen, li).await?;

    // Both devices know the issue as dispatched to wangfang, then lose their signal.
    let li_phone = phone_of(
        &dirs.join("wangfang"),
        &base,
        "wangfang",
        "wangfang's phone",
    )
    .await?;
    let lead_tablet = phone_of(&dirs.join("chen"), &base, "chen", "chen's tablet").await?;
    let shots = tempfile::tempdir()?;
    let after = photo_file(shots.path(), "after.jpg", 120_000, 91)?;
    li_phone
        .add_issue_event(issue, IssueEventKind::InProgress, None, None, None, vec![])
        .await?;
    li_phone
        .add_issue_event(
            issue,
            IssueEventKind::Resolved,
            Some("已清理".into()),
            None,
            None,
            vec![after],
        )
        .await?;
    lead_tablet
        .add_issue_event_due(
            issue,
            IssueEventKind::Dispatched,
            Some("王芳无回应，改派张伟".into()),
            Some(zhang_id),
            None,
            Some(chrono::Utc::now() + chrono::Duration::hours(4)),
            vec![],
        )
        .await?;

    let order = if lead_syncs_first {
        Concurrent {
            first: lead_tablet,
            second: li_phone,
        }
    } else {
        Concurrent {
            first: li_phone,
            second: lead_tablet,
        }
    };
    order.sync().await?;
    // Both once more: each learns what the other did.
    order.sync().await?;
    let li_phone = if lead_syncs_first {
        order.second
    } else {
        order.first
    };
    let lead = Http::new(&base, &chen);
    Ok((get_issue(&lead, issue).await?, li_phone))
}

#[tokio::test]
async fn concurrent_steps_end_the_same_whatever_the_order_and_the_loser_is_told() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    add_user(&server, "wangfang", "patroller", &[])?;
    let li = uid(&user_id(&base, "wangfang").await?)?;
    let zhang = uid(&user_id(&base, "zhangwei").await?)?;
    let chen = uid(&user_id(&base, "chen").await?)?;
    let dirs = tempfile::tempdir()?;

    // Order 1: the lead's re-dispatch arrives first; lina's start and resolve come too late.
    let (a, li_phone) = resolve_versus_redispatch(&server, true, &dirs.path().join("a")).await?;
    // Order 2: lina's steps arrive first; the re-dispatch follows (a lead may send someone again
    // after a resolution).
    let (b, _) = resolve_versus_redispatch(&server, false, &dirs.path().join("b")).await?;

    for issue in [&a, &b] {
        assert_eq!(issue.status, IssueStatus::Dispatched, "{:?}", story(issue));
        assert_eq!(issue.assignee, Some(zhang));
        let folded = IssueState::fold(&issue.events);
        assert_eq!(
            (folded.status, folded.assignee),
            (issue.status, issue.assignee)
        );
        // Nothing lost: both devices' steps are in the history, in server order.
        let kinds: Vec<_> = issue
            .events
            .iter()
            .skip(3)
            .map(|e| (e.kind, e.by))
            .collect();
        assert_eq!(kinds.len(), 3, "{kinds:?}");
        for step in [
            (IssueEventKind::InProgress, li),
            (IssueEventKind::Resolved, li),
            (IssueEventKind::Dispatched, chen),
        ] {
            assert!(kinds.contains(&step), "{kinds:?}");
        }
    }
    // The same final state whatever the order.
    assert_eq!(
        (a.status, a.assignee, a.due_at.is_some()),
        (b.status, b.assignee, b.due_at.is_some())
    );

    // In order 1, wangfang's steps are kept, marked rejected, and her phone shows why.
    assert_eq!(
        story(&a)[3..].to_vec(),
        vec![
            (IssueEventKind::Dispatched, chen, false),
            (IssueEventKind::InProgress, li, true),
            (IssueEventKind::Resolved, li, true),
        ]
    );
    let refused = li_phone.status().await?.rejected;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused.iter().all(|r| r.error.code == "invalid_transition"),
        "{refused:?}"
    );
    assert!(
        refused
            .iter()
            .all(|r| r.error.current_status == Some(IssueStatus::Dispatched)),
        "{refused:?}"
    );
    let mirrored = li_phone.issues().await?;
    let seen = mirrored
        .iter()
        .find(|i| i.id == a.id)
        .ok_or_else(|| anyhow!("wangfang lost the issue"))?;
    let mine: Vec<_> = seen.events.iter().filter(|e| e.by == li).collect();
    assert_eq!(mine.len(), 2);
    assert!(
        mine.iter().all(|e| e
            .rejected
            .as_deref()
            .is_some_and(|r| r.contains("dispatched to someone else"))),
        "{mine:?}"
    );
    // The after-photo of the rejected resolve is kept as evidence.
    assert_eq!(mine[1].photos.len(), 1);
    assert_eq!(story(&b)[3..].iter().filter(|s| s.2).count(), 0);
    Ok(())
}

/// Two duty leads at once on a resolved issue: one verifies, the other reopens. Answers the
/// issue and the verifying lead's device.
async fn verify_versus_reopen(
    server: &TestServer,
    verify_first: bool,
    dirs: &Path,
) -> Result<(Issue, Client)> {
    let base = server.url();
    let li = uid(&user_id(&base, "lina").await?)?;
    let (zhang, chen, li_token) = (
        login(&base, "zhangwei").await?,
        login(&base, "chen").await?,
        login(&base, "lina").await?,
    );
    let issue = dispatched_issue(&base, &zhang, &chen, li).await?;
    for kind in ["in_progress", "resolved"] {
        let (s, b) = post_event(&base, &li_token, issue, json!({"kind": kind})).await?;
        anyhow::ensure!(s == StatusCode::CREATED, "{b}");
    }
    let chen_tablet = phone_of(&dirs.join("chen"), &base, "chen", "chen's tablet").await?;
    let zhou_tablet = phone_of(&dirs.join("zhou"), &base, "zhoulead", "zhou's tablet").await?;
    chen_tablet
        .add_issue_event(issue, IssueEventKind::Verified, None, None, None, vec![])
        .await?;
    zhou_tablet
        .add_issue_event(
            issue,
            IssueEventKind::Reopened,
            Some("复查仍有垃圾".into()),
            None,
            None,
            vec![],
        )
        .await?;
    let order = if verify_first {
        Concurrent {
            first: chen_tablet,
            second: zhou_tablet,
        }
    } else {
        Concurrent {
            first: zhou_tablet,
            second: chen_tablet,
        }
    };
    order.sync().await?;
    order.sync().await?;
    let chen_tablet = if verify_first {
        order.first
    } else {
        order.second
    };
    Ok((
        get_issue(&Http::new(&base, &chen), issue).await?,
        chen_tablet,
    ))
}

#[tokio::test]
async fn two_duty_leads_verify_and_reopen_at_once_and_end_the_same() -> Result<()> {
    let server = TestServer::start().await?;
    add_user(&server, "zhoulead", "duty_lead", &[])?;
    let dirs = tempfile::tempdir()?;
    let (a, _) = verify_versus_reopen(&server, true, &dirs.path().join("a")).await?;
    let (b, chen_tablet) = verify_versus_reopen(&server, false, &dirs.path().join("b")).await?;
    // Verify then reopen: reopened. Reopen then verify: the verify is too late. Either way reported.
    assert_eq!(a.status, IssueStatus::Reported);
    assert_eq!(b.status, IssueStatus::Reported);
    assert_eq!(IssueState::fold(&b.events).status, b.status);
    let late: Vec<_> = b.events.iter().filter(|e| e.rejected.is_some()).collect();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].kind, IssueEventKind::Verified);
    // The verifying lead's tablet is told, in its status and in the mirrored history.
    let refused = chen_tablet.status().await?.rejected;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].error.current_status, Some(IssueStatus::Reported));
    let mirrored = chen_tablet.issues().await?;
    let seen = mirrored
        .iter()
        .find(|i| i.id == b.id)
        .ok_or_else(|| anyhow!("not mirrored"))?;
    assert!(seen
        .events
        .iter()
        .any(|e| e.kind == IssueEventKind::Verified && e.rejected.is_some()));

    // The tablet's answer was lost and it sends the verify again: the same refusal, nothing new.
    let sent = sent_mutations(&dirs.path().join("b").join("chen"))?;
    let verify = sent
        .iter()
        .find(|m| m["type"] == "issue.event" && m["data"]["kind"] == "verified")
        .cloned()
        .ok_or_else(|| anyhow!("no verify in {sent:?}"))?;
    let chen = Http::new(&server.url(), &login(&server.url(), "chen").await?);
    let before = server.db.digest()?;
    let results = chen.push(DeviceId::new(), vec![verify]).await?;
    assert_eq!(results[0]["status"], "rejected", "{results:?}");
    assert_eq!(
        results[0]["error"]["code"], "invalid_transition",
        "{results:?}"
    );
    assert_eq!(
        results[0]["error"]["current_status"], "reported",
        "{results:?}"
    );
    assert_eq!(server.db.digest()?, before);
    Ok(())
}

/// Logs in from `address` (the server trusts X-Forwarded-For in this test).
async fn login_from(
    base: &str,
    user: &str,
    password: &str,
    address: &str,
) -> Result<reqwest::Response> {
    Ok(reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .header("x-forwarded-for", address)
        .json(&json!({"username": user, "password": password, "device_name": format!("device at {address}")}))
        .send()
        .await?)
}

#[tokio::test]
async fn revoked_tokens_stop_at_once_and_password_guessing_is_refused() -> Result<()> {
    let window = std::time::Duration::from_secs(3);
    let server = TestServer::start_with(|c| {
        c.login.window = chrono::Duration::from_std(window).unwrap_or_default();
        c.login.per_user = 5;
        c.login.per_address = 8;
        c.login.trust_forwarded = true;
    })
    .await?;
    let base = server.url();
    let admin = Http::new(&base, &login(&base, "admin").await?);
    let admin_token = login(&base, "admin").await?;

    // Two devices of one patroller; the admin revokes one over the API, the other with the CLI.
    let phone_a = login_from(&base, "zhangwei", DEMO_PASSWORD, "10.1.0.1")
        .await?
        .json::<Value>()
        .await?;
    let phone_b = login_from(&base, "zhangwei", DEMO_PASSWORD, "10.1.0.2")
        .await?
        .json::<Value>()
        .await?;
    let (a, b) = (
        phone_a["token"].as_str().unwrap_or_default().to_owned(),
        phone_b["token"].as_str().unwrap_or_default().to_owned(),
    );
    let me = |t: String| {
        let base = base.clone();
        async move {
            call(
                reqwest::Method::GET,
                &format!("{base}/api/v1/me"),
                Some(&t),
                None,
            )
            .await
            .map(|r| r.0)
        }
    };
    assert_eq!(me(a.clone()).await?, StatusCode::OK);
    let zhang = user_id(&base, "zhangwei").await?;
    let devices = admin.get(&format!("/api/v1/users/{zhang}/devices")).await?;
    let id_of = |name: &str| {
        devices["devices"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["device_name"] == name))
            .and_then(|d| d["id"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    let (id_a, id_b) = (id_of("device at 10.1.0.1"), id_of("device at 10.1.0.2"));
    assert!(!id_a.is_empty() && !id_b.is_empty(), "{devices}");
    let (s, _) = call(
        reqwest::Method::DELETE,
        &format!("{base}/api/v1/devices/{id_a}"),
        Some(&admin_token),
        None,
    )
    .await?;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(me(a.clone()).await?, StatusCode::UNAUTHORIZED);
    assert_eq!(me(b.clone()).await?, StatusCode::OK);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rc-server"));
    cmd.args(["user", "revoke", "--token", &id_b, "--data-dir"])
        .arg(&server.data_dir);
    if let Some(url) = server.db.url() {
        cmd.arg("--database-url").arg(url);
    }
    let out = cmd.output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(me(b.clone()).await?, StatusCode::UNAUTHORIZED);
    let devices = admin.get(&format!("/api/v1/users/{zhang}/devices")).await?;
    let revoked: Vec<&str> = devices["devices"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter(|d| !d["revoked_at"].is_null())
                .filter_map(|d| d["device_name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(revoked.len(), 2, "{devices}");
    assert!(
        revoked.iter().all(|n| n.starts_with("device at 10.1.0.")),
        "{devices}"
    );

    // Role changes and switching a user off, through the API; a switched-off user's token stops.
    let lina = user_id(&base, "lina").await?;
    let lina_token = login(&base, "lina").await?;
    let (s, body) = call(
        reqwest::Method::PATCH,
        &format!("{base}/api/v1/users/{lina}"),
        Some(&admin_token),
        Some(&json!({"role": "duty_lead", "display_name": "李娜 (值班)"})),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "duty_lead");
    let (s, body) = call(
        reqwest::Method::PATCH,
        &format!("{base}/api/v1/users/{lina}"),
        Some(&admin_token),
        Some(&json!({"active": false})),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(me(lina_token.clone()).await?, StatusCode::UNAUTHORIZED);
    let (s, _) = call(
        reqwest::Method::PATCH,
        &format!("{base}/api/v1/users/{lina}"),
        Some(&admin_token),
        Some(&json!({"active": true})),
    )
    .await?;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me(lina_token).await?, StatusCode::OK);

    // Guessing one user's password: refused with 429 after five failures, from any address.
    for _ in 0..5 {
        let r = login_from(&base, "chen", "guess", "10.2.0.1").await?;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login_from(&base, "chen", DEMO_PASSWORD, "10.2.0.1").await?;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_some());
    let r = login_from(&base, "chen", DEMO_PASSWORD, "10.2.0.9").await?;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the name is limited wherever the guesses came from"
    );

    // Guessing many names from one address: that address is refused, others are not.
    for i in 0..8 {
        let r = login_from(&base, &format!("nobody{i}"), "guess", "10.3.0.1").await?;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login_from(&base, "zhangwei", DEMO_PASSWORD, "10.3.0.1").await?;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = login_from(&base, "zhangwei", DEMO_PASSWORD, "10.3.0.2").await?;
    assert_eq!(r.status(), StatusCode::OK);

    // A flood of guesses at once: refused or 401, never a server error.
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..30 {
        let base = base.clone();
        flood.spawn(async move {
            login_from(&base, "admin", &format!("guess{i}"), "10.4.0.1")
                .await
                .map(|r| r.status())
        });
    }
    while let Some(r) = flood.join_next().await {
        let status = r??;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
    }

    // After the window, the right password works again.
    tokio::time::sleep(window + std::time::Duration::from_millis(500)).await;
    let r = login_from(&base, "chen", DEMO_PASSWORD, "10.2.0.1").await?;
    assert_eq!(r.status(), StatusCode::OK);

    // The audit trail has the logins, both kinds, the revocations and the user changes.
    let trail = admin
        .get("/api/v1/audit?kind=login.,token.revoke,user.update&limit=1000")
        .await?;
    let kinds: Vec<&str> = trail["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    for k in ["login.ok", "login.failed", "token.revoke", "user.update"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let revokes: Vec<&Value> = trail["entries"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["kind"] == "token.revoke").collect())
        .unwrap_or_default();
    assert_eq!(revokes.len(), 2);
    assert!(revokes.iter().any(|e| e["actor_name"] == "admin"));
    let failed = admin
        .get("/api/v1/audit?kind=login.failed&actor=chen")
        .await?;
    assert_eq!(
        failed["entries"].as_array().map(Vec::len),
        Some(5),
        "{failed}"
    );
    Ok(())
}

#[tokio::test]
async fn duty_leads_list_filter_sort_page_and_count() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let li = uid(&user_id(&base, "lina").await?)?;
    let (zhang, chen) = (login(&base, "zhangwei").await?, login(&base, "chen").await?);
    let lead = Http::new(&base, &chen);
    let dispatched = dispatched_issue(&base, &zhang, &chen, li).await?;
    let late = report_by_push(&base, &zhang, "逾期").await?;
    let (s, b) = post_event(&base, &chen, late, json!({"kind": "dispatched", "assignee": li, "due_at": (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339()})).await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let waiting = report_by_push(&base, &zhang, "待受理").await?;

    let list = lead.get("/api/v1/issues?overdue=true").await?;
    let ids: Vec<&str> = list["issues"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec![late.to_string()]);
    assert_eq!(list["issues"][0]["overdue"], true);

    let list = lead
        .get(&format!(
            "/api/v1/issues?assignee={li}&status=dispatched,in_progress&sort=newest"
        ))
        .await?;
    assert_eq!(list["total"], 2, "{list}");
    let list = lead.get("/api/v1/issues?status=reported&limit=1").await?;
    assert_eq!(list["total"], 1);
    assert_eq!(list["issues"][0]["id"], json!(waiting));
    assert!(list["next_offset"].is_null());
    let list = lead.get("/api/v1/issues?limit=2").await?;
    assert_eq!(list["issues"].as_array().map(Vec::len), Some(2));
    assert_eq!(list["next_offset"], 2);
    let rest = lead.get("/api/v1/issues?limit=2&offset=2").await?;
    assert_eq!(rest["issues"].as_array().map(Vec::len), Some(1));
    let all: Vec<Value> = list["issues"]
        .as_array()
        .into_iter()
        .chain(rest["issues"].as_array())
        .flatten()
        .cloned()
        .collect();
    let mut ids: Vec<String> = all
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    let mut want = vec![
        dispatched.to_string(),
        late.to_string(),
        waiting.to_string(),
    ];
    want.sort();
    assert_eq!(ids, want);

    let counts = lead.get("/api/v1/issues/counts").await?;
    assert_eq!(counts["total"], 3, "{counts}");
    assert_eq!(counts["by_status"]["dispatched"], 2, "{counts}");
    assert_eq!(counts["by_status"]["reported"], 1, "{counts}");
    assert_eq!(counts["by_status"]["verified"], 0, "{counts}");

    // The queries the alert engine calls: the overdue dispatch now, and, a week and a day on, the
    // report nobody accepted (one working day, weekends skipped, has passed whatever today is).
    let db = riverchief_server::db::Db::open(&server.db.location())?;
    let mut conn = db.conn()?;
    let now = chrono::Utc::now();
    let overdue = riverchief_server::db::issues::overdue_dispatches(&mut conn, now)?;
    assert_eq!(
        overdue.iter().map(|o| o.issue_id).collect::<Vec<_>>(),
        vec![late]
    );
    assert_eq!(overdue[0].assignee, Some(li));
    let day = riverchief_server::db::issues::default_accept_within();
    assert!(riverchief_server::db::issues::unaccepted_escalations(&mut conn, now, day)?.is_empty());
    let later = riverchief_server::db::issues::unaccepted_escalations(
        &mut conn,
        now + chrono::Duration::days(8),
        day,
    )?;
    assert_eq!(
        later.iter().map(|e| e.issue_id).collect::<Vec<_>>(),
        vec![waiting]
    );
    assert!(later[0].accept_by > later[0].recorded_at + chrono::Duration::hours(23));

    for bad in [
        "overdue=maybe",
        "limit=0",
        "sort=random",
        "assignee=bob",
        "offset=-1",
    ] {
        let (s, b) = call(
            reqwest::Method::GET,
            &format!("{base}/api/v1/issues?{bad}"),
            Some(&chen),
            None,
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }
    Ok(())
}

#[tokio::test]
async fn admins_manage_accounts_and_read_the_trail_and_bad_input_is_named() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let admin_token = login(&base, "admin").await?;
    let admin = Http::new(&base, &admin_token);
    let post = |path: &str, body: Value| {
        let (base, t) = (base.clone(), admin_token.clone());
        let path = path.to_owned();
        async move {
            call(
                reqwest::Method::POST,
                &format!("{base}{path}"),
                Some(&t),
                Some(&body),
            )
            .await
        }
    };

    // A new patroller on two segments, with a password the server makes and shows once.
    let (s, made) = post(
        "/api/v1/users",
        json!({"username": "zhaolei", "display_name": "赵磊 (志愿者)", "role": "patroller", "segments": ["QHL-01", "QHL-02"]}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let password = made["password"].as_str().unwrap_or_default().to_owned();
    assert!(password.len() >= 8, "{made}");
    assert_eq!(
        made["user"]["segment_ids"].as_array().map(Vec::len),
        Some(2)
    );
    let id = made["user"]["id"].as_str().unwrap_or_default().to_owned();
    let try_login = |user: &str, pw: &str| {
        let (base, user, pw) = (base.clone(), user.to_owned(), pw.to_owned());
        async move {
            call(
                reqwest::Method::POST,
                &format!("{base}/api/v1/auth/login"),
                None,
                Some(&json!({"username": user, "password": pw, "device_name": "new phone"})),
            )
            .await
            .map(|r| r.0)
        }
    };
    assert_eq!(try_login("zhaolei", &password).await?, StatusCode::OK);

    // A reset to a chosen password: the old one stops working, the new one works.
    let (s, b) = post(
        &format!("/api/v1/users/{id}/password"),
        json!({"password": "qinhuai-2024"}),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(
        b["password"].is_null(),
        "a chosen password is not echoed: {b}"
    );
    assert_eq!(
        try_login("zhaolei", &password).await?,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(try_login("zhaolei", "qinhuai-2024").await?, StatusCode::OK);

    // Segments replaced; the list shows it.
    let (s, b) = call(
        reqwest::Method::PATCH,
        &format!("{base}/api/v1/users/{id}"),
        Some(&admin_token),
        Some(&json!({"segments": ["QHR-02"]})),
    )
    .await?;
    assert_eq!(s, StatusCode::OK, "{b}");
    let users = admin.get("/api/v1/users").await?;
    let zhao = users["users"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["username"] == "zhaolei"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        zhao["segment_ids"].as_array().map(Vec::len),
        Some(1),
        "{zhao}"
    );
    assert_eq!(zhao["active"], true);

    // Bad input: 4xx naming the field, nothing written.
    let before = server.db.digest()?;
    for (method, path, body, status, field) in [
        (
            reqwest::Method::POST,
            "/api/v1/users".to_owned(),
            json!({"username": "x", "display_name": "x", "role": "king"}),
            400,
            Some("role"),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users".to_owned(),
            json!({"username": "x", "display_name": "x", "role": "patroller", "password": "short"}),
            400,
            Some("password"),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users".to_owned(),
            json!({"username": "has space", "display_name": "x", "role": "patroller"}),
            400,
            Some("username"),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users".to_owned(),
            json!({"username": "x", "display_name": "x", "role": "patroller", "segments": ["NOPE"]}),
            422,
            Some("segments[0]"),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/users".to_owned(),
            json!({"username": "zhaolei", "display_name": "x", "role": "patroller"}),
            409,
            None,
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/v1/users/{id}"),
            json!({"display_name": ""}),
            400,
            Some("display_name"),
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/v1/users/{id}"),
            json!({"colour": "red"}),
            400,
            None,
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/v1/users/{}", UserId::new()),
            json!({"active": false}),
            404,
            None,
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/devices/no-such-token".to_owned(),
            Value::Null,
            404,
            None,
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (s, b) = call(
            method.clone(),
            &format!("{base}{path}"),
            Some(&admin_token),
            body.as_ref(),
        )
        .await?;
        assert_eq!(s.as_u16(), status, "{method} {path}: {b}");
        if let Some(f) = field {
            assert!(
                b["error"]["field"].as_str().unwrap_or("").contains(f),
                "{method} {path}: {b}"
            );
        }
        assert_eq!(server.db.digest()?, before, "{method} {path}");
    }
    // The admin cannot lock themselves out.
    let me = admin.get("/api/v1/me").await?;
    let (s, _) = call(
        reqwest::Method::PATCH,
        &format!(
            "{base}/api/v1/users/{}",
            me["id"].as_str().unwrap_or_default()
        ),
        Some(&admin_token),
        Some(&json!({"active": false})),
    )
    .await?;
    assert_eq!(s, StatusCode::CONFLICT);
    for q in ["limit=0", "before=abc", "from=yesterday", "actor=nobody"] {
        let (s, b) = call(
            reqwest::Method::GET,
            &format!("{base}/api/v1/audit?{q}"),
            Some(&admin_token),
            None,
        )
        .await?;
        assert!(s.is_client_error(), "{q}: {s} {b}");
    }

    // The trail, newest first, by actor and kind, in pages that do not overlap.
    let trail = admin.get("/api/v1/audit?actor=admin&kind=user.").await?;
    let kinds: Vec<&str> = trail["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, vec!["user.update", "user.password", "user.add"]);
    assert!(trail["entries"]
        .as_array()
        .is_some_and(|e| e.iter().all(|e| e["subject"] == json!(id))));
    let first = admin.get("/api/v1/audit?limit=2").await?;
    let next = first["next_before"]
        .as_i64()
        .ok_or_else(|| anyhow!("{first}"))?;
    let second = admin
        .get(&format!("/api/v1/audit?limit=2&before={next}"))
        .await?;
    let seqs: Vec<i64> = first["entries"]
        .as_array()
        .into_iter()
        .chain(second["entries"].as_array())
        .flatten()
        .filter_map(|e| e["seq"].as_i64())
        .collect();
    assert_eq!(seqs.len(), 4);
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    let window = admin
        .get(&format!(
            "/api/v1/audit?from={}&kind=login.ok",
            (chrono::Utc::now() - chrono::Duration::hours(1))
                .to_rfc3339()
                .replace('+', "%2B")
        ))
        .await?;
    assert!(
        window["entries"].as_array().is_some_and(|e| e.len() >= 3),
        "{window}"
    );

    // Stock moved from a device is on the trail too, with the device it came from.
    let phone = Http::new(&base, &login(&base, "zhangwei").await?);
    let results = phone
        .push(
            DeviceId::new(),
            vec![mutation(
                1,
                "stock.move",
                json!({"movement_id": uuid::Uuid::now_v7(), "depot": "ZHWY-P", "item": "BAG-JUTE",
                       "kind": "dispatch", "quantity": 3, "segment": "QHL-02"}),
            )],
        )
        .await?;
    assert_eq!(results[0]["status"], "applied", "{results:?}");
    let moves = admin.get("/api/v1/audit?kind=stock.move").await?;
    assert_eq!(moves["entries"][0]["actor_name"], "zhangwei", "{moves}");
    assert_eq!(moves["entries"][0]["device_name"], "e2e", "{moves}");
    assert_eq!(moves["entries"][0]["detail"]["quantity"], -3, "{moves}");
    Ok(())
}

/// Two duty leads dispatch the same issue to different people from tablets that were offline.
/// Answers the issue, the assignee that should win (the dispatch with the greater event id), and
/// the tablet whose dispatch lost.
async fn two_dispatches(
    server: &TestServer,
    chen_first: bool,
    dirs: &Path,
) -> Result<(Issue, UserId, Client)> {
    let base = server.url();
    let li = uid(&user_id(&base, "lina").await?)?;
    let zhang = uid(&user_id(&base, "zhangwei").await?)?;
    let (zhang_token, chen_token) = (login(&base, "zhangwei").await?, login(&base, "chen").await?);
    let issue = report_by_push(&base, &zhang_token, "漂浮物").await?;
    let (s, b) = post_event(&base, &chen_token, issue, json!({"kind": "accepted"})).await?;
    anyhow::ensure!(s == StatusCode::CREATED, "{b}");
    let chen_tablet = phone_of(&dirs.join("chen"), &base, "chen", "chen's tablet").await?;
    let zhou_tablet = phone_of(&dirs.join("zhou"), &base, "zhoulead", "zhou's tablet").await?;
    let to_li = chen_tablet
        .add_issue_event(
            issue,
            IssueEventKind::Dispatched,
            None,
            Some(li),
            None,
            vec![],
        )
        .await?;
    let to_zhang = zhou_tablet
        .add_issue_event(
            issue,
            IssueEventKind::Dispatched,
            None,
            Some(zhang),
            None,
            vec![],
        )
        .await?;
    let (winner, chen_wins) = if to_li > to_zhang {
        (li, true)
    } else {
        (zhang, false)
    };
    let order = if chen_first {
        Concurrent {
            first: chen_tablet,
            second: zhou_tablet,
        }
    } else {
        Concurrent {
            first: zhou_tablet,
            second: chen_tablet,
        }
    };
    order.sync().await?;
    order.sync().await?;
    let (chen_tablet, zhou_tablet) = if chen_first {
        (order.first, order.second)
    } else {
        (order.second, order.first)
    };
    let loser = if chen_wins { zhou_tablet } else { chen_tablet };
    Ok((
        get_issue(&Http::new(&base, &chen_token), issue).await?,
        winner,
        loser,
    ))
}

#[tokio::test]
async fn two_duty_leads_dispatch_to_different_people_and_the_same_dispatch_stands() -> Result<()> {
    let server = TestServer::start().await?;
    add_user(&server, "zhoulead", "duty_lead", &[])?;
    let dirs = tempfile::tempdir()?;
    for (i, chen_first) in [true, false].into_iter().enumerate() {
        let (issue, winner, loser) =
            two_dispatches(&server, chen_first, &dirs.path().join(i.to_string())).await?;
        assert_eq!(issue.status, IssueStatus::Dispatched, "{:?}", story(&issue));
        assert_eq!(issue.assignee, Some(winner), "{:?}", story(&issue));
        assert_eq!(IssueState::fold(&issue.events).assignee, Some(winner));
        let dispatches: Vec<_> = issue
            .events
            .iter()
            .filter(|e| e.kind == IssueEventKind::Dispatched)
            .collect();
        assert_eq!(dispatches.len(), 2, "both are kept");
        // The losing lead's tablet is told, whether their dispatch came first or second.
        let status = loser.status().await?;
        let mirrored = loser.issues().await?;
        let seen = mirrored
            .iter()
            .find(|i| i.id == issue.id)
            .ok_or_else(|| anyhow!("not mirrored"))?;
        assert_eq!(seen.assignee, Some(winner));
        let lost_first = dispatches[0].assignee != Some(winner);
        if lost_first {
            // Applied when it arrived, then overtaken: the history shows both, the later stands.
            assert!(dispatches.iter().all(|d| d.rejected.is_none()));
        } else {
            assert_eq!(status.rejected.len(), 1, "{:?}", status.rejected);
            assert_eq!(status.rejected[0].error.code, "invalid_transition");
            assert!(seen
                .events
                .iter()
                .any(|e| e.kind == IssueEventKind::Dispatched && e.rejected.is_some()));
        }
    }
    Ok(())
}

/// The scheduled check at `now` (the test's clock), with the acceptance time `accept_within`.
fn check_at(
    server: &TestServer,
    now: chrono::DateTime<chrono::Utc>,
    accept_within: chrono::Duration,
) -> Result<riverchief_server::checks::Report> {
    let db = server.open_db()?;
    let mut conn = db.conn()?;
    Ok(riverchief_server::checks::run(
        &mut conn,
        &riverchief_server::coverage::Policy::default(),
        &riverchief_server::checks::Settings {
            accept_within,
            ..Default::default()
        },
        now,
    )?)
}

/// The alerts of `kind` about `issue` this viewer sees, active and resolved.
async fn issue_alerts(http: &Http, kind: &str, issue: IssueId) -> Result<Vec<Value>> {
    let list = http
        .get(&format!("/api/v1/alerts?kind={kind}&state=all"))
        .await?;
    Ok(list["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|a| a["issue_id"] == json!(issue))
                .cloned()
                .collect()
        })
        .unwrap_or_default())
}

#[tokio::test]
async fn late_dispatches_and_unaccepted_reports_raise_alerts_until_the_step_that_clears_them(
) -> Result<()> {
    use riverchief_shared::domain::local_minutes;
    let server = TestServer::start().await?;
    let base = server.url();
    let day = riverchief_server::db::issues::default_accept_within();
    let (zhang, chen, admin) = (
        login(&base, "zhangwei").await?,
        login(&base, "chen").await?,
        login(&base, "admin").await?,
    );
    let lead = Http::new(&base, &chen);
    // An emergency crew member assigned no segment: sees a late dispatch only as its assignee.
    let (s, made) = call(
        reqwest::Method::POST,
        &format!("{base}/api/v1/users"),
        Some(&admin),
        Some(&json!({"username": "wanggang", "display_name": "王刚 (抢险队)", "role": "patroller", "password": DEMO_PASSWORD})),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let wang_id = uid(made["user"]["id"].as_str().unwrap_or_default())?;
    let wang_token = login(&base, "wanggang").await?;
    let wang = Http::new(&base, &wang_token);

    // A dispatch due in two hours: not late before then, late after, one alert however often the
    // check runs.
    let late = report_by_push(&base, &zhang, "堤顶垃圾待清").await?;
    let (s, b) = post_event(&base, &chen, late, json!({"kind": "accepted"})).await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let due = chrono::Utc::now() + chrono::Duration::hours(2);
    let (s, b) = post_event(
        &base,
        &chen,
        late,
        json!({"kind": "dispatched", "assignee": wang_id, "due_at": due.to_rfc3339()}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let issue = get_issue(&lead, late).await?;
    let due = issue.due_at.ok_or_else(|| anyhow!("no due time"))?;
    let report = check_at(&server, due - chrono::Duration::minutes(1), day)?;
    assert_eq!(report.dispatches_overdue, 0);
    assert!(issue_alerts(&lead, "dispatch_overdue", late)
        .await?
        .is_empty());
    let after = due + chrono::Duration::hours(1);
    assert_eq!(check_at(&server, after, day)?.dispatches_overdue, 1);
    assert_eq!(
        check_at(&server, after + chrono::Duration::minutes(5), day)?.dispatches_overdue,
        1
    );
    let seen = issue_alerts(&lead, "dispatch_overdue", late).await?;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let alert = &seen[0];
    assert_eq!(alert["state"], "open", "{alert}");
    assert_eq!(alert["level"], "warning");
    assert_eq!(alert["subject"], format!("issue:{late}"));
    assert_eq!(alert["details"]["assignee"], json!(wang_id));
    assert_eq!(alert["details"]["issue_id"], json!(late));
    let message = alert["message"].as_str().unwrap_or_default();
    for part in [
        "派遣逾期",
        "QHL-02",
        &issue.chainage,
        &issue.category_zh,
        &local_minutes(due),
    ] {
        assert!(message.contains(part), "{part} not in {message}");
    }
    let message_en = alert["message_en"].as_str().unwrap_or_default();
    assert!(
        message_en.contains("QHL-02") && message_en.contains(&local_minutes(due)),
        "{message_en}"
    );
    // The assignee sees it; a step that does not clear the cause leaves it open.
    let theirs = issue_alerts(&wang, "dispatch_overdue", late).await?;
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(theirs[0]["id"], alert["id"]);
    let (s, b) = post_event(&base, &wang_token, late, json!({"kind": "in_progress"})).await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(
        issue_alerts(&lead, "dispatch_overdue", late).await?[0]["state"],
        "open"
    );
    // Resolved by the assignee: the alert resolves in that step, and stays so.
    let (s, b) = post_event(
        &base,
        &wang_token,
        late,
        json!({"kind": "resolved", "note": "已清理"}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let seen = issue_alerts(&lead, "dispatch_overdue", late).await?;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["state"], "resolved", "{seen:?}");
    assert!(seen[0]["resolved_at"].is_string());
    assert_eq!(check_at(&server, after, day)?.dispatches_overdue, 0);
    assert_eq!(
        issue_alerts(&lead, "dispatch_overdue", late).await?.len(),
        1
    );

    // Dispatched again with a later due time: the late one's alert resolves at once.
    let again = report_by_push(&base, &zhang, "护坡杂物").await?;
    let (s, b) = post_event(
        &base,
        &chen,
        again,
        json!({"kind": "dispatched", "assignee": wang_id, "due_at": due.to_rfc3339()}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(check_at(&server, after, day)?.dispatches_overdue, 1);
    assert_eq!(
        issue_alerts(&lead, "dispatch_overdue", again).await?[0]["state"],
        "open"
    );
    let (s, b) = post_event(
        &base,
        &chen,
        again,
        json!({"kind": "dispatched", "assignee": wang_id, "due_at": (after + chrono::Duration::days(7)).to_rfc3339()}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let seen = issue_alerts(&lead, "dispatch_overdue", again).await?;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["state"], "resolved", "{seen:?}");
    assert_eq!(check_at(&server, after, day)?.dispatches_overdue, 0);

    // A report nobody accepts: escalated once one working day has passed (three calendar days
    // cover any weekend), seen by duty leads, not by a patroller it does not concern.
    let waiting = report_by_push(&base, &zhang, "堤脚积水").await?;
    let reported_at = get_issue(&lead, waiting).await?.reported_at;
    let now = chrono::Utc::now();
    assert_eq!(check_at(&server, now, day)?.unaccepted, 0);
    assert!(issue_alerts(&lead, "issue_unaccepted", waiting)
        .await?
        .is_empty());
    let later = now + chrono::Duration::days(3);
    assert_eq!(check_at(&server, later, day)?.unaccepted, 1);
    assert_eq!(check_at(&server, later, day)?.unaccepted, 1);
    let seen = issue_alerts(&lead, "issue_unaccepted", waiting).await?;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["state"], "open");
    assert_eq!(seen[0]["subject"], format!("issue:{waiting}"));
    let message = seen[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("受理超时")
            && message.contains("QHL-02")
            && message.contains(&local_minutes(reported_at)),
        "{message}"
    );
    assert!(issue_alerts(&wang, "issue_unaccepted", waiting)
        .await?
        .is_empty());
    // The acceptance time comes from the settings: with a longer one it is no longer late.
    let week = chrono::Duration::hours(24 * 5);
    assert_eq!(check_at(&server, later, week)?.unaccepted, 0);
    let seen = issue_alerts(&lead, "issue_unaccepted", waiting).await?;
    assert_eq!(seen[0]["state"], "resolved", "{seen:?}");
    assert_eq!(check_at(&server, later, day)?.unaccepted, 1);
    // Accepted: the escalation resolves in that step.
    let (s, b) = post_event(&base, &chen, waiting, json!({"kind": "accepted"})).await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let seen = issue_alerts(&lead, "issue_unaccepted", waiting).await?;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|a| a["state"] == "resolved"), "{seen:?}");
    assert_eq!(check_at(&server, later, day)?.unaccepted, 0);
    Ok(())
}
