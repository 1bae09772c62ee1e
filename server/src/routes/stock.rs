//! Flood supplies:
//!
//! - `POST /stock/movements` (duty lead or admin): one movement through the ledger
//!   (`db::stock::move_stock`). Body `{"depot", "item" (id or code), "kind", "quantity", "segment"?,
//!   "note"?}`; `quantity` is a whole number, 1 or more. A movement that would take stock below zero
//!   is 409 `insufficient_stock`, its message naming the quantity available.
//! - `POST /stock/stocktakes` (duty lead or admin): `{"depot", "reason", "counts": [{"item", "counted"}]}`.
//!   Each difference between the count and the balance becomes an `adjust` movement with the reason, in
//!   one transaction; afterwards each balance equals its count. Should stock move while the stocktake
//!   is written (another instance, PostgreSQL), the balance would not equal the count: it is refused
//!   with 409 and nothing is written; count again.
//! - `GET /stock/movements?depot=&item=&kind=&segment=&from=&to=&limit=&format=csv`: the ledger, oldest
//!   first, filtered; JSON, or CSV with `format=csv`.
//! - `GET /depots`: the depots as a GeoJSON FeatureCollection of points (for the dashboard's map).
//! - `GET /stock`: per depot and item, quota, on hand, shortfall and the lots expiring within the
//!   scheduled check's window (`checks::Settings::expiring_within_days`, 60 days by default).

use super::body::json_body;
use super::endpoint::Endpoint;
use super::geojson;
use crate::auth::AuthUser;
use crate::db::{self, stock};
use crate::error::AppError;
use crate::state::AppState;
use crate::supplies;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, Utc};
use riverchief_shared::id::MovementId;
use riverchief_shared::stock::{MovementKind, MAX_QUANTITY};
use riverchief_shared::{validate, FieldError};
use serde_json::{json, Value};

const MAX_BODY_BYTES: usize = 8192;
const MAX_NOTE_CHARS: usize = 2000;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/depots").get(depots).done())
        .service(Endpoint::new("/stock").get(view).done())
        .service(
            Endpoint::new("/stock/movements")
                .post(record)
                .get(history)
                .done(),
        )
        .service(Endpoint::new("/stock/stocktakes").post(stocktake).done());
}

/// The depots, as GeoJSON points.
#[utoipa::path(
    get,
    path = "/api/v1/depots",
    tag = "supplies",
    description = "Roles: any signed-in user. One Point Feature per depot.",
    responses((status = 200, description = "The depots", body = super::openapi::FeatureCollection)),
)]
async fn depots(state: web::Data<AppState>, _user: AuthUser) -> Result<HttpResponse, AppError> {
    let rows = state
        .db
        .run(|conn| -> Result<_, AppError> { Ok(stock::depots(conn)?) })
        .await?;
    let features: Vec<Value> = rows
        .into_iter()
        .map(|d| {
            let geometry = match (d.lon, d.lat) {
                (Some(lon), Some(lat)) => geojson::geometry("Point", [lon, lat]),
                _ => Value::Null,
            };
            let properties = json!({
                "id": d.id, "code": d.code, "name": d.name, "name_en": d.name_en, "owner": d.owner,
            });
            geojson::feature(d.id, geometry, properties)
        })
        .collect();
    Ok(HttpResponse::Ok().json(geojson::collection(features)))
}

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::Invalid(FieldError::new("invalid", field, message))
}

fn text_field(body: &Value, field: &str, required: bool) -> Result<Option<String>, AppError> {
    match body.get(field) {
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(AppError::Invalid(FieldError::new(
            "required",
            field,
            format!("`{field}` is required"),
        ))),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(invalid(
            field,
            format!("`{field}` must be a non-empty string"),
        )),
    }
}

/// A movement's refusal as the API answers it.
fn refused(e: supplies::MoveError) -> AppError {
    use supplies::{MoveError, Refusal};
    match e {
        MoveError::Refused(Refusal::Forbidden(e)) => AppError::Forbidden(e.message),
        MoveError::Refused(Refusal::UnknownReference(e)) => AppError::UnknownReference(e),
        MoveError::Refused(Refusal::Taken(e)) => AppError::Conflict(e.message),
        MoveError::Refused(Refusal::Insufficient(e)) => AppError::InsufficientStock(e.message),
        MoveError::Refused(Refusal::OverCapacity(e)) => AppError::FieldConflict(e),
        MoveError::Db(e) => e.into(),
    }
}

/// One stock movement through the ledger.
#[utoipa::path(
    post,
    path = "/api/v1/stock/movements",
    tag = "supplies",
    description = "Roles: duty_lead, admin. A movement that would take stock below zero is 409 \
        `insufficient_stock` (the message says how much is available); past what a depot holds, 409 \
        `over_capacity`.",
    request_body = MovementRequest,
    responses(
        (status = 201, description = "Recorded", body = MovementRecorded),
        (status = 403, description = "A patroller, or a movement the role may not make"),
        (status = 409, description = "Not enough stock, over capacity, or a lot already taken"),
        (status = 422, description = "No such depot, item or segment"),
    ),
)]
async fn record(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    user.require_lead()?;
    let body: Value = json_body(&req, payload, MAX_BODY_BYTES).await?;
    let Some(obj) = body.as_object() else {
        return Err(AppError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    };
    const KNOWN: [&str; 6] = ["depot", "item", "kind", "quantity", "segment", "note"];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(AppError::Invalid(FieldError::new(
            "unknown_field",
            k.as_str(),
            format!("unknown field `{k}`"),
        )));
    }
    let quantity = match body.get("quantity") {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(q) if (1..=MAX_QUANTITY).contains(&q) => q,
            _ => {
                return Err(AppError::Invalid(FieldError::new(
                    "out_of_range",
                    "quantity",
                    format!(
                        "a quantity is a whole number in the item's unit, from 1 to {MAX_QUANTITY}"
                    ),
                )))
            }
        },
        None | Some(Value::Null) => {
            return Err(AppError::Invalid(FieldError::new(
                "required",
                "quantity",
                "`quantity` is required",
            )))
        }
        Some(_) => return Err(invalid("quantity", "`quantity` must be a whole number")),
    };
    let depot = text_field(&body, "depot", true)?.unwrap_or_default();
    let item = text_field(&body, "item", true)?.unwrap_or_default();
    let kind_text = text_field(&body, "kind", true)?.unwrap_or_default();
    let kind = MovementKind::parse_field(&kind_text, "kind")?;
    let segment = text_field(&body, "segment", false)?;
    let note = text_field(&body, "note", false)?;
    if let Some(n) = &note {
        validate::text(n, MAX_NOTE_CHARS, "note")?;
    }
    let movement_id = MovementId::new();
    let id = movement_id;
    let moved = state
        .db
        .run(move |conn| {
            db::write_transaction(conn, |conn| -> Result<_, AppError> {
                let movement = supplies::Movement {
                    id,
                    depot: &depot,
                    item: &item,
                    kind,
                    quantity,
                    segment: segment.as_deref(),
                    note: note.as_deref(),
                    device_at: None,
                };
                supplies::record(conn, &user, &movement, Utc::now()).map_err(refused)
            })
        })
        .await?;
    let on_hand = moved.on_hand;
    Ok(HttpResponse::Created().json(json!({
        "movement_id": movement_id,
        "kind": kind.as_str(),
        "quantity": kind.signed(quantity),
        "on_hand": on_hand,
    })))
}

/// Stock per depot and item.
#[utoipa::path(
    get,
    path = "/api/v1/stock",
    tag = "supplies",
    description = "Roles: any signed-in user. Quota, on hand, shortfall and the lots expiring soon.",
    responses((status = 200, description = "The stock", body = riverchief_shared::api::StockView)),
)]
async fn view(state: web::Data<AppState>, _user: AuthUser) -> Result<HttpResponse, AppError> {
    // The lot-expiry window of the scheduled check, so the view and the alerts agree.
    let within = state.checks.expiring_within_days;
    let by = (Utc::now() + Duration::days(within))
        .format("%Y-%m-%d")
        .to_string();
    let lines = state
        .db
        .run(move |conn| -> Result<_, AppError> { Ok(stock::view(conn, &by)?) })
        .await?;
    Ok(HttpResponse::Ok().json(riverchief_shared::api::StockView {
        expiring_within_days: within,
        stock: lines,
    }))
}

/// A count: a whole number from 0 to [`MAX_QUANTITY`], or a 400 naming `field`.
fn count(v: Option<&Value>, field: &str) -> Result<i64, AppError> {
    match v {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(q) if (0..=MAX_QUANTITY).contains(&q) => Ok(q),
            _ => Err(AppError::Invalid(FieldError::new(
                "out_of_range",
                field,
                format!("a whole number in the item's unit, from 0 to {MAX_QUANTITY}"),
            ))),
        },
        None | Some(Value::Null) => Err(AppError::Invalid(FieldError::new(
            "required",
            field,
            format!("`{field}` is required"),
        ))),
        Some(_) => Err(invalid(field, format!("`{field}` must be a whole number"))),
    }
}

/// A stocktake: each difference between a count and the balance becomes an `adjust` movement.
#[utoipa::path(
    post,
    path = "/api/v1/stock/stocktakes",
    tag = "supplies",
    description = "Roles: duty_lead, admin. All or nothing: stock that moved while it was written is \
        409, nothing written.",
    request_body = StocktakeRequest,
    responses(
        (status = 201, description = "The adjustments made (none where a count equals its balance)", body = StocktakeRecorded),
        (status = 403, description = "A patroller"),
        (status = 409, description = "The stock moved while the stocktake was written"),
        (status = 422, description = "No such depot or item"),
    ),
)]
async fn stocktake(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    user.require_lead()?;
    let body: Value = json_body(&req, payload, 64 * 1024).await?;
    if !body.is_object() {
        return Err(AppError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    let depot = text_field(&body, "depot", true)?.unwrap_or_default();
    let reason = text_field(&body, "reason", true)?.unwrap_or_default();
    validate::text(&reason, MAX_NOTE_CHARS, "reason")?;
    let Some(list) = body.get("counts").and_then(Value::as_array) else {
        return Err(invalid(
            "counts",
            "`counts` must be a list of {item, counted}",
        ));
    };
    if list.is_empty() || list.len() > 1000 {
        return Err(invalid("counts", "between 1 and 1000 counts"));
    }
    let mut counts = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let item = match c.get("item") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => return Err(invalid(&format!("counts[{i}].item"), "an item id or code")),
        };
        let counted = count(c.get("counted"), &format!("counts[{i}].counted"))?;
        counts.push((item, counted));
    }
    let adjustments = state
        .db
        .run(move |conn| {
            db::write_transaction(conn, |conn| -> Result<Vec<Value>, AppError> {
                let depot_id = stock::depot_id(conn, &depot)?.ok_or_else(|| {
                    AppError::UnknownReference(FieldError::new(
                        "unknown_reference",
                        "depot",
                        format!("no depot {depot}"),
                    ))
                })?;
                let by = user.id.to_string();
                let mut out = Vec::new();
                for (i, (item, counted)) in counts.iter().enumerate() {
                    let item_id = stock::item_id(conn, item)?.ok_or_else(|| {
                        AppError::UnknownReference(FieldError::new(
                            "unknown_reference",
                            format!("counts[{i}].item"),
                            format!("no item {item}"),
                        ))
                    })?;
                    let before = stock::on_hand(conn, &depot_id, &item_id)?;
                    let delta = counted - before;
                    if delta == 0 {
                        continue;
                    }
                    let id = MovementId::new();
                    let moved = stock::move_stock(
                        conn,
                        &stock::NewMovement {
                            id,
                            depot_id,
                            item_id,
                            lot_id: None,
                            kind: stock::MovementKind::Adjust,
                            delta,
                            segment_id: None,
                            by_user: &by,
                            device_at: None,
                            note: Some(&reason),
                        },
                    );
                    let stale = || {
                        AppError::Conflict(format!(
                            "the stock of {item} moved while the stocktake was recorded; count again"
                        ))
                    };
                    match moved {
                        Ok(b) if b.on_hand == *counted => {
                            crate::alerting::stock_moved(conn, &depot_id, &item_id, Utc::now())?;
                        }
                        Ok(_)
                        | Err(stock::StockError::Insufficient { .. })
                        | Err(stock::StockError::OverCapacity { .. }) => return Err(stale()),
                        Err(stock::StockError::Db(e)) => return Err(e.into()),
                    }
                    out.push(json!({
                        "movement_id": id,
                        "item": item,
                        "before": before,
                        "counted": counted,
                        "adjustment": delta,
                    }));
                }
                db::audit::record(
                    conn,
                    &user.who(),
                    "stock.stocktake",
                    Some(&depot_id.to_string()),
                    &json!({"reason": reason, "adjustments": out}),
                )?;
                Ok(out)
            })
        })
        .await?;
    Ok(HttpResponse::Created().json(json!({ "adjustments": adjustments })))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryQuery {
    /// A depot's id or code.
    depot: Option<String>,
    /// An item's id or code.
    item: Option<String>,
    #[param(value_type = Option<MovementKind>, inline)]
    kind: Option<String>,
    /// A segment's id or code.
    segment: Option<String>,
    /// Recorded at or after (RFC 3339).
    #[param(value_type = Option<chrono::DateTime<Utc>>)]
    from: Option<String>,
    /// Recorded before (RFC 3339).
    #[param(value_type = Option<chrono::DateTime<Utc>>)]
    to: Option<String>,
    /// At most this many (1 to 100000, default 10000).
    #[param(minimum = 1, maximum = 100000)]
    limit: Option<i64>,
    /// `json` (the default) or `csv`.
    #[param(value_type = Option<HistoryFormat>, inline)]
    format: Option<String>,
}

/// How the ledger is sent.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum HistoryFormat {
    Json,
    Csv,
}

/// The body of `POST /stock/movements` (read field by field by [`record`], so that each refusal
/// names its field; this is its shape for the OpenAPI document).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct MovementRequest {
    /// The depot's id or code.
    depot: String,
    /// The item's id or code.
    item: String,
    kind: MovementKind,
    /// A whole number in the item's unit; an `adjust` carries its sign.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    quantity: i64,
    /// The segment the stock goes to or comes from (id or code).
    segment: Option<String>,
    /// At most 2000 characters.
    note: Option<String>,
}

/// The answer to a recorded movement.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct MovementRecorded {
    movement_id: MovementId,
    kind: MovementKind,
    /// The signed change.
    quantity: i64,
    /// The balance after it.
    on_hand: i64,
}

/// The body of `POST /stock/stocktakes` (read field by field by [`stocktake`]).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct StocktakeRequest {
    /// The depot's id or code.
    depot: String,
    /// Why (at most 2000 characters); the note of every adjustment.
    reason: String,
    /// 1 to 1000 counts.
    #[schema(min_items = 1, max_items = 1000)]
    counts: Vec<StockCount>,
}

/// One item counted.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)]
struct StockCount {
    /// The item's id or code.
    item: String,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    counted: i64,
}

/// The answer to a stocktake.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct StocktakeRecorded {
    adjustments: Vec<Adjustment>,
}

/// One difference between a count and the balance, and the movement that made it good.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct Adjustment {
    movement_id: MovementId,
    /// The item as the count named it.
    item: String,
    before: i64,
    counted: i64,
    adjustment: i64,
}

/// The ledger as JSON.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct MovementHistory {
    movements: Vec<db::stock::MovementView>,
}

/// The ledger, oldest first, filtered.
#[utoipa::path(
    get,
    path = "/api/v1/stock/movements",
    tag = "supplies",
    description = "Roles: any signed-in user. JSON, or CSV with `format=csv` (cells that would start \
        a formula are neutralised).",
    params(HistoryQuery),
    responses(
        (status = 200, description = "The movements", content(
            (MovementHistory = "application/json"),
            ("text/csv"),
        )),
        (status = 422, description = "No such depot, item or segment"),
    ),
)]
async fn history(
    state: web::Data<AppState>,
    _user: AuthUser,
    q: web::Query<HistoryQuery>,
) -> Result<HttpResponse, AppError> {
    let q = q.into_inner();
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(invalid("format", "`format` is json or csv")),
    };
    let kind = match q.kind.as_deref() {
        None => None,
        Some(k) => Some(stock::MovementKind::parse_field(k, "kind")?),
    };
    let from = super::issues::parse_time(q.from.as_deref(), "from")?.map(db::ts);
    let to = super::issues::parse_time(q.to.as_deref(), "to")?.map(db::ts);
    let limit = match q.limit {
        None => 10_000,
        Some(n) if (1..=100_000).contains(&n) => n,
        Some(_) => return Err(invalid("limit", "`limit` is 1..=100000")),
    };
    let rows = state
        .db
        .run(move |conn| -> Result<_, AppError> {
            let unknown = |field: &str, v: &str| {
                AppError::UnknownReference(FieldError::new(
                    "unknown_reference",
                    field,
                    format!("no {field} {v}"),
                ))
            };
            let depot_id = match &q.depot {
                None => None,
                Some(d) => Some(stock::depot_id(conn, d)?.ok_or_else(|| unknown("depot", d))?),
            };
            let item_id = match &q.item {
                None => None,
                Some(i) => Some(stock::item_id(conn, i)?.ok_or_else(|| unknown("item", i))?),
            };
            let segment_id = match &q.segment {
                None => None,
                Some(s) => Some(
                    db::segments::by_id_or_code(conn, s)?
                        .map(|seg| seg.properties.id.to_string())
                        .ok_or_else(|| unknown("segment", s))?,
                ),
            };
            Ok(stock::movements(
                conn,
                &stock::MovementFilter {
                    depot_id,
                    item_id,
                    kind,
                    segment_id,
                    from,
                    to,
                    limit,
                },
            )?)
        })
        .await?;
    if !csv {
        return Ok(HttpResponse::Ok().json(json!({ "movements": rows })));
    }
    let mut out = String::from(
        "id,depot_id,item_id,lot_id,kind,quantity,segment_id,by_user,device_at,note,recorded_at\r\n",
    );
    for r in &rows {
        let fields = [
            r.id.to_string(),
            r.depot_id.to_string(),
            r.item_id.to_string(),
            r.lot_id.map(|l| l.to_string()).unwrap_or_default(),
            r.kind.clone(),
            r.quantity.to_string(),
            r.segment_id.clone().unwrap_or_default(),
            r.by_user.clone(),
            r.device_at.clone().unwrap_or_default(),
            r.note.clone().unwrap_or_default(),
            r.recorded_at.clone(),
        ];
        out.push_str(&riverchief_shared::csv::record(&fields));
    }
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            "Content-Disposition",
            "attachment; filename=\"stock-movements.csv\"",
        ))
        .body(out))
}
