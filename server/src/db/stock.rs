//! Flood supplies: depots, items, quotas, lots and the append-only stock ledger.
//!
//! Stock is never edited directly. [`move_stock`] appends a movement to `stock_movements` and moves the
//! balance in `stock_balances` in the caller's write transaction. The balance moves with one
//! conditional `UPDATE ... WHERE on_hand + q >= 0`: on SQLite writers run one at a time; on PostgreSQL
//! (READ COMMITTED) a concurrent `UPDATE` of the same row waits for the other's commit and re-checks
//! the condition against the committed balance, so no dispatch can take stock below zero and no
//! extra lock is needed. The same `UPDATE` keeps the balance at or below [`MAX_QUANTITY`], and a movement
//! moves at most that much, so the arithmetic cannot overflow on either backend. [`ledger_check`]
//! proves balance = sum of the ledger for every depot and item, summing exactly (in `i128`).

use super::schema::{depots, items, lots, quotas, stock_balances, stock_movements};
use super::{insert_or_ignore, parse_id, Conn, QueryResult};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use riverchief_shared::id::{DepotId, ItemId, LotId, MovementId, SegmentId};
pub use riverchief_shared::stock::{MovementKind, MAX_QUANTITY};

/// A movement to append. `delta` is signed: what it adds to the balance.
#[derive(Debug, Clone)]
pub struct NewMovement<'a> {
    pub id: MovementId,
    pub depot_id: DepotId,
    pub item_id: ItemId,
    pub lot_id: Option<LotId>,
    pub kind: MovementKind,
    pub delta: i64,
    pub segment_id: Option<SegmentId>,
    /// A user's id, or `demo` for the demo's opening stock.
    pub by_user: &'a str,
    pub device_at: Option<String>,
    pub note: Option<&'a str>,
}

/// The balance of one item at one depot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Balance {
    pub on_hand: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StockError {
    #[error("only {available} available")]
    Insufficient { available: i64 },
    /// The balance would pass [`MAX_QUANTITY`] (or the movement alone moves more than that).
    #[error("{on_hand} on hand; the depot holds at most {MAX_QUANTITY}")]
    OverCapacity { on_hand: i64 },
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// Moves stock: appends `m` to the ledger and moves the balance, in the caller's write transaction.
/// A movement that would take the balance below zero writes nothing and answers how much is there.
pub fn move_stock(conn: &mut Conn, m: &NewMovement<'_>) -> Result<Balance, StockError> {
    let (depot_id, item_id) = (m.depot_id.to_string(), m.item_id.to_string());
    if m.delta.unsigned_abs() > MAX_QUANTITY.unsigned_abs() {
        let on_hand = on_hand(conn, &m.depot_id, &m.item_id)?;
        return Err(StockError::OverCapacity { on_hand });
    }
    insert_or_ignore!(
        conn,
        stock_balances::table,
        (
            stock_balances::depot_id.eq(&depot_id),
            stock_balances::item_id.eq(&item_id),
            stock_balances::on_hand.eq(0i64),
        )
    )?;
    let updated = diesel::sql_query(
        "UPDATE stock_balances SET on_hand = on_hand + $1 \
         WHERE depot_id = $2 AND item_id = $3 AND on_hand + $4 >= 0 AND on_hand + $5 <= $6",
    )
    .bind::<BigInt, _>(m.delta)
    .bind::<Text, _>(&depot_id)
    .bind::<Text, _>(&item_id)
    .bind::<BigInt, _>(m.delta)
    .bind::<BigInt, _>(m.delta)
    .bind::<BigInt, _>(MAX_QUANTITY)
    .execute(conn)?;
    if updated == 0 {
        let on_hand = on_hand(conn, &m.depot_id, &m.item_id)?;
        return Err(if m.delta < 0 {
            StockError::Insufficient { available: on_hand }
        } else {
            StockError::OverCapacity { on_hand }
        });
    }
    diesel::insert_into(stock_movements::table)
        .values((
            stock_movements::id.eq(m.id.to_string()),
            stock_movements::depot_id.eq(&depot_id),
            stock_movements::item_id.eq(&item_id),
            stock_movements::lot_id.eq(m.lot_id.map(|l| l.to_string())),
            stock_movements::kind.eq(m.kind.as_str()),
            stock_movements::quantity.eq(m.delta),
            stock_movements::segment_id.eq(m.segment_id.map(|s| s.to_string())),
            stock_movements::by_user.eq(m.by_user),
            stock_movements::device_at.eq(m.device_at.as_deref()),
            stock_movements::note.eq(m.note),
            stock_movements::recorded_at.eq(super::written_now()),
        ))
        .execute(conn)?;
    Ok(Balance {
        on_hand: on_hand(conn, &m.depot_id, &m.item_id)?,
    })
}

pub fn movement_exists(conn: &mut Conn, id: &MovementId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        stock_movements::table.filter(stock_movements::id.eq(id.to_string())),
    ))
    .get_result(conn)
}

/// The balance of an item at a depot (0 when it never moved).
pub fn on_hand(conn: &mut Conn, depot_id: &DepotId, item_id: &ItemId) -> QueryResult<i64> {
    Ok(stock_balances::table
        .filter(stock_balances::depot_id.eq(depot_id.to_string()))
        .filter(stock_balances::item_id.eq(item_id.to_string()))
        .select(stock_balances::on_hand)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

/// A depot and item whose balance is not the sum of its ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerMismatch {
    pub depot_id: DepotId,
    pub item_id: ItemId,
    pub on_hand: i64,
    /// The exact sum of the ledger (no sum of `i64` quantities overflows an `i128`).
    pub ledger: i128,
}

/// Proves balance = sum of the ledger for every (depot, item) that has either; answers the mismatches
/// (none when the books are right).
pub fn ledger_check(conn: &mut Conn) -> QueryResult<Vec<LedgerMismatch>> {
    let balances: Vec<(String, String, i64)> = stock_balances::table
        .select((
            stock_balances::depot_id,
            stock_balances::item_id,
            stock_balances::on_hand,
        ))
        .load(conn)?;
    let moves: Vec<(String, String, i64)> = stock_movements::table
        .select((
            stock_movements::depot_id,
            stock_movements::item_id,
            stock_movements::quantity,
        ))
        .load(conn)?;
    let mut sums: std::collections::BTreeMap<(String, String), (i64, i128)> = Default::default();
    for (d, i, q) in balances {
        sums.entry((d, i)).or_default().0 = q;
    }
    for (d, i, q) in moves {
        sums.entry((d, i)).or_default().1 += i128::from(q);
    }
    sums.into_iter()
        .filter(|(_, (b, l))| i128::from(*b) != *l)
        .map(|((depot_id, item_id), (on_hand, ledger))| {
            Ok(LedgerMismatch {
                depot_id: parse_id(&depot_id)?,
                item_id: parse_id(&item_id)?,
                on_hand,
                ledger,
            })
        })
        .collect()
}

/// A depot by id or code: its id.
pub fn depot_id(conn: &mut Conn, id_or_code: &str) -> QueryResult<Option<DepotId>> {
    let id: Option<String> = depots::table
        .filter(depots::id.eq(id_or_code).or(depots::code.eq(id_or_code)))
        .select(depots::id)
        .first(conn)
        .optional()?;
    id.as_deref().map(parse_id).transpose()
}

/// An item by id or code: its id.
pub fn item_id(conn: &mut Conn, id_or_code: &str) -> QueryResult<Option<ItemId>> {
    let id: Option<String> = items::table
        .filter(items::id.eq(id_or_code).or(items::code.eq(id_or_code)))
        .select(items::id)
        .first(conn)
        .optional()?;
    id.as_deref().map(parse_id).transpose()
}

/// A depot as the map shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DepotRow {
    pub id: DepotId,
    pub code: String,
    pub name: String,
    pub name_en: Option<String>,
    pub owner: String,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
}

/// Every depot, by code.
pub fn depots(conn: &mut Conn) -> QueryResult<Vec<DepotRow>> {
    let rows: Vec<StoredDepot> = depots::table
        .order(depots::code.asc())
        .select(StoredDepot::as_select())
        .load(conn)?;
    rows.into_iter()
        .map(|d| {
            Ok(DepotRow {
                id: parse_id(&d.id)?,
                code: d.code,
                name: d.name,
                name_en: d.name_en,
                owner: d.owner,
                lon: d.lon,
                lat: d.lat,
            })
        })
        .collect()
}

/// A depot as stored.
#[derive(Queryable, Selectable)]
#[diesel(table_name = depots)]
struct StoredDepot {
    id: String,
    code: String,
    name: String,
    name_en: Option<String>,
    owner: String,
    lon: Option<f64>,
    lat: Option<f64>,
}

pub struct NewDepot<'a> {
    pub id: DepotId,
    pub code: &'a str,
    pub name: &'a str,
    pub name_en: Option<&'a str>,
    pub owner: &'a str,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
}

pub fn insert_depot(conn: &mut Conn, d: &NewDepot<'_>) -> QueryResult<()> {
    diesel::insert_into(depots::table)
        .values((
            depots::id.eq(d.id.to_string()),
            depots::code.eq(d.code),
            depots::name.eq(d.name),
            depots::name_en.eq(d.name_en),
            depots::owner.eq(d.owner),
            depots::lon.eq(d.lon),
            depots::lat.eq(d.lat),
            depots::created_at.eq(super::written_now()),
        ))
        .execute(conn)
        .map(drop)
}

pub struct NewItem<'a> {
    pub id: ItemId,
    pub code: &'a str,
    pub name: &'a str,
    pub name_en: Option<&'a str>,
    pub unit: &'a str,
    pub category: &'a str,
    pub ages: bool,
}

pub fn insert_item(conn: &mut Conn, i: &NewItem<'_>) -> QueryResult<()> {
    diesel::insert_into(items::table)
        .values((
            items::id.eq(i.id.to_string()),
            items::code.eq(i.code),
            items::name.eq(i.name),
            items::name_en.eq(i.name_en),
            items::unit.eq(i.unit),
            items::category.eq(i.category),
            items::ages.eq(i.ages),
            items::created_at.eq(super::written_now()),
        ))
        .execute(conn)
        .map(drop)
}

pub fn set_quota(
    conn: &mut Conn,
    depot_id: &DepotId,
    item_id: &ItemId,
    quantity: i64,
) -> QueryResult<()> {
    let (depot_id, item_id) = (depot_id.to_string(), item_id.to_string());
    diesel::delete(
        quotas::table
            .filter(quotas::depot_id.eq(&depot_id))
            .filter(quotas::item_id.eq(&item_id)),
    )
    .execute(conn)?;
    diesel::insert_into(quotas::table)
        .values((
            quotas::depot_id.eq(&depot_id),
            quotas::item_id.eq(&item_id),
            quotas::quantity.eq(quantity),
        ))
        .execute(conn)
        .map(drop)
}

pub fn insert_lot(
    conn: &mut Conn,
    id: &LotId,
    depot_id: &DepotId,
    item_id: &ItemId,
    quantity: i64,
    received_on: &str,
    expires_on: Option<&str>,
) -> QueryResult<()> {
    diesel::insert_into(lots::table)
        .values((
            lots::id.eq(id.to_string()),
            lots::depot_id.eq(depot_id.to_string()),
            lots::item_id.eq(item_id.to_string()),
            lots::quantity.eq(quantity),
            lots::received_on.eq(received_on),
            lots::expires_on.eq(expires_on),
        ))
        .execute(conn)
        .map(drop)
}

pub use riverchief_shared::api::{LotView, StockLine};

/// Per depot and item (every pair with a quota or a balance): quota, on hand, shortfall, and the lots
/// whose expiry is on or before `expiring_by` (a `YYYY-MM-DD` date).
pub fn view(conn: &mut Conn, expiring_by: &str) -> QueryResult<Vec<StockLine>> {
    let depot_rows: Vec<(String, String)> = depots::table
        .select((depots::id, depots::code))
        .load(conn)?;
    let item_rows: Vec<(String, String, String, String)> = items::table
        .select((items::id, items::code, items::name, items::unit))
        .load(conn)?;
    let quota_rows: Vec<(String, String, i64)> = quotas::table
        .select((quotas::depot_id, quotas::item_id, quotas::quantity))
        .load(conn)?;
    let balance_rows: Vec<(String, String, i64)> = stock_balances::table
        .select((
            stock_balances::depot_id,
            stock_balances::item_id,
            stock_balances::on_hand,
        ))
        .load(conn)?;
    let lot_rows: Vec<(String, String, String, i64, String, Option<String>)> = lots::table
        .filter(lots::expires_on.le(expiring_by))
        .order((lots::expires_on, lots::id))
        .select((
            lots::id,
            lots::depot_id,
            lots::item_id,
            lots::quantity,
            lots::received_on,
            lots::expires_on,
        ))
        .load(conn)?;
    let mut pairs: std::collections::BTreeMap<(String, String), (i64, i64)> = Default::default();
    for (d, i, q) in quota_rows {
        pairs.entry((d, i)).or_default().0 = q;
    }
    for (d, i, b) in balance_rows {
        pairs.entry((d, i)).or_default().1 = b;
    }
    let depot_code = |id: &str| {
        depot_rows
            .iter()
            .find(|(d, _)| d == id)
            .map(|(_, c)| c.clone())
            .unwrap_or_default()
    };
    let mut out = Vec::with_capacity(pairs.len());
    for ((d, i), (quota, on_hand)) in pairs {
        let (code, name, unit) = item_rows
            .iter()
            .find(|(id, ..)| *id == i)
            .map(|(_, c, n, u)| (c.clone(), n.clone(), u.clone()))
            .unwrap_or_default();
        let lots_expiring = lot_rows
            .iter()
            .filter(|l| l.1 == d && l.2 == i)
            .map(|l| {
                Ok(LotView {
                    id: parse_id(&l.0)?,
                    quantity: l.3,
                    received_on: l.4.clone(),
                    expires_on: l.5.clone(),
                })
            })
            .collect::<QueryResult<_>>()?;
        out.push(StockLine {
            depot: depot_code(&d),
            depot_id: parse_id(&d)?,
            item_id: parse_id(&i)?,
            item: code,
            item_name: name,
            unit,
            quota,
            on_hand,
            shortfall: (quota - on_hand).max(0),
            lots_expiring,
        });
    }
    out.sort_by(|a, b| (&a.depot, &a.item).cmp(&(&b.depot, &b.item)));
    Ok(out)
}

/// One depot's item as [`view`] answers it, without lots: its quota and balance in one query (what
/// the stock alert judges after each movement). `None` when the pair has neither a quota nor a
/// balance, or the depot or item is unknown.
pub fn line(
    conn: &mut Conn,
    depot_id: &DepotId,
    item_id: &ItemId,
) -> QueryResult<Option<StockLine>> {
    // Depot code, item code, name and unit, quota, on hand.
    type LineRow = (String, String, String, String, Option<i64>, Option<i64>);
    let row: Option<LineRow> = depots::table
        .inner_join(items::table.on(items::id.eq(item_id.to_string())))
        .left_join(
            quotas::table.on(quotas::depot_id
                .eq(depots::id)
                .and(quotas::item_id.eq(items::id))),
        )
        .left_join(
            stock_balances::table.on(stock_balances::depot_id
                .eq(depots::id)
                .and(stock_balances::item_id.eq(items::id))),
        )
        .filter(depots::id.eq(depot_id.to_string()))
        .select((
            depots::code,
            items::code,
            items::name,
            items::unit,
            quotas::quantity.nullable(),
            stock_balances::on_hand.nullable(),
        ))
        .first(conn)
        .optional()?;
    Ok(
        row.and_then(|(depot, item, item_name, unit, quota, on_hand)| {
            if quota.is_none() && on_hand.is_none() {
                return None;
            }
            let (quota, on_hand) = (quota.unwrap_or(0), on_hand.unwrap_or(0));
            Some(StockLine {
                depot,
                depot_id: *depot_id,
                item_id: *item_id,
                item,
                item_name,
                unit,
                quota,
                on_hand,
                shortfall: (quota - on_hand).max(0),
                lots_expiring: Vec::new(),
            })
        }),
    )
}

/// A ledger row as the history shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MovementView {
    pub id: MovementId,
    pub depot_id: DepotId,
    pub item_id: ItemId,
    pub lot_id: Option<LotId>,
    pub kind: String,
    pub quantity: i64,
    pub segment_id: Option<String>,
    pub by_user: String,
    pub device_at: Option<String>,
    pub note: Option<String>,
    pub recorded_at: String,
}

/// What the history is filtered by; `from` <= recorded_at < `to` (stored timestamps compare as text).
#[derive(Debug, Clone, Default)]
pub struct MovementFilter {
    pub depot_id: Option<DepotId>,
    pub item_id: Option<ItemId>,
    pub kind: Option<MovementKind>,
    pub segment_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: i64,
}

/// The ledger, oldest first, filtered.
pub fn movements(conn: &mut Conn, f: &MovementFilter) -> QueryResult<Vec<MovementView>> {
    let mut q = stock_movements::table.into_boxed();
    if let Some(d) = &f.depot_id {
        q = q.filter(stock_movements::depot_id.eq(d.to_string()));
    }
    if let Some(i) = &f.item_id {
        q = q.filter(stock_movements::item_id.eq(i.to_string()));
    }
    if let Some(k) = f.kind {
        q = q.filter(stock_movements::kind.eq(k.as_str()));
    }
    if let Some(s) = &f.segment_id {
        q = q.filter(stock_movements::segment_id.eq(s.clone()));
    }
    if let Some(t) = &f.from {
        q = q.filter(stock_movements::recorded_at.ge(t.clone()));
    }
    if let Some(t) = &f.to {
        q = q.filter(stock_movements::recorded_at.lt(t.clone()));
    }
    let rows: Vec<MovementRow> = q
        .order((stock_movements::recorded_at, stock_movements::id))
        .limit(f.limit)
        .select(MovementRow::as_select())
        .load(conn)?;
    rows.into_iter()
        .map(|r| {
            Ok(MovementView {
                id: parse_id(&r.id)?,
                depot_id: parse_id(&r.depot_id)?,
                item_id: parse_id(&r.item_id)?,
                lot_id: r.lot_id.as_deref().map(parse_id).transpose()?,
                kind: r.kind,
                quantity: r.quantity,
                segment_id: r.segment_id,
                by_user: r.by_user,
                device_at: r.device_at,
                note: r.note,
                recorded_at: r.recorded_at,
            })
        })
        .collect()
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = stock_movements)]
struct MovementRow {
    id: String,
    depot_id: String,
    item_id: String,
    lot_id: Option<String>,
    kind: String,
    quantity: i64,
    segment_id: Option<String>,
    by_user: String,
    device_at: Option<String>,
    note: Option<String>,
    recorded_at: String,
}
