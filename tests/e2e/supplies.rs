//! Flood supplies: the stock ledger under concurrent dispatches from the API and from devices, and bad
//! movements refused without a trace.

use crate::common::{mutation, open_client, segment, Http};
use anyhow::Result;
use reqwest::StatusCode;
use riverchief_server::db::{stock, Db};
use riverchief_shared::id::DeviceId;
use riverchief_tests::{free_port, login, TestDb, TestServer};
use serde_json::{json, Value};

const DEPOT: &str = "ZHWY-P";
const ITEM: &str = "BAG-JUTE";

/// Posts a movement as `token`; answers the status and the body.
async fn post_movement(base: &str, token: &str, body: &Value) -> Result<(StatusCode, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/stock/movements"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = r.status();
    let text = r.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

fn open_db(db: &TestDb) -> Result<Db> {
    Ok(Db::open(&db.location())?)
}

/// Balance = sum of the ledger for every depot and item.
pub(crate) fn assert_ledger(db: &TestDb) -> Result<()> {
    let db = open_db(db)?;
    let mut conn = db.conn()?;
    let mismatches = stock::ledger_check(&mut conn)?;
    assert!(mismatches.is_empty(), "{mismatches:?}");
    Ok(())
}

/// The admin command agrees: `rc-server stock check` on the live database.
pub(crate) fn cli_check(server: &TestServer) -> Result<()> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rc-server"));
    cmd.args(["stock", "check", "--data-dir"])
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("every stock balance equals"));
    Ok(())
}

async fn line(http: &Http, depot: &str, item: &str) -> Result<Value> {
    let view = http.get("/api/v1/stock").await?;
    view["stock"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|l| l["depot"] == depot && l["item"] == item)
                .cloned()
        })
        .ok_or_else(|| anyhow::anyhow!("no {depot}/{item} in {view}"))
}

/// The number in "only N available".
fn available_in(message: &str) -> Option<i64> {
    message
        .split_whitespace()
        .skip_while(|w| *w != "only")
        .nth(1)
        .and_then(|n| n.parse().ok())
}

#[tokio::test]
async fn concurrent_dispatches_never_take_stock_below_zero() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let lead = login(&base, "chen").await?;
    let patroller = login(&base, "zhangwei").await?;
    let http = Http::new(&base, &lead);

    // The demo's opening stock, through the ledger.
    let l = line(&http, DEPOT, ITEM).await?;
    assert_eq!(l["on_hand"], 200, "{l}");
    assert_eq!(l["quota"], 200, "{l}");
    assert_ledger(&server.db)?;

    // Down to 50.
    let (s, b) = post_movement(
        &base,
        &lead,
        &json!({"depot": DEPOT, "item": ITEM, "kind": "write_off", "quantity": 150, "note": "wet"}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["on_hand"], 50, "{b}");

    // 100 dispatches of 1 at once: even ones from the API, odd ones pushed by a patroller's device.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u32 {
        let base = base.clone();
        let (lead, patroller) = (lead.clone(), patroller.clone());
        tasks.spawn(async move {
            if i % 2 == 0 {
                let (s, b) = post_movement(
                    &base,
                    &lead,
                    &json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch", "quantity": 1, "segment": "QHL-02"}),
                )
                .await?;
                match s {
                    StatusCode::CREATED => Ok::<_, anyhow::Error>((true, None)),
                    StatusCode::CONFLICT => {
                        assert_eq!(b["error"]["code"], "insufficient_stock", "{b}");
                        let msg = b["error"]["message"].as_str().unwrap_or_default();
                        Ok((false, available_in(msg)))
                    }
                    other => anyhow::bail!("dispatch {i}: {other} {b}"),
                }
            } else {
                let http = Http::new(&base, &patroller);
                let m = mutation(
                    1,
                    "stock.move",
                    json!({"movement_id": uuid::Uuid::now_v7(), "depot": DEPOT, "item": ITEM,
                           "kind": "dispatch", "quantity": 1, "segment": "QHL-02", "note": "boil at K1+200"}),
                );
                let r = http.push(DeviceId::new(), vec![m]).await?;
                match r[0]["status"].as_str() {
                    Some("applied") => Ok((true, None)),
                    Some("rejected") => {
                        assert_eq!(r[0]["error"]["code"], "insufficient_stock", "{r:?}");
                        let msg = r[0]["error"]["message"].as_str().unwrap_or_default();
                        Ok((false, available_in(msg)))
                    }
                    _ => anyhow::bail!("push {i}: {r:?}"),
                }
            }
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (applied, available) = r??;
        if applied {
            ok += 1;
        } else {
            refused += 1;
            assert_eq!(available, Some(0), "a refusal names what is available");
        }
    }
    assert_eq!((ok, refused), (50, 50));
    let l = line(&http, DEPOT, ITEM).await?;
    assert_eq!(l["on_hand"], 0, "{l}");
    assert_eq!(l["shortfall"], 200, "{l}");
    assert_ledger(&server.db)?;
    cli_check(&server)?;
    Ok(())
}

#[tokio::test]
async fn bad_movements_are_refused_and_write_nothing() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let lead = login(&base, "chen").await?;
    let patroller = login(&base, "zhangwei").await?;
    let before = server.db.digest()?;

    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch", "quantity": 0}),
            StatusCode::BAD_REQUEST,
            "quantity",
        ),
        (
            json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch", "quantity": -3}),
            StatusCode::BAD_REQUEST,
            "quantity",
        ),
        (
            json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch", "quantity": 1.5}),
            StatusCode::BAD_REQUEST,
            "quantity",
        ),
        (
            json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch", "quantity": "2"}),
            StatusCode::BAD_REQUEST,
            "quantity",
        ),
        (
            json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch"}),
            StatusCode::BAD_REQUEST,
            "quantity",
        ),
        (
            json!({"depot": DEPOT, "item": ITEM, "kind": "steal", "quantity": 1}),
            StatusCode::BAD_REQUEST,
            "kind",
        ),
        (
            json!({"depot": "NOPE", "item": ITEM, "kind": "dispatch", "quantity": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "depot",
        ),
        (
            json!({"depot": DEPOT, "item": "NOPE", "kind": "dispatch", "quantity": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "item",
        ),
        (
            json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch", "quantity": 1, "segment": "NOPE"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "segment",
        ),
    ];
    for (body, want, field) in &cases {
        let (s, b) = post_movement(&base, &lead, body).await?;
        assert_eq!(s, *want, "{body} -> {b}");
        assert_eq!(b["error"]["field"], *field, "{body} -> {b}");
    }
    // More than there is: 409 with what is available.
    let (s, b) = post_movement(
        &base,
        &lead,
        &json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch", "quantity": 201}),
    )
    .await?;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["code"], "insufficient_stock", "{b}");
    assert_eq!(
        available_in(b["error"]["message"].as_str().unwrap_or_default()),
        Some(200),
        "{b}"
    );
    // A patroller may not use the API, nor receive from a device.
    let (s, _) = post_movement(
        &base,
        &patroller,
        &json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch", "quantity": 1}),
    )
    .await?;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let http = Http::new(&base, &patroller);
    let bad = [
        json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch", "quantity": 0, "segment": "QHL-02"}),
        json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch", "quantity": 1.5, "segment": "QHL-02"}),
        json!({"depot": "NOPE", "item": ITEM, "kind": "dispatch", "quantity": 1, "segment": "QHL-02"}),
        json!({"depot": DEPOT, "item": "NOPE", "kind": "dispatch", "quantity": 1, "segment": "QHL-02"}),
        json!({"depot": DEPOT, "item": ITEM, "kind": "receive", "quantity": 1}),
        json!({"depot": DEPOT, "item": ITEM, "kind": "dispatch", "quantity": 500, "segment": "QHL-02"}),
    ];
    for (i, data) in bad.iter().enumerate() {
        let mut data = data.clone();
        data["movement_id"] = json!(uuid::Uuid::now_v7());
        let r = http
            .push(
                DeviceId::new(),
                vec![mutation(i as u64 + 1, "stock.move", data.clone())],
            )
            .await?;
        assert_eq!(r[0]["status"], "rejected", "{data} -> {r:?}");
    }
    assert_eq!(server.db.digest()?, before);
    assert_ledger(&server.db)?;
    Ok(())
}

#[tokio::test]
async fn two_devices_dispatch_the_last_sandbags_offline_one_wins() -> Result<()> {
    let port = free_port()?;
    let data = tempfile::tempdir()?;
    let db = TestDb::fresh(data.path())?;
    let server = TestServer::start_on(data.path(), &db, port).await?;
    let base = server.url();
    let lead = login(&base, "chen").await?;
    // The last 10 woven sandbags at the property company's point.
    let (s, b) = post_movement(
        &base,
        &lead,
        &json!({"depot": DEPOT, "item": "BAG-WOVEN", "kind": "write_off", "quantity": 490}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["on_hand"], 10, "{b}");

    let mut phones = Vec::new();
    for who in ["zhangwei", "lina"] {
        let dir = tempfile::tempdir()?;
        let client = open_client(dir.path(), &base)?;
        client
            .login(&base, who, riverchief_tests::DEMO_PASSWORD, "phone")
            .await?;
        client.sync(&|_| {}).await?;
        phones.push((dir, client));
    }

    // No signal: each sends the last 10 sandbags to the boil on QHL-02, and starts a patrol.
    server.stop().await;
    let mut patrols = Vec::new();
    for (_, client) in &phones {
        let qhl02 = segment(client, "QHL-02").await?;
        client
            .move_stock(
                DEPOT,
                "BAG-WOVEN",
                "dispatch",
                10,
                Some("QHL-02"),
                Some("管涌抢险".into()),
            )
            .await?;
        patrols.push(
            client
                .start_patrol(&[qhl02.properties.id], None, None)
                .await?,
        );
    }

    let server = TestServer::start_on(data.path(), &db, port).await?;
    let mut rejected = Vec::new();
    for (_, client) in &phones {
        client.sync(&|_| {}).await?;
        let st = client.status().await?;
        assert_eq!(st.pending, 0, "{st:?}");
        rejected.extend(st.rejected);
    }
    // One applied, one rejected with the reason, shown on its device; the patrols both arrived.
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].kind, "stock.move");
    assert_eq!(rejected[0].error.code, "insufficient_stock");
    assert_eq!(
        available_in(&rejected[0].error.message),
        Some(0),
        "{rejected:?}"
    );
    let http = Http::new(&server.url(), &lead);
    let l = line(&http, DEPOT, "BAG-WOVEN").await?;
    assert_eq!(l["on_hand"], 0, "{l}");
    // The phone that lost the race asks for the stock, and sees why.
    let view = phones[0].1.stock().await?;
    let bags = view
        .stock
        .iter()
        .find(|l| l.depot == DEPOT && l.item == "BAG-WOVEN")
        .ok_or_else(|| anyhow::anyhow!("no sandbag line in {view:?}"))?;
    assert_eq!((bags.on_hand, bags.shortfall), (0, bags.quota));
    for id in &patrols {
        let p = http.get(&format!("/api/v1/patrols/{id}")).await?;
        assert!(p.to_string().contains(&id.to_string()), "{p}");
    }
    assert_ledger(&server.db)?;
    Ok(())
}

pub(crate) async fn post(
    base: &str,
    token: &str,
    path: &str,
    body: &Value,
) -> Result<(StatusCode, Value)> {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = r.status();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn a_stocktake_turns_differences_into_adjustments() -> Result<()> {
    let server = TestServer::start().await?;
    let base = server.url();
    let lead = login(&base, "chen").await?;
    let http = Http::new(&base, &lead);

    // Bad counts change nothing.
    let before = server.db.digest()?;
    for (counts, field) in [
        (
            json!([{"item": "SHOVEL", "counted": 18.5}]),
            "counts[0].counted",
        ),
        (
            json!([{"item": "SHOVEL", "counted": -1}]),
            "counts[0].counted",
        ),
        (
            json!([{"item": "SHOVEL", "counted": "18"}]),
            "counts[0].counted",
        ),
    ] {
        let (s, b) = post(
            &base,
            &lead,
            "/api/v1/stock/stocktakes",
            &json!({"depot": "FHXA-C", "reason": "monthly", "counts": counts}),
        )
        .await?;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    let (s, b) = post(
        &base,
        &lead,
        "/api/v1/stock/stocktakes",
        &json!({"depot": "FHXA-C", "reason": "monthly", "counts": [{"item": "SHOVEL", "counted": 1}, {"item": "NOPE", "counted": 1}]}),
    )
    .await?;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "counts[1].item", "{b}");
    assert_eq!(server.db.digest()?, before);

    // Two shovels missing, two jute sacks more than the books, the sandbags as booked.
    let (s, b) = post(
        &base,
        &lead,
        "/api/v1/stock/stocktakes",
        &json!({"depot": "FHXA-C", "reason": "2026-11 monthly stocktake", "counts": [
            {"item": "SHOVEL", "counted": 18},
            {"item": "BAG-JUTE", "counted": 302},
            {"item": "BAG-WOVEN", "counted": 1500},
        ]}),
    )
    .await?;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let adj = b["adjustments"].as_array().cloned().unwrap_or_default();
    assert_eq!(adj.len(), 2, "{b}");
    assert_eq!(adj[0]["adjustment"], -2, "{b}");
    assert_eq!(adj[1]["adjustment"], 2, "{b}");
    assert_eq!(line(&http, "FHXA-C", "SHOVEL").await?["on_hand"], 18);
    assert_eq!(line(&http, "FHXA-C", "BAG-JUTE").await?["on_hand"], 302);
    assert_eq!(line(&http, "FHXA-C", "BAG-WOVEN").await?["on_hand"], 1500);
    // The lights are short of their quota and their lot's inspection date has passed.
    let lights = line(&http, "FHXA-C", "LIGHT").await?;
    assert_eq!(lights["shortfall"], 2, "{lights}");
    assert_eq!(
        lights["lots_expiring"][0]["expires_on"], "2026-06-30",
        "{lights}"
    );
    let jackets = line(&http, "FHXA-C", "LIFE-JACKET").await?;
    assert_eq!(jackets["lots_expiring"], json!([]), "{jackets}");

    // The history, filtered: the opening receipt and the adjustment of the shovels.
    let h = http
        .get("/api/v1/stock/movements?depot=FHXA-C&item=SHOVEL")
        .await?;
    let kinds: Vec<(String, i64)> = h["movements"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["kind"].as_str().unwrap_or_default().to_owned(),
                        m["quantity"].as_i64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        kinds,
        vec![("receive".to_owned(), 20), ("adjust".to_owned(), -2)],
        "{h}"
    );
    let h = http.get("/api/v1/stock/movements?kind=adjust").await?;
    assert_eq!(h["movements"].as_array().map(Vec::len), Some(2), "{h}");
    let csv = String::from_utf8(
        http.bytes("/api/v1/stock/movements?kind=adjust&format=csv")
            .await?,
    )?;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("id,depot_id,item_id"), "{csv}");
    assert!(lines[1].contains("2026-11 monthly stocktake"), "{csv}");
    assert_ledger(&server.db)?;
    Ok(())
}
