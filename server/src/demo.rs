//! The Qinhuai demo world: the embankment from Hanzhongmen Bridge past Qingliangmen Bridge to Caihong
//! Bridge and on, where the community's grid workers, social workers and volunteers patrolled all
//! day during the 2024 surge; the people who walk it; and who is assigned which stretch.
//!
//! Seeding is idempotent: once segment `QHL-01` exists, only missing demo users are created again.
//! The depots, items, quotas and opening stock are seeded once (when depot `FHXA-C` is missing), the
//! opening stock as `receive` movements through the ledger, with a lot for each item that ages. The
//! gauge stations (Dongshan, with its watch, warning and guarantee levels) are seeded when missing.
//! The 2024 Dongshan hydrograph beside the demo file (`dongshan-2024-hourly.csv`) is what drills
//! replay; it is not loaded as real readings.

use crate::db::{self, Conn};
use anyhow::{bail, Context};
use riverchief_shared::api::UserInfo;
use riverchief_shared::domain::{Bank, Role, Segment};
use riverchief_shared::geo::length_m;
use riverchief_shared::id::{DepotId, ItemId, LotId, MovementId, SegmentId, StationId, UserId};
use serde::Deserialize;

const DEMO_JSON: &str = include_str!("../demo/qinhuai-demo.json");

/// Who walks which stretch: the 8th-grid worker his grid's stretch, the volunteer the whole bank
/// between the bridges.
const ASSIGNMENTS: &[(&str, &[&str])] = &[
    ("zhangwei", &["QHL-02"]),
    ("lina", &["QHL-01", "QHL-02", "QHL-03", "QHR-02"]),
];

/// The segment whose presence means the demo was seeded.
const MARKER_SEGMENT: &str = "QHL-01";

#[derive(Deserialize)]
struct DemoFile {
    segments: Features,
    users: Vec<DemoUser>,
    patrol_intervals_minutes: riverchief_shared::coverage::Requirement,
    #[serde(default)]
    depots: Vec<DemoDepot>,
    #[serde(default)]
    items: Vec<DemoItem>,
    #[serde(default)]
    stock: Vec<DemoStock>,
    #[serde(default)]
    stations: Vec<DemoStation>,
}

#[derive(Deserialize)]
struct DemoStation {
    code: String,
    name: String,
    name_en: Option<String>,
    river: String,
    lon: Option<f64>,
    lat: Option<f64>,
    datum: Option<String>,
    watch_m: f64,
    warning_m: f64,
    guarantee_m: f64,
}

/// Seeds the gauge stations that are missing (by code), in the caller's write transaction.
fn seed_stations(conn: &mut Conn, file: &DemoFile) -> anyhow::Result<()> {
    for s in &file.stations {
        if db::flood::station(conn, &s.code)?.is_some() {
            continue;
        }
        let thresholds = riverchief_shared::flood::Thresholds {
            watch_m: s.watch_m,
            warning_m: s.warning_m,
            guarantee_m: s.guarantee_m,
        };
        thresholds
            .validate("")
            .map_err(|e| anyhow::anyhow!("demo station {}: {e}", s.code))?;
        db::flood::insert_station(
            conn,
            &db::flood::Station {
                id: StationId::new(),
                code: s.code.clone(),
                name: s.name.clone(),
                name_en: s.name_en.clone(),
                river: s.river.clone(),
                lon: s.lon,
                lat: s.lat,
                datum: s.datum.clone(),
                thresholds,
            },
        )?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct DemoDepot {
    code: String,
    name: String,
    name_en: Option<String>,
    owner: String,
    lon: Option<f64>,
    lat: Option<f64>,
}

#[derive(Deserialize)]
struct DemoItem {
    code: String,
    name: String,
    name_en: Option<String>,
    unit: String,
    category: String,
    #[serde(default)]
    ages: bool,
}

#[derive(Deserialize)]
struct DemoStock {
    depot: String,
    item: String,
    quota: i64,
    on_hand: i64,
    expires: Option<String>,
}

/// The depot whose presence means the supplies were seeded.
const MARKER_DEPOT: &str = "FHXA-C";

/// Seeds the depots, items, quotas and opening stock (as `receive` movements), in the caller's write
/// transaction. `by` is who the opening movements are recorded as; the lots arrive `today`.
fn seed_supplies(
    conn: &mut Conn,
    file: &DemoFile,
    by: &str,
    today: chrono::NaiveDate,
) -> anyhow::Result<()> {
    use db::stock;
    for d in &file.depots {
        stock::insert_depot(
            conn,
            &stock::NewDepot {
                id: DepotId::new(),
                code: &d.code,
                name: &d.name,
                name_en: d.name_en.as_deref(),
                owner: &d.owner,
                lon: d.lon,
                lat: d.lat,
            },
        )?;
    }
    for i in &file.items {
        stock::insert_item(
            conn,
            &stock::NewItem {
                id: ItemId::new(),
                code: &i.code,
                name: &i.name,
                name_en: i.name_en.as_deref(),
                unit: &i.unit,
                category: &i.category,
                ages: i.ages,
            },
        )?;
    }
    let today = today.format("%Y-%m-%d").to_string();
    for s in &file.stock {
        let depot = stock::depot_id(conn, &s.depot)?
            .with_context(|| format!("demo stock: no depot {}", s.depot))?;
        let item = stock::item_id(conn, &s.item)?
            .with_context(|| format!("demo stock: no item {}", s.item))?;
        stock::set_quota(conn, &depot, &item, s.quota)?;
        if s.on_hand <= 0 {
            continue;
        }
        let lot = match &s.expires {
            Some(expires) => {
                let id = LotId::new();
                stock::insert_lot(conn, &id, &depot, &item, s.on_hand, &today, Some(expires))?;
                Some(id)
            }
            None => None,
        };
        stock::move_stock(
            conn,
            &stock::NewMovement {
                id: MovementId::new(),
                depot_id: depot,
                item_id: item,
                lot_id: lot,
                kind: stock::MovementKind::Receive,
                delta: s.on_hand,
                segment_id: None,
                by_user: by,
                device_at: None,
                note: Some("opening stock (demo)"),
            },
        )
        .map_err(|e| anyhow::anyhow!("demo stock {}/{}: {e}", s.depot, s.item))?;
    }
    Ok(())
}

/// The patrol requirement of the demo world (`patrol_intervals_minutes`).
pub fn requirement() -> anyhow::Result<riverchief_shared::coverage::Requirement> {
    let file: DemoFile = serde_json::from_str(DEMO_JSON).context("reading the demo file")?;
    Ok(file.patrol_intervals_minutes)
}

#[derive(Deserialize)]
struct Features {
    features: Vec<Feature>,
}

#[derive(Deserialize)]
struct Feature {
    geometry: Geometry,
    properties: Properties,
}

#[derive(Deserialize)]
struct Geometry {
    coordinates: Vec<[f64; 2]>,
}

#[derive(Deserialize)]
struct Properties {
    code: String,
    name: String,
    name_en: Option<String>,
    river: String,
    bank: Bank,
    start_chainage_m: f64,
    patrol_buffer_m: f64,
    grid: Option<String>,
    gauge_station: Option<String>,
}

#[derive(Deserialize)]
struct DemoUser {
    username: String,
    display_name: String,
    role: Role,
}

fn segments(file: &DemoFile) -> anyhow::Result<Vec<Segment>> {
    file.segments
        .features
        .iter()
        .map(|f| {
            let p = &f.properties;
            let coords = &f.geometry.coordinates;
            if coords.len() < 2 || coords.iter().flatten().any(|c| !c.is_finite()) {
                bail!(
                    "demo segment {}: the line needs two or more finite points",
                    p.code
                );
            }
            let line =
                geo::LineString::from(coords.iter().map(|[x, y]| (*x, *y)).collect::<Vec<_>>());
            Ok(Segment {
                properties: db::segments::properties(
                    SegmentId::new(),
                    p.code.clone(),
                    p.name.clone(),
                    p.name_en.clone(),
                    p.river.clone(),
                    p.bank,
                    length_m(&line),
                    p.start_chainage_m,
                    p.patrol_buffer_m,
                    p.grid.clone(),
                    p.gauge_station.clone(),
                ),
                line: coords.clone(),
            })
        })
        .collect()
}

/// Seeds the demo world (at `now`). Every demo user gets `password`, or a random one. Returns the
/// users created by this call with their passwords, for the operator to read.
pub fn seed(
    conn: &mut Conn,
    password: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Vec<(String, String)>> {
    let file: DemoFile = serde_json::from_str(DEMO_JSON).context("reading the demo file")?;
    let seeded = db::segments::by_code(conn, MARKER_SEGMENT)?.is_some();
    let segments = if seeded { Vec::new() } else { segments(&file)? };

    // Hash outside the transaction: Argon2 is slow, and the write lock should not wait on it.
    let mut new_users = Vec::new();
    for u in &file.users {
        if db::users::by_username(conn, &u.username)?.is_some() {
            continue;
        }
        let plain = password.map_or_else(crate::password::generate, str::to_owned);
        let hash = crate::password::hash(&plain)?;
        new_users.push((u, plain, hash));
    }
    let supplies = db::stock::depot_id(conn, MARKER_DEPOT)?.is_none() && !file.depots.is_empty();
    let mut stations = false;
    for s in &file.stations {
        stations |= db::flood::station(conn, &s.code)?.is_none();
    }
    if segments.is_empty() && new_users.is_empty() && !supplies && !stations {
        return Ok(Vec::new());
    }

    db::write_transaction(conn, |conn| -> anyhow::Result<()> {
        for s in &segments {
            db::segments::insert(conn, s)?;
        }
        for (u, _, hash) in &new_users {
            let info = UserInfo {
                id: UserId::new(),
                username: u.username.clone(),
                display_name: u.display_name.clone(),
                role: u.role,
            };
            db::users::insert(conn, &info, hash)?;
        }
        for (username, codes) in ASSIGNMENTS {
            let Some(user) = db::users::by_username(conn, username)? else {
                continue;
            };
            let mut ids = Vec::new();
            for code in *codes {
                if let Some(s) = db::segments::by_code(conn, code)? {
                    ids.push(s.properties.id);
                }
            }
            db::users::assign_segments(conn, user.info.id, &ids)?;
        }
        if supplies {
            let admin = file.users.iter().find(|u| u.role == Role::Admin);
            let by = match admin {
                Some(a) => db::users::by_username(conn, &a.username)?
                    .map_or_else(|| "demo".to_owned(), |u| u.info.id.to_string()),
                None => "demo".to_owned(),
            };
            seed_supplies(conn, &file, &by, now.date_naive())?;
        }
        if stations {
            seed_stations(conn, &file)?;
        }
        Ok(())
    })?;
    Ok(new_users
        .into_iter()
        .map(|(u, plain, _)| (u.username.clone(), plain))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_file_reads_and_its_lengths_match_the_survey_roughly() {
        let file: DemoFile = serde_json::from_str(DEMO_JSON).unwrap();
        let segs = segments(&file).unwrap();
        assert_eq!(segs.len(), 4);
        let raw: serde_json::Value = serde_json::from_str(DEMO_JSON).unwrap();
        for (s, f) in segs
            .iter()
            .zip(raw["segments"]["features"].as_array().unwrap())
        {
            let approx = f["properties"]["approx_length_m"].as_f64().unwrap();
            let ratio = s.properties.length_m / approx;
            assert!(
                (0.8..1.25).contains(&ratio),
                "{}: {} vs {approx}",
                s.properties.code,
                s.properties.length_m
            );
        }
        assert_eq!(segs[1].properties.start_chainage, "K0+847");
        for (user, codes) in ASSIGNMENTS {
            assert!(file.users.iter().any(|u| u.username == *user));
            for c in *codes {
                assert!(segs.iter().any(|s| s.properties.code == *c));
            }
        }
    }
}
