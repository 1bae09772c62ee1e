//! The sync protocol's wire types and their validation.
//!
//! A device records everything as mutations in its outbox and pushes them in batches. Each mutation
//! carries its own UUIDv7 id (the idempotency key), the device's sequence number, the device time and a
//! typed payload. The server applies each mutation atomically and answers per mutation: `applied`,
//! `duplicate` (already applied: the original result, nothing changed) or `rejected` (with an error
//! naming the field; nothing changed). Pull pages through the server's change log by an opaque cursor.
//!
//! Mutations are parsed in two steps, envelope then payload, so that an error in a payload names its
//! path from the mutation (`data.points[17].lat`).

use crate::domain::{IssueCategory, IssueEventKind, Outflow, Severity, TrackPoint};
use crate::geo::Position;
use crate::id::{DeviceId, IssueEventId, IssueId, MutationId, PatrolId, SegmentId, UserId};
use crate::photo::Sha256;
use crate::validate::{self, FieldError, Limits};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /api/v1/sync/push`. Mutations stay raw JSON here so that one bad mutation is rejected alone
/// instead of failing the whole batch.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushRequest {
    pub device_id: DeviceId,
    /// Each is parsed alone (as a `Mutation`), so one bad mutation is rejected alone.
    #[schema(value_type = Vec<Mutation>)]
    pub mutations: Vec<Value>,
}

/// A queued offline action.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Mutation {
    pub id: MutationId,
    /// The device's own sequence number: the order the actions happened on the device.
    pub device_seq: u64,
    /// Device time when the action was taken.
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub body: MutationBody,
}

/// The typed payload of a mutation, tagged by its `type`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", content = "data")]
pub enum MutationBody {
    #[serde(rename = "patrol.start")]
    PatrolStart(PatrolStart),
    #[serde(rename = "patrol.points")]
    PatrolPoints(PatrolPoints),
    #[serde(rename = "patrol.finish")]
    PatrolFinish(PatrolFinish),
    #[serde(rename = "issue.report")]
    IssueReport(IssueReport),
    #[serde(rename = "issue.event")]
    IssueEvent(IssueEventData),
    #[serde(rename = "stock.move")]
    StockMove(StockMove),
}

impl MutationBody {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::PatrolStart(_) => "patrol.start",
            Self::PatrolPoints(_) => "patrol.points",
            Self::PatrolFinish(_) => "patrol.finish",
            Self::IssueReport(_) => "issue.report",
            Self::IssueEvent(_) => "issue.event",
            Self::StockMove(_) => "stock.move",
        }
    }

    /// Whether this mutation must travel ahead of everything else (a critical hazard report).
    pub fn is_urgent(&self) -> bool {
        matches!(self, Self::IssueReport(r) if crate::domain::is_critical(r.category, r.severity, r.outflow))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatrolStart {
    pub patrol_id: PatrolId,
    pub segment_ids: Vec<SegmentId>,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub weather: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatrolPoints {
    pub patrol_id: PatrolId,
    pub points: Vec<TrackPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatrolFinish {
    pub patrol_id: PatrolId,
    pub ended_at: DateTime<Utc>,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueReport {
    pub issue_id: IssueId,
    pub segment_id: SegmentId,
    #[serde(default)]
    pub patrol_id: Option<PatrolId>,
    pub location: Position,
    pub category: IssueCategory,
    pub severity: Severity,
    /// Required for piping, refused for anything else.
    #[serde(default)]
    pub outflow: Option<Outflow>,
    pub description: String,
    pub reported_at: DateTime<Utc>,
    /// The photos this report expects; their bytes travel separately (tus uploads).
    #[serde(default)]
    pub photos: Vec<Sha256>,
}

/// A stock movement recorded on a device: a patroller dispatches to a segment, a duty lead anything.
/// `depot` and `item` are ids or codes; `quantity` is a positive whole number in the item's unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockMove {
    pub movement_id: crate::id::MovementId,
    pub depot: String,
    pub item: String,
    pub kind: crate::stock::MovementKind,
    pub quantity: i64,
    #[serde(default)]
    pub segment: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// The result of an applied `stock.move`: the balance after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StockMoveResult {
    pub movement_id: crate::id::MovementId,
    pub on_hand: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueEventData {
    pub event_id: IssueEventId,
    pub issue_id: IssueId,
    pub kind: IssueEventKind,
    #[serde(default)]
    pub note: Option<String>,
    /// For `dispatched`: the person sent.
    #[serde(default)]
    pub assignee: Option<UserId>,
    /// For `duplicate`: the issue this one repeats.
    #[serde(default)]
    pub duplicate_of: Option<IssueId>,
    #[serde(default)]
    pub photos: Vec<Sha256>,
    /// For `dispatched`: when the work is due (optional; a dispatch past it is overdue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    /// The newest event of the issue its author had seen when they took this step (the client
    /// fills it from its mirror). Two dispatches by different people based on the same history are
    /// concurrent: the server lets the same one win whatever order they arrive in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub based_on: Option<IssueEventId>,
}

impl IssueEventData {
    /// The rules an event obeys whatever the issue's state: a dispatch names its person, a
    /// duplicate its original, a rejection or a reopening its reason. `field_prefix` is `data.`
    /// inside a mutation and empty for the API's body.
    pub fn check(&self, limits: &Limits, prefix: &str) -> Result<(), FieldError> {
        let field = |name: &str| format!("{prefix}{name}");
        optional_text(&self.note, limits, &field("note"))?;
        photos(&self.photos, limits, &field("photos"))?;
        let needs_reason = matches!(
            self.kind,
            IssueEventKind::Rejected | IssueEventKind::Reopened
        );
        if needs_reason && self.note.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(FieldError::new(
                "required",
                field("note"),
                format!(
                    "a `{}` event gives its reason in `note`",
                    self.kind.as_str()
                ),
            ));
        }
        match self.kind {
            IssueEventKind::Dispatched if self.assignee.is_none() => {
                return Err(FieldError::new(
                    "required",
                    field("assignee"),
                    "dispatch names the person sent",
                ))
            }
            IssueEventKind::Duplicate if self.duplicate_of.is_none() => {
                return Err(FieldError::new(
                    "required",
                    field("duplicate_of"),
                    "a duplicate names the issue it repeats",
                ))
            }
            IssueEventKind::Duplicate if self.duplicate_of == Some(self.issue_id) => {
                return Err(FieldError::new(
                    "invalid",
                    field("duplicate_of"),
                    "an issue cannot duplicate itself",
                ))
            }
            IssueEventKind::Reported => {
                return Err(FieldError::new(
                    "invalid",
                    field("kind"),
                    "an issue is reported by issue.report",
                ))
            }
            _ => {}
        }
        if self.assignee.is_some() && self.kind != IssueEventKind::Dispatched {
            return Err(FieldError::new(
                "invalid",
                field("assignee"),
                "only a dispatch names an assignee",
            ));
        }
        if self.due_at.is_some() && self.kind != IssueEventKind::Dispatched {
            return Err(FieldError::new(
                "invalid",
                field("due_at"),
                "only a dispatch has a due time",
            ));
        }
        if self.duplicate_of.is_some() && self.kind != IssueEventKind::Duplicate {
            return Err(FieldError::new(
                "invalid",
                field("duplicate_of"),
                "only a duplicate names the issue it repeats",
            ));
        }
        Ok(())
    }
}

/// The envelope, parsed before the payload.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Envelope {
    id: MutationId,
    device_seq: u64,
    #[serde(rename = "type")]
    kind: String,
    at: DateTime<Utc>,
    data: Value,
}

fn parse_at<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, FieldError> {
    validate::parse_value(value, prefix)
}

/// The earliest device time we accept: nothing in this system happened before 2000.
fn earliest() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Refuses a due time before 2000 or more than ten years ahead.
pub fn sane_due(t: DateTime<Utc>, field: &str) -> Result<(), FieldError> {
    if t < earliest() || t > Utc::now() + Duration::days(3650) {
        return Err(FieldError::new(
            "out_of_range",
            field,
            "a due time between 2000 and ten years from now",
        ));
    }
    Ok(())
}

/// Refuses a device time before 2000 or more than a day ahead of `now` (a phone's clock may be off,
/// but not by that much).
pub fn sane_time(t: DateTime<Utc>, now: DateTime<Utc>, field: &str) -> Result<(), FieldError> {
    if t < earliest() || t > now + Duration::days(1) {
        return Err(FieldError::new(
            "bad_time",
            field,
            format!(
                "{} is not a plausible time (before 2000 or more than a day ahead of the server)",
                t.to_rfc3339()
            ),
        ));
    }
    Ok(())
}

fn optional_text(v: &Option<String>, limits: &Limits, field: &str) -> Result<(), FieldError> {
    match v {
        Some(s) => validate::text(s, limits.max_text_chars, field),
        None => Ok(()),
    }
}

fn photos(list: &[Sha256], limits: &Limits, field: &str) -> Result<(), FieldError> {
    if list.len() > limits.max_photos_per_record {
        return Err(FieldError::new(
            "too_many",
            field,
            format!(
                "{} photos; at most {} are allowed",
                list.len(),
                limits.max_photos_per_record
            ),
        ));
    }
    for (i, p) in list.iter().enumerate() {
        if list[..i].contains(p) {
            return Err(FieldError::new(
                "duplicate",
                format!("{field}[{i}]"),
                "the same photo is listed twice",
            ));
        }
    }
    Ok(())
}

impl Mutation {
    /// Parses and validates one raw mutation. `now` is the server's (or device's) clock, used to
    /// refuse implausible device times.
    pub fn parse(raw: Value, now: DateTime<Utc>, limits: &Limits) -> Result<Mutation, FieldError> {
        let env: Envelope = parse_at(raw, "")?;
        sane_time(env.at, now, "at")?;
        let body = match env.kind.as_str() {
            "patrol.start" => MutationBody::PatrolStart(parse_at(env.data, "data")?),
            "patrol.points" => MutationBody::PatrolPoints(parse_at(env.data, "data")?),
            "patrol.finish" => MutationBody::PatrolFinish(parse_at(env.data, "data")?),
            "issue.report" => MutationBody::IssueReport(parse_at(env.data, "data")?),
            "issue.event" => MutationBody::IssueEvent(parse_at(env.data, "data")?),
            "stock.move" => MutationBody::StockMove(parse_at(env.data, "data")?),
            other => {
                return Err(FieldError::new(
                    "unknown_type",
                    "type",
                    format!("unknown mutation type {other:?}"),
                ))
            }
        };
        let m = Mutation {
            id: env.id,
            device_seq: env.device_seq,
            at: env.at,
            body,
        };
        m.validate(now, limits)?;
        Ok(m)
    }

    /// The rules beyond the types: counts, lengths, times, and what goes with what.
    pub fn validate(&self, now: DateTime<Utc>, limits: &Limits) -> Result<(), FieldError> {
        match &self.body {
            MutationBody::PatrolStart(d) => {
                if d.segment_ids.is_empty() {
                    return Err(FieldError::new(
                        "required",
                        "data.segment_ids",
                        "a patrol covers at least one segment",
                    ));
                }
                if d.segment_ids.len() > 50 {
                    return Err(FieldError::new(
                        "too_many",
                        "data.segment_ids",
                        "at most 50 segments per patrol",
                    ));
                }
                sane_time(d.started_at, now, "data.started_at")?;
                optional_text(&d.notes, limits, "data.notes")?;
                optional_text(&d.weather, limits, "data.weather")?;
            }
            MutationBody::PatrolPoints(d) => {
                if d.points.is_empty() {
                    return Err(FieldError::new("required", "data.points", "no points"));
                }
                if d.points.len() > limits.max_points_per_mutation {
                    return Err(FieldError::new(
                        "too_many",
                        "data.points",
                        format!(
                            "{} points; at most {} per mutation",
                            d.points.len(),
                            limits.max_points_per_mutation
                        ),
                    ));
                }
                for (i, p) in d.points.iter().enumerate() {
                    sane_time(p.t, now, &format!("data.points[{i}].t"))?;
                    if let Some(a) = p.accuracy_m {
                        if !a.is_finite() || a < 0.0 {
                            return Err(FieldError::new(
                                "out_of_range",
                                format!("data.points[{i}].accuracy_m"),
                                "accuracy must be a finite number of metres, 0 or more",
                            ));
                        }
                    }
                }
            }
            MutationBody::PatrolFinish(d) => {
                sane_time(d.ended_at, now, "data.ended_at")?;
                optional_text(&d.notes, limits, "data.notes")?;
            }
            MutationBody::IssueReport(d) => {
                sane_time(d.reported_at, now, "data.reported_at")?;
                validate::non_empty(&d.description, "data.description")?;
                validate::text(&d.description, limits.max_text_chars, "data.description")?;
                photos(&d.photos, limits, "data.photos")?;
                match (d.category, d.outflow) {
                    (IssueCategory::Piping, None) => {
                        return Err(FieldError::new(
                            "required",
                            "data.outflow",
                            "piping needs its outflow: clear or muddy",
                        ))
                    }
                    (IssueCategory::Piping, Some(Outflow::Muddy))
                        if d.severity != Severity::Major =>
                    {
                        return Err(FieldError::new(
                            "invalid",
                            "data.severity",
                            "muddy piping carries the embankment away and is always major (3)",
                        ))
                    }
                    (c, Some(_)) if c != IssueCategory::Piping => {
                        return Err(FieldError::new(
                            "invalid",
                            "data.outflow",
                            "outflow is only for piping",
                        ))
                    }
                    _ => {}
                }
            }
            MutationBody::StockMove(d) => {
                optional_text(&d.note, limits, "data.note")?;
                if !(1..=crate::stock::MAX_QUANTITY).contains(&d.quantity) {
                    return Err(FieldError::new(
                        "out_of_range",
                        "data.quantity",
                        format!(
                            "a quantity is a whole number from 1 to {}",
                            crate::stock::MAX_QUANTITY
                        ),
                    ));
                }
            }
            MutationBody::IssueEvent(d) => {
                d.check(limits, "data.")?;
                if let Some(due) = d.due_at {
                    sane_due(due, "data.due_at")?;
                }
            }
        }
        Ok(())
    }

    /// The payload's fingerprint: the same id with a different fingerprint is a conflict.
    pub fn fingerprint(&self) -> Sha256 {
        // Serializing the parsed form makes the fingerprint independent of key order and spacing.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        Sha256::of(&bytes)
    }
}

/// How the server answered one mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    Applied,
    Duplicate,
    Rejected,
}

/// One mutation's answer. `result` is what applying it produced (the same on a replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushResult {
    /// The mutation id, or `null` when the mutation was too broken to have a readable id.
    pub id: Option<MutationId>,
    pub status: PushStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::api::ErrorDetail>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PushResponse {
    pub results: Vec<PushResult>,
}

/// `result` of an applied `patrol.start` or `patrol.finish`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PatrolResult {
    pub patrol_id: PatrolId,
    pub point_count: u64,
}

/// `result` of an applied `patrol.points`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PatrolPointsResult {
    pub patrol_id: PatrolId,
    /// Points this mutation added.
    pub accepted: u64,
    /// Points the patrol now has.
    pub point_count: u64,
}

/// `result` of an applied `issue.report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssueReportResult {
    pub issue_id: IssueId,
    pub chainage_m: f64,
    /// K1+250
    pub chainage: String,
    pub critical: bool,
    /// The report's photos the server does not have yet (upload them).
    pub photos_missing: Vec<Sha256>,
}

/// `result` of an applied `issue.event`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssueEventResult {
    pub issue_id: IssueId,
    pub event_id: IssueEventId,
    /// The issue's status after the event.
    pub status: crate::domain::IssueStatus,
    pub photos_missing: Vec<Sha256>,
    /// Set when the event arrived too late to apply: it is kept in the issue's history marked
    /// rejected, and the push result is `rejected` with this error (a replay answers the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<crate::api::ErrorDetail>,
}

/// What kind of record a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeEntity {
    Segment,
    Patrol,
    Issue,
    /// A segment's [`crate::coverage::CoverageSummary`] (id: the segment id), public.
    Coverage,
    /// An [`crate::alert::Alert`] as it now is (raised, acknowledged or resolved).
    Alert,
}

crate::names::named!(ChangeEntity {
    Segment => "segment",
    Patrol => "patrol",
    Issue => "issue",
    Coverage => "coverage",
    Alert => "alert",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOp {
    /// The record as it now is (`data` holds it whole).
    Upsert,
    Delete,
}

/// One entry of the server's change log, as a client sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// The server's own sequence: the order changes were committed.
    pub seq: i64,
    pub entity: ChangeEntity,
    pub id: String,
    pub op: ChangeOp,
    /// A [`crate::domain::Segment`], [`crate::domain::Patrol`] or [`crate::domain::Issue`].
    pub data: Value,
}

/// `GET /api/v1/sync/pull?since=CURSOR&limit=N`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PullResponse {
    pub changes: Vec<Change>,
    /// The cursor to send next time (opaque).
    pub next: String,
    /// More changes wait beyond this page.
    pub more: bool,
    /// The cursor sent could not be served (too old, or the server's data was rebuilt): drop what was
    /// pulled before and pull afresh from this response's `next`; unsent local work is kept.
    #[serde(default)]
    pub reset: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn points_mutation(points: Value) -> Value {
        json!({
            "id": MutationId::new(), "device_seq": 1, "type": "patrol.points",
            "at": "2024-07-03T00:00:00Z",
            "data": {"patrol_id": PatrolId::new(), "points": points}
        })
    }

    #[test]
    fn errors_name_the_field_path() {
        let mut pts: Vec<Value> = (0..20)
            .map(|_| json!({"t": "2024-07-03T00:00:00Z", "lon": 118.74, "lat": 32.05}))
            .collect();
        pts[17] = json!({"t": "2024-07-03T00:00:00Z", "lon": 118.74, "lat": 91.0});
        let err =
            Mutation::parse(points_mutation(json!(pts)), now(), &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.field, "data.points[17].lat");

        pts[17] = json!({"t": "2024-07-03T00:00:00Z", "lon": "east", "lat": 32.0});
        let err =
            Mutation::parse(points_mutation(json!(pts)), now(), &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.field, "data.points[17].lon");

        pts[17] = json!({"t": "2024-07-03T00:00:00Z", "lon": 118.0, "lat": 32.0, "accuracy_m": -1});
        let err =
            Mutation::parse(points_mutation(json!(pts)), now(), &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.field, "data.points[17].accuracy_m");
    }

    #[test]
    fn refuses_too_many_points_and_unknown_types() {
        let pts: Vec<Value> = (0..1001)
            .map(|_| json!({"t": "2024-07-03T00:00:00Z", "lon": 118.74, "lat": 32.05}))
            .collect();
        let err =
            Mutation::parse(points_mutation(json!(pts)), now(), &Limits::DEFAULT).unwrap_err();
        assert_eq!(
            (err.code.as_str(), err.field.as_str()),
            ("too_many", "data.points")
        );

        let mut m = points_mutation(json!([]));
        m["type"] = json!("patrol.teleport");
        let err = Mutation::parse(m, now(), &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.field, "type");
    }

    #[test]
    fn muddy_piping_must_be_major() {
        let m = json!({
            "id": MutationId::new(), "device_seq": 3, "type": "issue.report", "at": "2024-07-03T00:00:00Z",
            "data": {"issue_id": IssueId::new(), "segment_id": SegmentId::new(),
                     "location": {"lon": 118.744, "lat": 32.053}, "category": "piping", "severity": 2,
                     "outflow": "muddy", "description": "浑水管涌", "reported_at": "2024-07-03T00:00:00Z"}
        });
        let err = Mutation::parse(m, now(), &Limits::DEFAULT).unwrap_err();
        assert_eq!(err.field, "data.severity");
    }

    #[test]
    fn fingerprint_ignores_key_order_but_not_content() {
        let a =
            points_mutation(json!([{"t": "2024-07-03T00:00:00Z", "lon": 118.74, "lat": 32.05}]));
        let ma = Mutation::parse(a.clone(), now(), &Limits::DEFAULT).unwrap();
        let text = serde_json::to_string(&a).unwrap();
        let mb = Mutation::parse(
            serde_json::from_str(&text).unwrap(),
            now(),
            &Limits::DEFAULT,
        )
        .unwrap();
        assert_eq!(ma.fingerprint(), mb.fingerprint());
        let mut c = a;
        c["data"]["points"][0]["lat"] = json!(32.06);
        let mc = Mutation::parse(c, now(), &Limits::DEFAULT).unwrap();
        assert_ne!(ma.fingerprint(), mc.fingerprint());
    }

    #[test]
    fn serialized_mutation_parses_back() {
        let m = Mutation {
            id: MutationId::new(),
            device_seq: 7,
            at: Utc::now(),
            body: MutationBody::PatrolFinish(PatrolFinish {
                patrol_id: PatrolId::new(),
                ended_at: Utc::now(),
                notes: None,
            }),
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["type"], "patrol.finish");
        assert_eq!(Mutation::parse(v, Utc::now(), &Limits::DEFAULT).unwrap(), m);
    }
}
