//! Whether a patrol's track looks walked (巡河真实性): the flags a duty lead sees beside a patrol that
//! may be a "paper patrol" (虚假巡河). They are judged from what arrived, never from trust in the
//! device: the fixes in the device's order, when each batch of them reached the server, and other
//! patrols' tracks to compare with. Pure: no clock, no I/O; the server gathers the inputs.
//!
//! A flag is a reason to look, not a verdict: a flagged patrol does not count as a check until a duty
//! lead accepts it (the server records who and why). Each rule has a near miss it must not flag, so
//! that a patroller who walked the bank is not asked to explain herself: a brisk walk, a GPS fix
//! regained after a culvert, a phone lying still for a short rest, a day offline before the sync, two
//! patrollers walking side by side.

use crate::domain::TrackPoint;
use crate::geo::distance_m;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Why a patrol is flagged. On the wire and in storage it is its [`FlagKind::as_str`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// Faster than a walker, sustained.
    Speed,
    /// Two consecutive fixes further apart than anyone covers in the time between them.
    Jump,
    /// The fixes stay in one spot while the track adds up distance (GPS drift counted as walking).
    StandingStill,
    /// The phone marked fixes as coming from a mock location provider.
    MockLocation,
    /// Fixes dated after the server received them, or long before.
    ClockSkew,
    /// The same fixes as another patrol, shifted in time.
    Copied,
}

crate::names::named!(FlagKind {
    Speed => "speed",
    Jump => "jump",
    StandingStill => "standing_still",
    MockLocation => "mock_location",
    ClockSkew => "clock_skew",
    Copied => "copied",
});

/// One reason, with what was seen, in both languages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub kind: FlagKind,
    pub detail_zh: String,
    pub detail_en: String,
}

/// The thresholds. The defaults are set so that walking, even briskly, with a phone's ordinary GPS,
/// raises nothing; an operator may tighten or loosen them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    /// A speed no walker keeps up (m/s): 3.5 m/s is 12.6 km/h, a run.
    pub max_speed_mps: f64,
    /// For how long the speed must be kept to count (seconds): a short dash is not a ride.
    pub sustained_s: i64,
    /// A jump is a gap between consecutive fixes longer than this (metres)...
    pub jump_m: f64,
    /// ...covered faster than this (m/s): a fix regained after a culvert is far but slow.
    pub jump_speed_mps: f64,
    /// Standing still: every fix within this radius of the track's centre (metres)...
    pub still_radius_m: f64,
    /// ...while the fixes add up to at least this distance (metres).
    pub still_min_length_m: f64,
    /// A fix dated later than its batch's receipt by more than this is impossible (seconds; phones'
    /// clocks drift a little).
    pub max_ahead_s: i64,
    /// A fix dated earlier than its batch's receipt by more than this is suspect (hours): a phone may
    /// stay offline for a day or two, not for a week.
    pub max_behind_h: i64,
    /// Copied: fixes of another patrol within this distance (metres), in the same order...
    pub copy_m: f64,
    /// ...shifted by the same time (within `copy_jitter_s`), at least this far (seconds): two
    /// patrollers walking side by side share the time as well as the place.
    pub copy_min_shift_s: i64,
    pub copy_jitter_s: i64,
    /// ...for at least this share of this track's fixes, and at least `copy_min_fixes` of them.
    pub copy_share: f64,
    pub copy_min_fixes: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            max_speed_mps: 3.5,
            sustained_s: 120,
            jump_m: 300.0,
            jump_speed_mps: 15.0,
            still_radius_m: 30.0,
            still_min_length_m: 300.0,
            max_ahead_s: 300,
            max_behind_h: 72,
            copy_m: 2.0,
            copy_min_shift_s: 600,
            copy_jitter_s: 2,
            copy_share: 0.8,
            copy_min_fixes: 20,
        }
    }
}

/// The fixes of one `patrol.points` batch and when the server received it.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub received_at: DateTime<Utc>,
    pub points: &'a [TrackPoint],
}

/// The flags of a track: its batches in device order, and the tracks of other patrols to compare it
/// with (the server picks those on the same segments). At most one flag of each kind, in
/// [`FlagKind`] order.
pub fn judge(batches: &[Batch<'_>], others: &[&[TrackPoint]], rules: &Rules) -> Vec<Flag> {
    let track: Vec<TrackPoint> = batches
        .iter()
        .flat_map(|b| b.points.iter().copied())
        .collect();
    let mut flags = Vec::new();
    let steps = steps(&track);
    flags.extend(speed(&track, &steps, rules));
    flags.extend(jump(&track, &steps, rules));
    flags.extend(standing_still(&track, &steps, rules));
    flags.extend(mock(&track));
    flags.extend(clock_skew(batches, rules));
    flags.extend(copied(&track, others, rules));
    flags
}

/// Metres between consecutive fixes.
fn steps(track: &[TrackPoint]) -> Vec<f64> {
    track
        .windows(2)
        .map(|w| distance_m(lon_lat(&w[0]), lon_lat(&w[1])))
        .collect()
}

fn lon_lat(p: &TrackPoint) -> [f64; 2] {
    [p.lon.get(), p.lat.get()]
}

fn seconds(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_milliseconds() as f64 / 1000.0
}

fn flag(kind: FlagKind, detail_zh: String, detail_en: String) -> Flag {
    Flag {
        kind,
        detail_zh,
        detail_en,
    }
}

/// The fastest stretch kept up for `sustained_s`: for each fix, the first later fix at least that
/// long after it, and the distance walked between them.
fn speed(track: &[TrackPoint], steps: &[f64], rules: &Rules) -> Option<Flag> {
    let mut walked = vec![0.0; track.len()];
    for (i, s) in steps.iter().enumerate() {
        walked[i + 1] = walked[i] + s;
    }
    let mut fastest: Option<(f64, usize, usize)> = None;
    let mut j = 0;
    for i in 0..track.len() {
        j = j.max(i);
        while j < track.len() && (track[j].t - track[i].t).num_seconds() < rules.sustained_s {
            j += 1;
        }
        if j == track.len() {
            break;
        }
        let v = (walked[j] - walked[i]) / seconds(track[i].t, track[j].t).max(1.0);
        if v > rules.max_speed_mps && fastest.is_none_or(|(f, ..)| v > f) {
            fastest = Some((v, i, j));
        }
    }
    let (v, i, j) = fastest?;
    let minutes = seconds(track[i].t, track[j].t) / 60.0;
    Some(flag(
        FlagKind::Speed,
        format!(
            "连续 {minutes:.0} 分钟速度 {:.1} km/h，超出步行速度",
            v * 3.6
        ),
        format!(
            "{:.1} km/h kept up for {minutes:.0} min: faster than walking",
            v * 3.6
        ),
    ))
}

fn jump(track: &[TrackPoint], steps: &[f64], rules: &Rules) -> Option<Flag> {
    let (i, d, v) = steps
        .iter()
        .enumerate()
        .map(|(i, d)| (i, *d, d / seconds(track[i].t, track[i + 1].t).max(1.0)))
        .filter(|(_, d, v)| *d > rules.jump_m && *v > rules.jump_speed_mps)
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let s = seconds(track[i].t, track[i + 1].t);
    Some(flag(
        FlagKind::Jump,
        format!(
            "第 {} 个定位点跳跃 {d:.0} 米（{s:.0} 秒，{:.0} km/h）",
            i + 2,
            v * 3.6
        ),
        format!(
            "fix {} jumps {d:.0} m in {s:.0} s ({:.0} km/h)",
            i + 2,
            v * 3.6
        ),
    ))
}

fn standing_still(track: &[TrackPoint], steps: &[f64], rules: &Rules) -> Option<Flag> {
    let length: f64 = steps.iter().sum();
    if track.len() < 2 || length < rules.still_min_length_m {
        return None;
    }
    let n = track.len() as f64;
    let centre = [
        track.iter().map(|p| p.lon.get()).sum::<f64>() / n,
        track.iter().map(|p| p.lat.get()).sum::<f64>() / n,
    ];
    let radius = track
        .iter()
        .map(|p| distance_m(centre, lon_lat(p)))
        .fold(0.0, f64::max);
    (radius <= rules.still_radius_m).then(|| {
        flag(
            FlagKind::StandingStill,
            format!("所有定位点都在 {radius:.0} 米范围内，轨迹却累计 {length:.0} 米"),
            format!("every fix lies within {radius:.0} m, yet the track adds up to {length:.0} m"),
        )
    })
}

fn mock(track: &[TrackPoint]) -> Option<Flag> {
    let marked = track.iter().filter(|p| p.mock).count();
    (marked > 0).then(|| {
        flag(
            FlagKind::MockLocation,
            format!("{marked} 个定位点来自模拟定位（共 {} 个）", track.len()),
            format!(
                "{marked} of {} fixes came from a mock location provider",
                track.len()
            ),
        )
    })
}

fn clock_skew(batches: &[Batch<'_>], rules: &Rules) -> Option<Flag> {
    let mut ahead: Option<i64> = None;
    let mut behind: Option<i64> = None;
    for b in batches {
        for p in b.points {
            let lead = (p.t - b.received_at).num_seconds();
            if lead > rules.max_ahead_s {
                ahead = Some(ahead.map_or(lead, |a| a.max(lead)));
            }
            let lag = (b.received_at - p.t).num_hours();
            if lag > rules.max_behind_h {
                behind = Some(behind.map_or(lag, |a| a.max(lag)));
            }
        }
    }
    if let Some(s) = ahead {
        return Some(flag(
            FlagKind::ClockSkew,
            format!("定位时间比服务器收到时晚 {} 分钟", s / 60),
            format!("fixes dated {} min after the server received them", s / 60),
        ));
    }
    behind.map(|h| {
        flag(
            FlagKind::ClockSkew,
            format!("定位时间比服务器收到时早 {h} 小时"),
            format!("fixes dated {h} h before the server received them"),
        )
    })
}

/// The same fixes as another track, in the same order, all shifted by one time offset.
fn copied(track: &[TrackPoint], others: &[&[TrackPoint]], rules: &Rules) -> Option<Flag> {
    if track.len() < rules.copy_min_fixes {
        return None;
    }
    let near = |a: &TrackPoint, b: &TrackPoint| distance_m(lon_lat(a), lon_lat(b)) <= rules.copy_m;
    for other in others {
        // Where the other track first passes this track's first fix: the alignment to try.
        let Some(k) = other.iter().position(|p| near(p, &track[0])) else {
            continue;
        };
        let offset = track[0].t - other[k].t;
        if offset.num_seconds().abs() < rules.copy_min_shift_s {
            continue;
        }
        let jitter = Duration::seconds(rules.copy_jitter_s);
        let matched = track
            .iter()
            .zip(&other[k..])
            .filter(|(a, b)| near(a, b) && ((a.t - b.t) - offset).abs() <= jitter)
            .count();
        if matched >= rules.copy_min_fixes
            && matched as f64 >= rules.copy_share * track.len() as f64
        {
            let hours = offset.num_minutes() as f64 / 60.0;
            return Some(flag(
                FlagKind::Copied,
                format!("{matched} 个定位点与另一次巡查相同，时间整体平移 {hours:.1} 小时"),
                format!("{matched} fixes are another patrol's, shifted by {hours:.1} h"),
            ));
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::geo::{Lat, Lon};
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 7, 3, 1, 0, 0).unwrap()
    }

    /// A fix `east_m` metres east and `north_m` north of a point on the Qinhuai's left bank.
    fn fix(s: i64, east_m: f64, north_m: f64) -> TrackPoint {
        let (lon0, lat0) = (118.7445_f64, 32.0522_f64);
        let lat = lat0 + north_m / 111_320.0;
        let lon = lon0 + east_m / (111_320.0 * lat0.to_radians().cos());
        TrackPoint {
            t: t0() + Duration::seconds(s),
            lon: Lon::parse(lon, "lon").unwrap(),
            lat: Lat::parse(lat, "lat").unwrap(),
            accuracy_m: Some(5.0),
            crs: None,
            mock: false,
        }
    }

    /// A walk east at `speed` m/s, a fix every `every` seconds, for `secs` seconds.
    fn walk(speed: f64, every: i64, secs: i64) -> Vec<TrackPoint> {
        (0..=secs / every)
            .map(|k| fix(k * every, speed * (k * every) as f64, 0.0))
            .collect()
    }

    /// The kinds `points` raise, received a minute after their last fix.
    fn kinds(points: &[TrackPoint], others: &[&[TrackPoint]]) -> Vec<FlagKind> {
        let received_at = points.last().map_or(t0(), |p| p.t) + Duration::minutes(1);
        let batch = Batch {
            received_at,
            points,
        };
        judge(&[batch], others, &Rules::default())
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn a_walk_raises_nothing() {
        // 20 minutes at 1.4 m/s, a fix every 5 s.
        assert!(kinds(&walk(1.4, 5, 1200), &[]).is_empty());
    }

    #[test]
    fn a_ride_is_too_fast_and_a_brisk_walk_or_a_dash_is_not() {
        assert_eq!(kinds(&walk(6.0, 5, 600), &[]), [FlagKind::Speed]);
        // A brisk walk at 3 m/s, sustained: no flag.
        assert!(kinds(&walk(3.0, 5, 600), &[]).is_empty());
        // A 60 s dash at 5 m/s in a walk: not sustained for 120 s.
        let mut track = walk(1.4, 5, 300);
        let start = track.last().unwrap().t;
        let x0 = 1.4 * 300.0;
        track.extend((1..=12).map(|k| {
            let s = (start - t0()).num_seconds() + k * 5;
            fix(s, x0 + 5.0 * (k * 5) as f64, 0.0)
        }));
        let x1 = x0 + 300.0;
        let s1 = (track.last().unwrap().t - t0()).num_seconds();
        track.extend((1..=60).map(|k| fix(s1 + k * 5, x1 + 1.4 * (k * 5) as f64, 0.0)));
        assert!(kinds(&track, &[]).is_empty(), "{:?}", kinds(&track, &[]));
    }

    #[test]
    fn a_jump_is_far_and_fast_and_a_regained_fix_is_not() {
        let mut track = walk(1.2, 5, 300);
        let (s, x) = (300, 1.2 * 300.0);
        // 2 km in 10 s.
        track.push(fix(s + 10, x + 2000.0, 0.0));
        track.extend((1..=10).map(|k| fix(s + 10 + k * 5, x + 2000.0 + 6.0 * k as f64, 0.0)));
        assert!(kinds(&track, &[]).contains(&FlagKind::Jump));
        // 280 m after 4 minutes without a fix (a culvert): far but walkable, not a jump.
        let mut track = walk(1.2, 5, 300);
        track.push(fix(s + 240, x + 280.0, 0.0));
        track.extend((1..=10).map(|k| fix(s + 240 + k * 5, x + 280.0 + 6.0 * k as f64, 0.0)));
        assert!(kinds(&track, &[]).is_empty(), "{:?}", kinds(&track, &[]));
    }

    #[test]
    fn drift_in_one_spot_is_standing_still_and_a_short_rest_is_not() {
        // 40 minutes of fixes wandering 20 m around one spot, 3 m a fix: 480 fixes adding up to
        // well over a kilometre at a walker's pace.
        let drift: Vec<TrackPoint> = (0..480)
            .map(|k| {
                let a = k as f64 * 0.15;
                fix(k * 5, 20.0 * a.cos(), 20.0 * a.sin())
            })
            .collect();
        assert_eq!(kinds(&drift, &[]), [FlagKind::StandingStill]);
        // A rest of 3 minutes in one spot, wandering 5 m: under the distance it would need.
        let rest: Vec<TrackPoint> = (0..36)
            .map(|k| {
                let a = k as f64 * 0.15;
                fix(k * 5, 5.0 * a.cos(), 5.0 * a.sin())
            })
            .collect();
        assert!(kinds(&rest, &[]).is_empty(), "{:?}", kinds(&rest, &[]));
    }

    #[test]
    fn mock_fixes_are_flagged_and_honest_ones_are_not() {
        let mut track = walk(1.4, 5, 600);
        assert!(kinds(&track, &[]).is_empty());
        track[40].mock = true;
        assert_eq!(kinds(&track, &[]), [FlagKind::MockLocation]);
    }

    #[test]
    fn fixes_from_the_future_or_a_week_back_are_skewed_and_a_day_offline_is_not() {
        let track = walk(1.4, 5, 600);
        let end = track.last().unwrap().t;
        let judge_at = |received_at| {
            let batch = Batch {
                received_at,
                points: &track,
            };
            judge(&[batch], &[], &Rules::default())
                .into_iter()
                .map(|f| f.kind)
                .collect::<Vec<_>>()
        };
        // Received an hour before the last fix: the phone's clock is ahead.
        assert_eq!(judge_at(end - Duration::hours(1)), [FlagKind::ClockSkew]);
        // Received eight days later.
        assert_eq!(judge_at(end + Duration::days(8)), [FlagKind::ClockSkew]);
        // A day offline, then synced; or a clock two minutes fast: nothing.
        assert!(judge_at(end + Duration::hours(26)).is_empty());
        assert!(judge_at(end - Duration::minutes(2)).is_empty());
    }

    #[test]
    fn a_track_shifted_from_another_is_copied_and_a_walk_side_by_side_is_not() {
        let original = walk(1.4, 5, 900);
        // The same fixes, a day later.
        let copy: Vec<TrackPoint> = original
            .iter()
            .map(|p| TrackPoint {
                t: p.t + Duration::days(1),
                ..*p
            })
            .collect();
        assert_eq!(kinds(&copy, &[&original]), [FlagKind::Copied]);
        // A colleague walking beside the patroller, 3 m to the north at the same times: not a copy.
        let beside: Vec<TrackPoint> = original
            .iter()
            .enumerate()
            .map(|(k, p)| fix((p.t - t0()).num_seconds(), 1.4 * (k * 5) as f64, 3.0))
            .collect();
        assert!(kinds(&beside, &[&original]).is_empty());
        // The same path walked again the next day, with its own fixes (a few metres off): not a copy.
        let again: Vec<TrackPoint> = original
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let wobble = if k % 2 == 0 { 3.5 } else { -3.5 };
                TrackPoint {
                    t: p.t + Duration::days(1),
                    ..fix(0, 1.4 * (k * 5) as f64, wobble)
                }
            })
            .collect();
        assert!(kinds(&again, &[&original]).is_empty());
    }

    #[test]
    fn kinds_have_one_name_each() {
        for k in FlagKind::ALL {
            assert_eq!(FlagKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::json!(k.as_str())
            );
        }
    }
}
