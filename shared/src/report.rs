//! The year in figures, the pure part: the periods a report is asked for (in Asia/Shanghai days),
//! what counts as a check (巡查), and what the requirement asks of a segment over a period whose
//! flood stage changed within it. The server reads the rows; these functions decide.

use crate::coverage::{FloodStage, Requirement};
use crate::domain::shanghai;
use crate::FieldError;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// A period of whole Asia/Shanghai days, `[from, to)` in UTC, and how it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// As asked: `2024`, `2024-Q3`, `2024-07`, `2024-W27` (ISO week) or `2024-07-01..2024-07-31`
    /// (both days included).
    pub label: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The longest period a report covers (a year and a bit, for a from–to range).
const MAX_DAYS: i64 = 400;

impl Period {
    /// Parses a period, refusing what is not one with a field error naming `field`.
    pub fn parse(s: &str, field: &str) -> Result<Period, FieldError> {
        let s = s.trim();
        let bad = |why: &str| FieldError::new("invalid", field, format!("{s:?}: {why}"));
        let (first, last) = if let Some((a, b)) = s.split_once("..") {
            let a = day(a).ok_or_else(|| bad("the first day is not YYYY-MM-DD"))?;
            let b = day(b).ok_or_else(|| bad("the last day is not YYYY-MM-DD"))?;
            if b < a {
                return Err(bad("the last day is before the first"));
            }
            (a, b)
        } else if let Some((y, q)) = s.split_once("-Q") {
            let (y, q) = (year(y).ok_or_else(|| bad("not a year"))?, q.parse::<u32>());
            let q = q
                .ok()
                .filter(|q| (1..=4).contains(q))
                .ok_or_else(|| bad("a quarter is Q1 to Q4"))?;
            let a =
                NaiveDate::from_ymd_opt(y, 3 * q - 2, 1).ok_or_else(|| bad("no such quarter"))?;
            (
                a,
                month_end(y, 3 * q).ok_or_else(|| bad("no such quarter"))?,
            )
        } else if let Some((y, w)) = s.split_once("-W") {
            let y = year(y).ok_or_else(|| bad("not a year"))?;
            let w = w.parse::<u32>().map_err(|_| bad("a week is W01 to W53"))?;
            let a = NaiveDate::from_isoywd_opt(y, w, Weekday::Mon)
                .ok_or_else(|| bad("no such ISO week"))?;
            (a, a + Duration::days(6))
        } else if s.len() == 7 {
            let (y, m) = s.split_once('-').ok_or_else(|| bad("a month is YYYY-MM"))?;
            let y = year(y).ok_or_else(|| bad("not a year"))?;
            let m = m.parse::<u32>().ok().filter(|m| (1..=12).contains(m));
            let m = m.ok_or_else(|| bad("a month is 01 to 12"))?;
            let a = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(|| bad("no such month"))?;
            (a, month_end(y, m).ok_or_else(|| bad("no such month"))?)
        } else {
            let y = year(s).ok_or_else(|| {
                bad("a period is a year, YYYY-Qn, YYYY-MM, YYYY-Www or YYYY-MM-DD..YYYY-MM-DD")
            })?;
            let a = NaiveDate::from_ymd_opt(y, 1, 1).ok_or_else(|| bad("no such year"))?;
            (a, month_end(y, 12).ok_or_else(|| bad("no such year"))?)
        };
        if (last - first).num_days() >= MAX_DAYS {
            return Err(bad(&format!("a period is at most {MAX_DAYS} days")));
        }
        Ok(Period {
            label: s.to_owned(),
            from: midnight(first),
            to: midnight(last + Duration::days(1)),
        })
    }

    /// The Asia/Shanghai days of the period, in order.
    pub fn days(&self) -> Vec<NaiveDate> {
        let first = self.from.with_timezone(&shanghai()).date_naive();
        let n = (self.to - self.from).num_days();
        (0..n).map(|k| first + Duration::days(k)).collect()
    }
}

/// The Asia/Shanghai day `t` falls on.
pub fn local_day(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&shanghai()).date_naive()
}

/// Midnight starting an Asia/Shanghai day, in UTC.
pub fn midnight(d: NaiveDate) -> DateTime<Utc> {
    let local = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    shanghai()
        .from_local_datetime(&local)
        .single()
        .map_or_else(|| local.and_utc(), |t| t.with_timezone(&Utc))
}

fn day(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

fn year(s: &str) -> Option<i32> {
    let s = s.trim();
    (s.len() == 4)
        .then(|| s.parse::<i32>().ok())
        .flatten()
        .filter(|y| (2000..=2100).contains(y))
}

fn month_end(y: i32, m: u32) -> Option<NaiveDate> {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    NaiveDate::from_ymd_opt(ny, nm, 1).map(|d| d - Duration::days(1))
}

/// What a finished patrol must be to count as a check of a segment it covered: long enough, and
/// far enough on segments (the Guangzhou 2021 rule: 10 minutes and 1 km); and what a check should
/// find (the community's own target: two problems).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckRules {
    pub min_minutes: i64,
    pub min_walked_m: f64,
    pub target_problems: u32,
}

impl Default for CheckRules {
    fn default() -> Self {
        CheckRules {
            min_minutes: 10,
            min_walked_m: 1000.0,
            target_problems: 2,
        }
    }
}

/// Whether a patrol counts as a check, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Counts,
    /// Not finished yet.
    Unfinished,
    /// It covered no segment (the coverage rule).
    NotCovered,
    TooShort,
    TooLittleWalked,
    /// Flagged (`authenticity`) and not yet accepted by a duty lead.
    AwaitingAcceptance,
}

/// What a patrol was, for [`judge_check`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatrolFacts {
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Metres walked on the segments it covered (from the coverage intervals).
    pub walked_on_segments_m: f64,
    pub covered_any: bool,
    pub flagged: bool,
    pub accepted: bool,
}

pub fn judge_check(p: &PatrolFacts, rules: &CheckRules) -> CheckOutcome {
    let Some(end) = p.ended_at else {
        return CheckOutcome::Unfinished;
    };
    if !p.covered_any {
        CheckOutcome::NotCovered
    } else if end - p.started_at < Duration::minutes(rules.min_minutes) {
        CheckOutcome::TooShort
    } else if p.walked_on_segments_m < rules.min_walked_m {
        CheckOutcome::TooLittleWalked
    } else if p.flagged && !p.accepted {
        CheckOutcome::AwaitingAcceptance
    } else {
        CheckOutcome::Counts
    }
}

/// A stretch of time at one stage in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRun {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub stage: FloodStage,
}

/// One interval the requirement asks a segment to be checked in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub stage: FloodStage,
}

/// The windows the requirement asks for over `[from, to)`, given the stage runs in force (in order;
/// time outside every run is at normal). Each run is tiled from its start by its stage's interval;
/// a window cut short by the run's end (the stage changed, or the period ended) is still asked for:
/// the requirement was in force for it.
pub fn required_windows(
    runs: &[StageRun],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    requirement: &Requirement,
) -> Vec<Window> {
    let mut pieces: Vec<StageRun> = Vec::new();
    let mut at = from;
    for r in runs {
        let (a, b) = (r.from.max(from), r.to.min(to));
        if b <= a {
            continue;
        }
        if a > at {
            pieces.push(StageRun {
                from: at,
                to: a,
                stage: FloodStage::Normal,
            });
        }
        pieces.push(StageRun {
            from: a.max(at),
            to: b,
            stage: r.stage,
        });
        at = at.max(b);
    }
    if at < to {
        pieces.push(StageRun {
            from: at,
            to,
            stage: FloodStage::Normal,
        });
    }
    let mut out = Vec::new();
    for p in pieces {
        let step = requirement.interval(p.stage).max(Duration::minutes(1));
        let mut w = p.from;
        while w < p.to {
            let end = (w + step).min(p.to);
            out.push(Window {
                from: w,
                to: end,
                stage: p.stage,
            });
            w = end;
        }
    }
    out
}

/// How many of `windows` had a check in them: a counting check's time on the segment (`first`,
/// `last` of its covering fixes) overlapping the window.
pub fn windows_covered(windows: &[Window], checks: &[(DateTime<Utc>, DateTime<Utc>)]) -> usize {
    windows
        .iter()
        .filter(|w| checks.iter().any(|(a, b)| *a < w.to && *b >= w.from))
        .count()
}

/// The median of some durations or figures (`None` for none); the mean of the middle two for an
/// even count.
pub fn median(mut xs: Vec<f64>) -> Option<f64> {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

/// The ISO week a day falls in, as `YYYY-Www` (for per-week tables).
pub fn iso_week(d: NaiveDate) -> String {
    let w = d.iso_week();
    format!("{}-W{:02}", w.year(), w.week())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn periods_are_whole_shanghai_days() {
        let y = Period::parse("2024", "period").unwrap();
        assert_eq!(y.from, at("2023-12-31T16:00:00Z"));
        assert_eq!(y.to, at("2024-12-31T16:00:00Z"));
        assert_eq!(y.days().len(), 366);
        let q = Period::parse("2024-Q3", "period").unwrap();
        assert_eq!(
            (q.from, q.to),
            (at("2024-06-30T16:00:00Z"), at("2024-09-30T16:00:00Z"))
        );
        let m = Period::parse("2024-02", "period").unwrap();
        assert_eq!(m.days().len(), 29);
        let w = Period::parse("2024-W27", "period").unwrap();
        assert_eq!(w.days()[0], NaiveDate::from_ymd_opt(2024, 7, 1).unwrap());
        assert_eq!(w.days().len(), 7);
        let r = Period::parse("2024-07-01..2024-07-03", "period").unwrap();
        assert_eq!(r.days().len(), 3);
        assert_eq!(r.to, at("2024-07-03T16:00:00Z"));
        for bad in [
            "",
            "24",
            "2024-13",
            "2024-Q5",
            "2024-W60",
            "2024-07-03..2024-07-01",
            "2020..2024-01-01",
            "2020-01-01..2022-01-01",
        ] {
            let e = Period::parse(bad, "period").unwrap_err();
            assert_eq!(e.field, "period", "{bad}");
        }
    }

    #[test]
    fn a_patrol_straddling_midnight_falls_on_its_shanghai_days() {
        // 23:40 to 00:20 Beijing time: two local days, one UTC day.
        let start = at("2024-07-03T15:40:00Z");
        let end = at("2024-07-03T16:20:00Z");
        assert_eq!(
            local_day(start),
            NaiveDate::from_ymd_opt(2024, 7, 3).unwrap()
        );
        assert_eq!(local_day(end), NaiveDate::from_ymd_opt(2024, 7, 4).unwrap());
    }

    #[test]
    fn a_check_is_long_far_covered_and_honest_or_accepted() {
        let rules = CheckRules::default();
        let t = at("2024-07-03T01:00:00Z");
        let p = PatrolFacts {
            started_at: t,
            ended_at: Some(t + Duration::minutes(25)),
            walked_on_segments_m: 1800.0,
            covered_any: true,
            flagged: false,
            accepted: false,
        };
        assert_eq!(judge_check(&p, &rules), CheckOutcome::Counts);
        let with = |f: &dyn Fn(&mut PatrolFacts)| {
            let mut q = p;
            f(&mut q);
            judge_check(&q, &rules)
        };
        assert_eq!(with(&|q| q.ended_at = None), CheckOutcome::Unfinished);
        assert_eq!(with(&|q| q.covered_any = false), CheckOutcome::NotCovered);
        assert_eq!(
            with(&|q| q.ended_at = Some(t + Duration::minutes(9))),
            CheckOutcome::TooShort
        );
        assert_eq!(
            with(&|q| q.ended_at = Some(t + Duration::minutes(10))),
            CheckOutcome::Counts
        );
        assert_eq!(
            with(&|q| q.walked_on_segments_m = 999.0),
            CheckOutcome::TooLittleWalked
        );
        assert_eq!(
            with(&|q| q.flagged = true),
            CheckOutcome::AwaitingAcceptance
        );
        assert_eq!(
            with(&|q| {
                q.flagged = true;
                q.accepted = true
            }),
            CheckOutcome::Counts
        );
    }

    #[test]
    fn the_requirement_follows_the_stage_within_a_period() {
        let req = Requirement::DEFAULT;
        // Two weeks; warning for three hours in the middle of the second day.
        let from = at("2024-07-01T16:00:00Z");
        let to = from + Duration::days(14);
        let surge = StageRun {
            from: from + Duration::hours(30),
            to: from + Duration::hours(33),
            stage: FloodStage::Warning,
        };
        let w = required_windows(&[surge], from, to, &req);
        let warning = w.iter().filter(|w| w.stage == FloodStage::Warning).count();
        assert_eq!(warning, 6, "three hours of 30-minute windows");
        let normal: Vec<&Window> = w.iter().filter(|w| w.stage == FloodStage::Normal).collect();
        // Before the surge: one window cut short at the surge; after it: two full weeks' worth cut
        // at the period's end (14 days - 33 h = 12 d 15 h: one week and a shorter one).
        assert_eq!(normal.len(), 3, "{normal:?}");
        assert_eq!(normal[0].to, surge.from);
        assert_eq!(w.first().unwrap().from, from);
        assert_eq!(w.last().unwrap().to, to);
        // Contiguous, no gaps or overlaps.
        for pair in w.windows(2) {
            assert_eq!(pair[0].to, pair[1].from);
        }
        // A patrol at the surge's second hour covers one warning window (and touches no other).
        let check = (
            surge.from + Duration::minutes(65),
            surge.from + Duration::minutes(85),
        );
        let warning_windows: Vec<Window> = w
            .iter()
            .copied()
            .filter(|w| w.stage == FloodStage::Warning)
            .collect();
        assert_eq!(windows_covered(&warning_windows, &[check]), 1);
        // One spanning the whole surge covers all six.
        assert_eq!(
            windows_covered(&warning_windows, &[(surge.from, surge.to)]),
            6
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(
            iso_week(NaiveDate::from_ymd_opt(2024, 12, 30).unwrap()),
            "2025-W01"
        );
    }
}
