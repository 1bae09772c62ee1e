//! One stock movement, judged and written the same way whether a device pushed it (`stock.move`,
//! `sync`) or a duty lead posted it (`POST /stock/movements`, `routes::stock`).
//!
//! [`record`] judges who may move what (a patroller only dispatches, and only to a segment), resolves
//! the depot, the item and the segment (each by id or code), refuses a movement id already used, moves
//! the stock through the ledger (`db::stock::move_stock`), applies the quota rule
//! (`alerting::stock_moved`) and writes the audit row, all in the caller's write transaction. A
//! refusal is a [`Refusal`] naming its field; each caller says it in its own envelope (a rejected
//! push result, or an HTTP error).

use crate::auth::AuthUser;
use crate::db::{self, stock, Conn, QueryError};
use chrono::{DateTime, Utc};
use riverchief_shared::id::MovementId;
use riverchief_shared::stock::MovementKind;
use riverchief_shared::FieldError;

/// A movement as asked for. `depot`, `item` and `segment` are ids or codes.
#[derive(Debug, Clone)]
pub struct Movement<'a> {
    pub id: MovementId,
    pub depot: &'a str,
    pub item: &'a str,
    pub kind: MovementKind,
    /// 1 or more; the kind gives the sign.
    pub quantity: i64,
    pub segment: Option<&'a str>,
    pub note: Option<&'a str>,
    /// When the device recorded it (`None` from the API).
    pub device_at: Option<DateTime<Utc>>,
}

/// What a recorded movement left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    pub on_hand: i64,
}

/// Why a movement was not recorded. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The caller may not make this movement (field `kind`).
    Forbidden(FieldError),
    /// No such depot, item or segment.
    UnknownReference(FieldError),
    /// The movement id was used before (field `movement_id`).
    Taken(FieldError),
    /// Less on the shelf than the movement takes (field `quantity`).
    Insufficient(FieldError),
    /// More than a depot holds of an item ([`stock::MAX_QUANTITY`]; field `quantity`).
    OverCapacity(FieldError),
}

impl Refusal {
    /// The refusal as a field error (fields as the API names them; a device's are `within("data")`).
    pub fn into_field_error(self) -> FieldError {
        match self {
            Refusal::Forbidden(e)
            | Refusal::UnknownReference(e)
            | Refusal::Taken(e)
            | Refusal::Insufficient(e)
            | Refusal::OverCapacity(e) => e,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("{0:?}")]
    Refused(Refusal),
    #[error(transparent)]
    Db(#[from] QueryError),
}

fn unknown(field: &str, what: &str, key: &str) -> MoveError {
    MoveError::Refused(Refusal::UnknownReference(FieldError::new(
        "unknown_reference",
        field,
        format!("no {what} {key}"),
    )))
}

/// Judges and records the movement `m` by `by`, at `now`, in the caller's write transaction.
pub fn record(
    conn: &mut Conn,
    by: &AuthUser,
    m: &Movement<'_>,
    now: DateTime<Utc>,
) -> Result<Moved, MoveError> {
    if !by.role.sees_everything() && (m.kind != MovementKind::Dispatch || m.segment.is_none()) {
        return Err(MoveError::Refused(Refusal::Forbidden(FieldError::new(
            "forbidden",
            "kind",
            "a patroller may only dispatch supplies to a segment",
        ))));
    }
    let depot_id =
        stock::depot_id(conn, m.depot)?.ok_or_else(|| unknown("depot", "depot", m.depot))?;
    let item_id = stock::item_id(conn, m.item)?.ok_or_else(|| unknown("item", "item", m.item))?;
    let segment_id = match m.segment {
        None => None,
        Some(s) => Some(
            db::segments::by_id_or_code(conn, s)?
                .map(|seg| seg.properties.id)
                .ok_or_else(|| unknown("segment", "segment", s))?,
        ),
    };
    if stock::movement_exists(conn, &m.id)? {
        return Err(MoveError::Refused(Refusal::Taken(FieldError::new(
            "conflict",
            "movement_id",
            format!("movement {} already exists", m.id),
        ))));
    }
    let user = by.id.to_string();
    let delta = m.kind.signed(m.quantity);
    let moved = stock::move_stock(
        conn,
        &stock::NewMovement {
            id: m.id,
            depot_id,
            item_id,
            lot_id: None,
            kind: m.kind,
            delta,
            segment_id,
            by_user: &user,
            device_at: m.device_at.map(db::ts),
            note: m.note,
        },
    );
    let balance = match moved {
        Ok(b) => b,
        Err(stock::StockError::Insufficient { available }) => {
            return Err(MoveError::Refused(Refusal::Insufficient(FieldError::new(
                "insufficient_stock",
                "quantity",
                format!("only {available} available; {} asked", m.quantity),
            ))))
        }
        Err(stock::StockError::OverCapacity { on_hand }) => {
            return Err(MoveError::Refused(Refusal::OverCapacity(FieldError::new(
                "over_capacity",
                "quantity",
                format!(
                    "{on_hand} on hand; {} more would pass the most a depot holds ({})",
                    m.quantity,
                    stock::MAX_QUANTITY
                ),
            ))))
        }
        Err(stock::StockError::Db(e)) => return Err(MoveError::Db(e)),
    };
    crate::alerting::stock_moved(conn, &depot_id, &item_id, now)?;
    db::audit::record(
        conn,
        &by.who(),
        "stock.move",
        Some(&m.id.to_string()),
        &serde_json::json!({"depot_id": depot_id, "item_id": item_id, "kind": m.kind,
            "quantity": delta, "segment_id": segment_id, "on_hand": balance.on_hand}),
    )?;
    Ok(Moved {
        on_hand: balance.on_hand,
    })
}
