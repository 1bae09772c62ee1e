//! The domain: segments and chainage, patrols and track points, issues and their lifecycle, roles.

use crate::geo::{Lat, Lon, Position};
use crate::id::{IssueEventId, IssueId, PatrolId, SegmentId, UserId};
use crate::photo::PhotoRef;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a user may do. Patrollers write their own patrols and reports; duty leads act on issues,
/// responses and stock; admins manage reference data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Patroller,
    DutyLead,
    Admin,
}

crate::names::named!(Role {
    Patroller => "patroller",
    DutyLead => "duty_lead",
    Admin => "admin",
});

impl Role {
    /// Duty leads and admins see everything; patrollers see their own work and their segments.
    pub fn sees_everything(self) -> bool {
        matches!(self, Self::DutyLead | Self::Admin)
    }
}

/// Which bank, facing downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bank {
    Left,
    Right,
}

/// A position along an embankment in metres from its origin (桩号), shown the way crews speak: K1+250.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Chainage(pub f64);

impl fmt::Display for Chainage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0.max(0.0).round() as u64;
        write!(f, "K{}+{:03}", m / 1000, m % 1000)
    }
}

/// Properties of a segment as served in the segments FeatureCollection (geometry beside them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentProperties {
    pub id: SegmentId,
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub name_en: Option<String>,
    pub river: String,
    pub bank: Bank,
    /// Geodesic length of the line, metres.
    pub length_m: f64,
    pub start_chainage_m: f64,
    /// The start chainage as crews write it (K0+847).
    pub start_chainage: String,
    pub end_chainage: String,
    /// Metres either side of the line that count as "on the segment".
    pub patrol_buffer_m: f64,
    #[serde(default)]
    pub grid: Option<String>,
    #[serde(default)]
    pub gauge_station: Option<String>,
}

/// A segment: its properties and its line (WGS-84, lon/lat order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Segment {
    #[serde(flatten)]
    pub properties: SegmentProperties,
    /// `[[lon, lat], ...]`
    pub line: Vec<[f64; 2]>,
}

/// One recorded GPS fix.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrackPoint {
    /// When the phone took the fix (device clock).
    pub t: DateTime<Utc>,
    pub lon: Lon,
    pub lat: Lat,
    /// Horizontal accuracy in metres, as the phone reports it.
    #[serde(default)]
    pub accuracy_m: Option<f64>,
    /// The datum the phone reported in; absent means WGS-84. The server converts GCJ-02 on the way
    /// in and stores WGS-84 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crs: Option<Crs>,
    /// The phone's operating system marked the fix as coming from a mock location provider (an
    /// app that fakes the position). Kept, never trusted: the server can judge the patrol by it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mock: bool,
}

/// A coordinate reference system a device may report positions in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Crs {
    /// WGS-84 (GPS), what the server stores.
    Wgs84,
    /// GCJ-02, the offset datum of Chinese map apps (see [`crate::gcj02`]).
    Gcj02,
}

impl TrackPoint {
    /// The point in WGS-84: GCJ-02 converted, the datum mark dropped.
    pub fn to_wgs84(self) -> TrackPoint {
        match self.crs {
            Some(Crs::Gcj02) => {
                let (lon, lat) = crate::gcj02::to_wgs84(self.lon.get(), self.lat.get());
                match (Lon::parse(lon, "lon"), Lat::parse(lat, "lat")) {
                    (Ok(lon), Ok(lat)) => TrackPoint {
                        lon,
                        lat,
                        crs: None,
                        ..self
                    },
                    _ => TrackPoint { crs: None, ..self },
                }
            }
            _ => TrackPoint { crs: None, ..self },
        }
    }
}

/// A patrol as the server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Patrol {
    pub id: PatrolId,
    pub patroller: UserId,
    pub segment_ids: Vec<SegmentId>,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    pub point_count: u64,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub weather: Option<String>,
}

/// What kind of problem. Flood hazards first, then everyday river-chief problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssueCategory {
    Piping,
    Seepage,
    Leak,
    Crack,
    SlopeSlide,
    Sinkhole,
    Overtopping,
    BankCollapse,
    WaveErosion,
    StructureDefect,
    Litter,
    FloatingDebris,
    SewageOutfall,
    WaterAnomaly,
    IllegalStructure,
    IllegalFishing,
    DamagedFacility,
    SignBoard,
    Other,
}

impl IssueCategory {
    pub const ALL: [IssueCategory; 19] = [
        Self::Piping,
        Self::Seepage,
        Self::Leak,
        Self::Crack,
        Self::SlopeSlide,
        Self::Sinkhole,
        Self::Overtopping,
        Self::BankCollapse,
        Self::WaveErosion,
        Self::StructureDefect,
        Self::Litter,
        Self::FloatingDebris,
        Self::SewageOutfall,
        Self::WaterAnomaly,
        Self::IllegalStructure,
        Self::IllegalFishing,
        Self::DamagedFacility,
        Self::SignBoard,
        Self::Other,
    ];

    /// The wire name (`slope_slide`).
    pub fn as_str(self) -> &'static str {
        self.labels().0
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn label_zh(self) -> &'static str {
        self.labels().1
    }

    pub fn label_en(self) -> &'static str {
        self.labels().2
    }

    fn labels(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Piping => ("piping", "管涌", "piping / sand boil"),
            Self::Seepage => ("seepage", "渗水", "seepage"),
            Self::Leak => ("leak", "漏洞", "leak"),
            Self::Crack => ("crack", "裂缝", "crack"),
            Self::SlopeSlide => ("slope_slide", "滑坡", "slope slide"),
            Self::Sinkhole => ("sinkhole", "跌窝", "sinkhole"),
            Self::Overtopping => ("overtopping", "漫溢", "overtopping"),
            Self::BankCollapse => ("bank_collapse", "崩岸", "bank collapse"),
            Self::WaveErosion => ("wave_erosion", "风浪", "wave erosion"),
            Self::StructureDefect => (
                "structure_defect",
                "穿堤建筑物异常",
                "culvert or sluice defect",
            ),
            Self::Litter => ("litter", "垃圾", "litter"),
            Self::FloatingDebris => ("floating_debris", "漂浮物", "floating debris"),
            Self::SewageOutfall => ("sewage_outfall", "排污口", "sewage outfall"),
            Self::WaterAnomaly => ("water_anomaly", "水体异常", "odd water colour or smell"),
            Self::IllegalStructure => ("illegal_structure", "违建", "illegal structure"),
            Self::IllegalFishing => ("illegal_fishing", "非法捕捞", "illegal fishing"),
            Self::DamagedFacility => ("damaged_facility", "设施损坏", "damaged facility"),
            Self::SignBoard => ("sign_board", "公示牌", "sign board"),
            Self::Other => ("other", "其他", "other"),
        }
    }

    /// Flood hazards (巡堤查险) as opposed to everyday river-chief problems.
    pub fn is_flood_hazard(self) -> bool {
        matches!(
            self,
            Self::Piping
                | Self::Seepage
                | Self::Leak
                | Self::Crack
                | Self::SlopeSlide
                | Self::Sinkhole
                | Self::Overtopping
                | Self::BankCollapse
                | Self::WaveErosion
                | Self::StructureDefect
        )
    }
}

/// 1 一般 minor, 2 较大 significant, 3 重大 major.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Severity {
    Minor = 1,
    Significant = 2,
    Major = 3,
}

impl TryFrom<u8> for Severity {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        match v {
            1 => Ok(Self::Minor),
            2 => Ok(Self::Significant),
            3 => Ok(Self::Major),
            _ => Err(format!(
                "severity {v} is not 1 (minor), 2 (significant) or 3 (major)"
            )),
        }
    }
}

/// 1, 2 or 3 on the wire.
impl utoipa::PartialSchema for Severity {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .enum_values(Some([1, 2, 3]))
            .description(Some("1 minor (一般), 2 significant (较大), 3 major (重大)"))
            .into()
    }
}

impl utoipa::ToSchema for Severity {}

impl From<Severity> for u8 {
    fn from(s: Severity) -> u8 {
        s as u8
    }
}

/// What comes out of a piping hole: clear water, or muddy water that carries the embankment away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outflow {
    /// 清水
    Clear,
    /// 浑水: soil is being carried away; always major.
    Muddy,
}

/// Whether a report must be raised at once: a leak, a slide, overtopping, muddy piping, or any
/// major severity. Such reports jump the client's queue and become alerts.
pub fn is_critical(category: IssueCategory, severity: Severity, outflow: Option<Outflow>) -> bool {
    severity == Severity::Major
        || matches!(
            category,
            IssueCategory::Leak | IssueCategory::SlopeSlide | IssueCategory::Overtopping
        )
        || (category == IssueCategory::Piping && outflow == Some(Outflow::Muddy))
}

/// Where an issue stands in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueStatus {
    Reported,
    Accepted,
    Dispatched,
    InProgress,
    Resolved,
    Verified,
    Rejected,
    Duplicate,
}

crate::names::named!(IssueStatus {
    Reported => "reported",
    Accepted => "accepted",
    Dispatched => "dispatched",
    InProgress => "in_progress",
    Resolved => "resolved",
    Verified => "verified",
    Rejected => "rejected",
    Duplicate => "duplicate",
});

impl IssueStatus {
    /// Closed issues need a reopen before anything else happens to them.
    pub fn is_closed(self) -> bool {
        matches!(self, Self::Verified | Self::Rejected | Self::Duplicate)
    }
}

/// One step in an issue's append-only history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueEventKind {
    Reported,
    Accepted,
    Dispatched,
    InProgress,
    Resolved,
    Verified,
    Rejected,
    Duplicate,
    Reopened,
    /// A remark or more photos; changes no status.
    Comment,
}

crate::names::named!(IssueEventKind {
    Reported => "reported",
    Accepted => "accepted",
    Dispatched => "dispatched",
    InProgress => "in_progress",
    Resolved => "resolved",
    Verified => "verified",
    Rejected => "rejected",
    Duplicate => "duplicate",
    Reopened => "reopened",
    Comment => "comment",
});

impl IssueEventKind {
    /// The status after this event, or why the event cannot happen now.
    pub fn apply(self, from: IssueStatus) -> Result<IssueStatus, String> {
        use IssueStatus as S;
        let to = match (self, from) {
            (Self::Comment, s) => s,
            (Self::Reported, _) => return Err("an issue is reported once, by issue.report".into()),
            (Self::Reopened, s) if s.is_closed() || s == S::Resolved => S::Reported,
            (_, s) if s.is_closed() => {
                return Err(format!("the issue is {}; reopen it first", s.as_str()))
            }
            (Self::Accepted, S::Reported) => S::Accepted,
            // From resolved too: a duty lead who finds the fix wanting sends someone (else) again.
            (
                Self::Dispatched,
                S::Reported | S::Accepted | S::Dispatched | S::InProgress | S::Resolved,
            ) => S::Dispatched,
            (Self::InProgress, S::Accepted | S::Dispatched) => S::InProgress,
            (Self::Resolved, S::Accepted | S::Dispatched | S::InProgress) => S::Resolved,
            (Self::Verified, S::Resolved) => S::Verified,
            (Self::Rejected, S::Reported | S::Accepted) => S::Rejected,
            (Self::Duplicate, S::Reported | S::Accepted) => S::Duplicate,
            (kind, s) => {
                return Err(format!(
                    "cannot go from {} by {}",
                    s.as_str(),
                    kind.as_str()
                ))
            }
        };
        Ok(to)
    }

    /// Whether a patroller (who is not the assignee) may add this event. Patrollers may comment on
    /// issues they can see; the assignee may also start and resolve the work; everything else is
    /// the duty lead's.
    pub fn patroller_may(self, is_assignee: bool) -> bool {
        match self {
            Self::Comment => true,
            Self::InProgress | Self::Resolved => is_assignee,
            _ => false,
        }
    }

    /// Whether `role` may take this step at all: patrollers comment, and start and resolve what is
    /// dispatched to them; duty leads accept, reject, mark duplicates, dispatch, verify, reopen and
    /// comment (and start and resolve what they dispatched to themselves); admins do everything.
    pub fn role_may(self, role: Role, is_assignee: bool) -> bool {
        match role {
            Role::Admin => self != Self::Reported,
            Role::DutyLead => match self {
                Self::Reported => false,
                Self::InProgress | Self::Resolved => is_assignee,
                _ => true,
            },
            Role::Patroller => self.patroller_may(is_assignee),
        }
    }

    /// Judges one step by `actor` on an issue that is now `from`: the status after it, or why not.
    ///
    /// A step the actor's role may never take is [`Refusal::Forbidden`]. A step that is not possible
    /// from the current status, or that was the actor's to take when they took it but no longer is
    /// (the work was dispatched to someone else meanwhile), is [`Refusal::Illegal`]: from a device,
    /// such an event is kept in the history marked rejected, so its author sees why.
    pub fn judge(self, actor: Actor, from: IssueStatus) -> Result<IssueStatus, Refusal> {
        if !self.role_may(actor.role, actor.is_assignee) {
            if matches!(self, Self::InProgress | Self::Resolved) && actor.was_assignee {
                return Err(Refusal::Illegal(
                    "the issue was dispatched to someone else meanwhile".into(),
                ));
            }
            return Err(Refusal::Forbidden(format!(
                "a {} may not add a `{}` event to this issue",
                actor.role.as_str(),
                self.as_str()
            )));
        }
        self.apply(from).map_err(Refusal::Illegal)
    }
}

/// Who takes a lifecycle step, as far as the permission rules need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub role: Role,
    /// The issue is dispatched to them now.
    pub is_assignee: bool,
    /// The issue was dispatched to them at some point (and may since have gone to someone else).
    pub was_assignee: bool,
}

/// Why a lifecycle step is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The actor's role may never take this step here (HTTP 403; nothing written).
    Forbidden(String),
    /// Not possible from the issue's current status (HTTP 409; from a device, recorded as a
    /// rejected event).
    Illegal(String),
}

/// Where an issue's history leaves it: the fold of its accepted events, in server order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueState {
    pub status: IssueStatus,
    pub assignee: Option<UserId>,
    pub due_at: Option<DateTime<Utc>>,
}

impl IssueState {
    /// Folds the accepted events (those without `rejected`) by the transition table. An accepted
    /// event the table refuses (which the server never records) leaves the state as it was.
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a IssueEvent>) -> IssueState {
        let mut state = IssueState {
            status: IssueStatus::Reported,
            assignee: None,
            due_at: None,
        };
        for e in events {
            if e.rejected.is_some() || e.kind == IssueEventKind::Reported {
                continue;
            }
            if let Ok(next) = e.kind.apply(state.status) {
                state.status = next;
                if e.kind == IssueEventKind::Dispatched {
                    state.assignee = e.assignee;
                    state.due_at = e.due_at;
                }
            }
        }
        state
    }
}

/// Shanghai's offset from UTC. China keeps no daylight saving time, so it is fixed.
const SHANGHAI_SECONDS: i32 = 8 * 3600;

/// Asia/Shanghai (Beijing time), the zone every time shown to a person is in.
pub fn shanghai() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(SHANGHAI_SECONDS)
        .unwrap_or_else(|| unreachable!("+08:00 is a valid offset"))
}

/// A time as people on the bank read it: `2024-06-29 19:00` in Beijing time (no zone suffix; every
/// time the system shows a person is in Asia/Shanghai).
pub fn local_minutes(t: DateTime<Utc>) -> String {
    t.with_timezone(&shanghai())
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// `start` plus `working` time counted only on working days (Monday to Friday, Asia/Shanghai),
/// round the clock on those days: one working day (24 h) from Friday 10:00 is Monday 10:00.
pub fn add_working_time(start: DateTime<Utc>, working: chrono::Duration) -> DateTime<Utc> {
    use chrono::{Datelike, Duration, FixedOffset, Weekday};
    let Some(offset) = FixedOffset::east_opt(SHANGHAI_SECONDS) else {
        return start + working;
    };
    let mut t = start.with_timezone(&offset);
    let mut left = working.max(Duration::zero());
    // At most one step per calendar day: bounded by the working time asked for.
    loop {
        let midnight = t
            .date_naive()
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|d| d.and_local_timezone(offset).single());
        let Some(midnight) = midnight else {
            return t.with_timezone(&Utc) + left;
        };
        if matches!(t.weekday(), Weekday::Sat | Weekday::Sun) {
            t = midnight;
            continue;
        }
        let today = midnight - t;
        if left <= today {
            return (t + left).with_timezone(&Utc);
        }
        left -= today;
        t = midnight;
    }
}

/// One entry of an issue's history as the server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IssueEvent {
    pub id: IssueEventId,
    pub kind: IssueEventKind,
    pub by: UserId,
    /// Device time of the event (what the user saw).
    pub at: DateTime<Utc>,
    /// When the server recorded it.
    pub recorded_at: DateTime<Utc>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub assignee: Option<UserId>,
    #[serde(default)]
    pub duplicate_of: Option<IssueId>,
    /// For `dispatched`: when the work is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub photos: Vec<PhotoRef>,
    /// Set when the server kept the event but did not apply it (it was no longer possible when it
    /// arrived): why. Rejected events change nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

/// An issue as the server reports it, with its history and the state of its photos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Issue {
    pub id: IssueId,
    pub segment_id: SegmentId,
    #[serde(default)]
    pub patrol_id: Option<PatrolId>,
    pub reporter: UserId,
    pub location: Position,
    /// Chainage of the location's projection onto the segment line, metres.
    pub chainage_m: f64,
    /// The same as crews write it (K1+250).
    pub chainage: String,
    pub category: IssueCategory,
    pub category_zh: String,
    pub category_en: String,
    pub severity: Severity,
    #[serde(default)]
    pub outflow: Option<Outflow>,
    pub critical: bool,
    pub description: String,
    pub status: IssueStatus,
    #[serde(default)]
    pub assignee: Option<UserId>,
    /// When the current dispatch is due.
    #[serde(default)]
    pub due_at: Option<DateTime<Utc>>,
    /// Dispatched or in progress and past `due_at` (judged when the server wrote this answer).
    #[serde(default)]
    pub overdue: bool,
    /// Still `reported` past the acceptance deadline (judged when the server wrote this answer).
    #[serde(default)]
    pub escalated: bool,
    pub reported_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// Photos of the report and of every event.
    pub photos: Vec<PhotoRef>,
    pub photos_expected: u32,
    pub photos_arrived: u32,
    #[serde(default)]
    pub events: Vec<IssueEvent>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chainage_reads_like_a_stake() {
        assert_eq!(Chainage(1250.0).to_string(), "K1+250");
        assert_eq!(Chainage(847.4).to_string(), "K0+847");
        assert_eq!(Chainage(0.0).to_string(), "K0+000");
    }

    #[test]
    fn every_category_has_both_labels_and_round_trips() {
        for c in IssueCategory::ALL {
            assert!(!c.label_zh().is_empty() && !c.label_en().is_empty());
            assert_eq!(IssueCategory::parse(c.as_str()), Some(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
    }

    #[test]
    fn critical_hazards() {
        use IssueCategory::*;
        assert!(is_critical(Leak, Severity::Minor, None));
        assert!(is_critical(
            Piping,
            Severity::Significant,
            Some(Outflow::Muddy)
        ));
        assert!(!is_critical(
            Piping,
            Severity::Significant,
            Some(Outflow::Clear)
        ));
        assert!(is_critical(Litter, Severity::Major, None));
        assert!(!is_critical(Seepage, Severity::Minor, None));
    }

    #[test]
    fn lifecycle_transitions() {
        use IssueEventKind as K;
        use IssueStatus as S;
        assert_eq!(K::Accepted.apply(S::Reported), Ok(S::Accepted));
        assert_eq!(K::Verified.apply(S::Resolved), Ok(S::Verified));
        assert!(K::Verified.apply(S::Reported).is_err());
        assert!(K::Accepted.apply(S::Verified).is_err());
        assert_eq!(K::Reopened.apply(S::Verified), Ok(S::Reported));
        assert_eq!(K::Comment.apply(S::Verified), Ok(S::Verified));
    }

    fn event(
        kind: IssueEventKind,
        by: UserId,
        assignee: Option<UserId>,
        rejected: bool,
    ) -> IssueEvent {
        IssueEvent {
            id: IssueEventId::new(),
            kind,
            by,
            at: Utc::now(),
            recorded_at: Utc::now(),
            note: None,
            assignee,
            duplicate_of: None,
            due_at: None,
            photos: Vec::new(),
            rejected: rejected.then(|| "too late".to_owned()),
        }
    }

    #[test]
    fn the_state_is_the_fold_of_the_accepted_events() {
        use IssueEventKind as K;
        let (lead, li, zhang) = (UserId::new(), UserId::new(), UserId::new());
        let history = [
            event(K::Reported, zhang, None, false),
            event(K::Accepted, lead, None, false),
            event(K::Dispatched, lead, Some(li), false),
            event(K::Dispatched, lead, Some(zhang), false),
            // Li Na's offline steps, kept but rejected: they change nothing.
            event(K::InProgress, li, None, true),
            event(K::Resolved, li, None, true),
            event(K::Comment, zhang, None, false),
        ];
        let s = IssueState::fold(&history);
        assert_eq!(s.status, IssueStatus::Dispatched);
        assert_eq!(s.assignee, Some(zhang));
        // The same steps accepted in the other order: resolved, then sent again. Same end.
        let other = [
            event(K::Reported, zhang, None, false),
            event(K::Accepted, lead, None, false),
            event(K::Dispatched, lead, Some(li), false),
            event(K::InProgress, li, None, false),
            event(K::Resolved, li, None, false),
            event(K::Dispatched, lead, Some(zhang), false),
        ];
        let t = IssueState::fold(&other);
        assert_eq!((t.status, t.assignee), (s.status, s.assignee));
        assert_eq!(IssueState::fold(&[]).status, IssueStatus::Reported);
    }

    #[test]
    fn roles_and_transitions_are_judged_apart() {
        use IssueEventKind as K;
        use IssueStatus as S;
        let patroller = |is_assignee, was_assignee| Actor {
            role: Role::Patroller,
            is_assignee,
            was_assignee,
        };
        let lead = Actor {
            role: Role::DutyLead,
            is_assignee: false,
            was_assignee: false,
        };
        let admin = Actor {
            role: Role::Admin,
            ..lead
        };
        assert_eq!(
            K::Resolved.judge(patroller(true, true), S::InProgress),
            Ok(S::Resolved)
        );
        assert!(matches!(
            K::Resolved.judge(patroller(false, false), S::InProgress),
            Err(Refusal::Forbidden(_))
        ));
        // Sent to someone else meanwhile: not forbidden, too late.
        assert!(matches!(
            K::Resolved.judge(patroller(false, true), S::Dispatched),
            Err(Refusal::Illegal(_))
        ));
        assert!(matches!(
            K::Accepted.judge(patroller(true, true), S::Reported),
            Err(Refusal::Forbidden(_))
        ));
        assert_eq!(
            K::Comment.judge(patroller(false, false), S::Verified),
            Ok(S::Verified)
        );
        assert_eq!(K::Accepted.judge(lead, S::Reported), Ok(S::Accepted));
        assert!(matches!(
            K::Accepted.judge(lead, S::Dispatched),
            Err(Refusal::Illegal(_))
        ));
        assert!(matches!(
            K::InProgress.judge(lead, S::Dispatched),
            Err(Refusal::Forbidden(_))
        ));
        assert_eq!(K::InProgress.judge(admin, S::Dispatched), Ok(S::InProgress));
        assert_eq!(K::Dispatched.judge(lead, S::Resolved), Ok(S::Dispatched));
        assert!(matches!(
            K::Reported.judge(admin, S::Reported),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn a_working_day_skips_the_weekend_in_shanghai() {
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .unwrap()
        };
        let day = chrono::Duration::hours(24);
        // Tuesday 10:00 in Shanghai: Wednesday 10:00.
        assert_eq!(
            add_working_time(at("2024-07-02T10:00:00+08:00"), day),
            at("2024-07-03T10:00:00+08:00")
        );
        // Friday 10:00: Monday 10:00.
        assert_eq!(
            add_working_time(at("2024-07-05T10:00:00+08:00"), day),
            at("2024-07-08T10:00:00+08:00")
        );
        // Friday 23:00 UTC is Saturday 07:00 in Shanghai: counting starts Monday 00:00.
        assert_eq!(
            add_working_time(at("2024-07-05T23:00:00Z"), day),
            at("2024-07-09T00:00:00+08:00")
        );
        // Friday 23:30: half an hour on Friday, the rest from Monday 00:00.
        assert_eq!(
            add_working_time(at("2024-07-05T23:30:00+08:00"), day),
            at("2024-07-08T23:30:00+08:00")
        );
    }
}
