//! Flood watch: gauge stations, their readings, the flood stage with hysteresis, the rapid-rise
//! signal, emergency response levels, drills, and the readings CSV. Pure: no I/O, no clock.
//!
//! **Stage with hysteresis.** A station's stage is derived from its readings in time order. A stage is
//! entered when the level reaches its threshold (`level >= threshold`) and left only when the level
//! falls `margin_m` below it (`level <= threshold - margin_m`), so a level hovering on a threshold
//! does not flap between two stages. [`next_stage`] is one step; [`stages`] folds a series.
//!
//! **Rapid rise.** The rise at a reading is its level minus the lowest level of the readings in the
//! window before it (`[t - window, t]`, the reading itself included, so a falling level rises 0).
//! The signal is on while the rise is at least `threshold_m` ([`rise_at`]).
//!
//! **The fold of a batch** ([`fold_batch`], in [`fold`]): the two rules over a station's series when
//! a batch of readings arrives, late ones included: what to write and which alert changes to
//! announce.

use crate::coverage::FloodStage;
use crate::validate::FieldError;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Levels (metres above the station's datum) a reading may have: anything outside is a typo or a
/// broken sensor, refused at the edge.
pub const LEVEL_RANGE_M: std::ops::RangeInclusive<f64> = -100.0..=1000.0;
/// Readings in one `POST /stations/{id}/readings`.
pub const MAX_READINGS_PER_BATCH: usize = 5000;
/// Observed times a reading may have: [1900-01-01, 2200-01-01).
fn observed_range() -> (DateTime<Utc>, DateTime<Utc>) {
    use chrono::TimeZone;
    let year = |y| {
        Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    (year(1900), year(2200))
}

/// Rounding slack when comparing a level with a threshold (levels are given to the centimetre).
const EPS: f64 = 1e-9;

/// A station's three levels: 设防 watch, 警戒 warning, 保证 guarantee (metres, ascending).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Thresholds {
    pub watch_m: f64,
    pub warning_m: f64,
    pub guarantee_m: f64,
}

impl Thresholds {
    /// Finite, within [`LEVEL_RANGE_M`], and strictly ascending; the error names the field.
    pub fn validate(&self, prefix: &str) -> Result<(), FieldError> {
        let name = |f: &str| {
            if prefix.is_empty() {
                f.to_owned()
            } else {
                format!("{prefix}.{f}")
            }
        };
        for (f, v) in [
            ("watch_m", self.watch_m),
            ("warning_m", self.warning_m),
            ("guarantee_m", self.guarantee_m),
        ] {
            if !v.is_finite() || !LEVEL_RANGE_M.contains(&v) {
                return Err(FieldError::new(
                    "out_of_range",
                    name(f),
                    "a level in metres from -100 to 1000",
                ));
            }
        }
        if self.warning_m <= self.watch_m {
            return Err(FieldError::new(
                "invalid",
                name("warning_m"),
                "the warning level must be above the watch level",
            ));
        }
        if self.guarantee_m <= self.warning_m {
            return Err(FieldError::new(
                "invalid",
                name("guarantee_m"),
                "the guarantee level must be above the warning level",
            ));
        }
        Ok(())
    }

    /// The threshold of a stage (`None` for normal, which has none).
    pub fn of(&self, stage: FloodStage) -> Option<f64> {
        match stage {
            FloodStage::Normal => None,
            FloodStage::Watch => Some(self.watch_m),
            FloodStage::Warning => Some(self.warning_m),
            FloodStage::Guarantee => Some(self.guarantee_m),
        }
    }

    /// The stage a level reaches without hysteresis: the highest whose threshold it reaches.
    pub fn reached(&self, level_m: f64) -> FloodStage {
        FloodStage::ALL
            .into_iter()
            .rev()
            .find(|s| self.of(*s).is_none_or(|t| level_m >= t - EPS))
            .unwrap_or(FloodStage::Normal)
    }
}

/// How far below a threshold the level must fall before its stage is left (default 0.10 m).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageRules {
    pub margin_m: f64,
}

impl Default for StageRules {
    fn default() -> Self {
        StageRules { margin_m: 0.10 }
    }
}

fn below(stage: FloodStage) -> FloodStage {
    match stage {
        FloodStage::Normal | FloodStage::Watch => FloodStage::Normal,
        FloodStage::Warning => FloodStage::Watch,
        FloodStage::Guarantee => FloodStage::Warning,
    }
}

/// The stage after a reading of `level_m`, from `current`: up to whatever the level reaches; down
/// one stage at a time while the level is `margin_m` or more below the current stage's threshold.
pub fn next_stage(
    current: FloodStage,
    level_m: f64,
    thresholds: &Thresholds,
    rules: &StageRules,
) -> FloodStage {
    let reached = thresholds.reached(level_m);
    if reached >= current {
        return reached;
    }
    let mut stage = current;
    while let Some(t) = thresholds.of(stage) {
        if level_m <= t - rules.margin_m + EPS {
            stage = below(stage);
        } else {
            break;
        }
    }
    stage.max(reached)
}

/// One reading: when it was observed and the level (metres above the station's datum).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reading {
    pub observed_at: DateTime<Utc>,
    pub level_m: f64,
}

/// The stage after each reading of a series in time order, starting from `start`.
pub fn stages(
    start: FloodStage,
    readings: &[Reading],
    thresholds: &Thresholds,
    rules: &StageRules,
) -> Vec<FloodStage> {
    let mut stage = start;
    readings
        .iter()
        .map(|r| {
            stage = next_stage(stage, r.level_m, thresholds, rules);
            stage
        })
        .collect()
}

/// The rapid-rise rule (default: 0.30 m or more within 3 hours).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RiseRules {
    pub window: Duration,
    pub threshold_m: f64,
}

impl Default for RiseRules {
    fn default() -> Self {
        RiseRules {
            window: Duration::hours(3),
            threshold_m: 0.30,
        }
    }
}

impl RiseRules {
    pub fn is_rapid(&self, rise_m: f64) -> bool {
        rise_m >= self.threshold_m - EPS
    }
}

/// The rise at `series[i]` (sorted by time): its level minus the lowest level observed in
/// `[t - window, t]`. Never negative.
pub fn rise_at(series: &[Reading], i: usize, window: Duration) -> f64 {
    let Some(at) = series.get(i) else {
        return 0.0;
    };
    let from = at.observed_at - window;
    let lowest = series[..=i]
        .iter()
        .rev()
        .take_while(|r| r.observed_at >= from)
        .map(|r| r.level_m)
        .fold(at.level_m, f64::min);
    (at.level_m - lowest).max(0.0)
}

pub mod fold;
pub use fold::{
    fold_batch, unstored, Announcement, Around, Conflict, FoldRules, Folded, RowWrite,
    StagedReading, Write,
};

/// The body of `POST /api/v1/stations/{id or code}/readings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadingsBatch {
    pub readings: Vec<Reading>,
}

impl ReadingsBatch {
    /// Checks every reading and answers them sorted by time, one per time, each with its index in
    /// the batch (for errors). The same time twice with the same level is one reading; with different
    /// levels the later one is refused (`conflict`).
    pub fn validate(&self) -> Result<Vec<(usize, Reading)>, FieldError> {
        if self.readings.is_empty() {
            return Err(FieldError::new(
                "required",
                "readings",
                "send at least one reading",
            ));
        }
        if self.readings.len() > MAX_READINGS_PER_BATCH {
            return Err(FieldError::new(
                "too_many",
                "readings",
                format!("at most {MAX_READINGS_PER_BATCH} readings in one batch"),
            ));
        }
        let mut seen: std::collections::BTreeMap<DateTime<Utc>, (usize, f64)> = Default::default();
        let (earliest, latest) = observed_range();
        for (i, r) in self.readings.iter().enumerate() {
            if r.observed_at < earliest || r.observed_at >= latest {
                return Err(FieldError::new(
                    "out_of_range",
                    format!("readings[{i}].observed_at"),
                    "a time from 1900 to 2199",
                ));
            }
            let field = format!("readings[{i}].level_m");
            if !r.level_m.is_finite() {
                return Err(FieldError::new("not_finite", field, "a finite number"));
            }
            if !LEVEL_RANGE_M.contains(&r.level_m) {
                return Err(FieldError::new(
                    "out_of_range",
                    field,
                    "a level in metres from -100 to 1000",
                ));
            }
            if let Some((j, level)) = seen.get(&r.observed_at) {
                if *level != r.level_m {
                    return Err(FieldError::new(
                        "conflict",
                        field,
                        format!(
                            "readings[{j}] has the same time with level {level}; one time, one level"
                        ),
                    ));
                }
                continue;
            }
            seen.insert(r.observed_at, (i, r.level_m));
        }
        Ok(seen
            .into_iter()
            .map(|(observed_at, (i, level_m))| {
                (
                    i,
                    Reading {
                        observed_at,
                        level_m,
                    },
                )
            })
            .collect())
    }
}

/// What `POST .../readings` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadingsResult {
    pub station: String,
    /// Readings in the batch (after folding repeats of one time).
    pub received: u64,
    /// Of those, new ones; the rest were stored already with the same level.
    pub inserted: u64,
    pub stage: FloodStage,
    #[serde(default)]
    pub level_m: Option<f64>,
    #[serde(default)]
    pub observed_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/stations/{id or code}/readings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadingList {
    pub readings: Vec<Reading>,
}

/// A gauge station as `GET /api/v1/stations` shows it, with its latest real reading and stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StationView {
    pub id: crate::id::StationId,
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub name_en: Option<String>,
    pub river: String,
    #[serde(default)]
    pub lon: Option<f64>,
    #[serde(default)]
    pub lat: Option<f64>,
    pub thresholds: Thresholds,
    #[serde(default)]
    pub level_m: Option<f64>,
    #[serde(default)]
    pub observed_at: Option<DateTime<Utc>>,
    pub stage: FloodStage,
    /// Observed time of the reading that entered the stage.
    #[serde(default)]
    pub stage_since: Option<DateTime<Utc>>,
    /// Whether the rapid-rise signal is on.
    #[serde(default)]
    pub rising: bool,
}

/// `GET /api/v1/stations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StationList {
    pub stations: Vec<StationView>,
}

/// Emergency response levels (应急响应), IV (blue, lowest) to I (red, highest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResponseLevel {
    IV,
    III,
    II,
    I,
}

crate::names::named!(ResponseLevel {
    IV => "IV",
    III => "III",
    II => "II",
    I => "I",
});

impl ResponseLevel {
    /// 蓝 blue, 黄 yellow, 橙 orange, 红 red.
    pub fn colour_zh(self) -> &'static str {
        match self {
            Self::IV => "蓝色",
            Self::III => "黄色",
            Self::II => "橙色",
            Self::I => "红色",
        }
    }
}

/// `POST /api/v1/response-level`: declare (`level`) or lift (`level: null`) a river's response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetResponseLevel {
    pub river: String,
    pub level: Option<ResponseLevel>,
    #[serde(default)]
    pub note: Option<String>,
}

/// A response level in force on a river (or, in history, a declaration or lifting).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResponseView {
    pub river: String,
    /// `None`: lifted.
    pub level: Option<ResponseLevel>,
    pub declared_by: crate::id::UserId,
    pub declared_by_name: String,
    pub declared_at: DateTime<Utc>,
    #[serde(default)]
    pub note: Option<String>,
}

/// One station in `GET /api/v1/flood-level`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FloodLevelStation {
    pub id: crate::id::StationId,
    pub code: String,
    pub name: String,
    pub river: String,
    #[serde(default)]
    pub level_m: Option<f64>,
    #[serde(default)]
    pub observed_at: Option<DateTime<Utc>>,
    pub stage: FloodStage,
    pub thresholds: Thresholds,
}

/// `GET /api/v1/flood-level`: every station's level and stage, and the responses in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FloodLevel {
    pub stations: Vec<FloodLevelStation>,
    pub responses: Vec<ResponseView>,
}

/// `POST /api/v1/drills`: replay a hydrograph for a station at `speed` seconds of series per second.
/// Without `series`, the server's own 2024 Dongshan hydrograph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartDrill {
    pub station: String,
    pub speed: f64,
    #[serde(default)]
    pub series: Option<Vec<Reading>>,
}

/// Fastest replay: one year of series per second.
pub const MAX_DRILL_SPEED: f64 = 365.0 * 86_400.0;

/// Where a drill is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillState {
    Running,
    /// Replayed to the end.
    Finished,
    /// Stopped by a duty lead (or by a restart of the server that ran it).
    Stopped,
}

crate::names::named!(DrillState {
    Running => "running",
    Finished => "finished",
    Stopped => "stopped",
});

/// A drill as `GET /api/v1/drills` shows it, with its own (drill) stage and level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillView {
    pub id: crate::id::DrillId,
    pub station: String,
    pub speed: f64,
    pub state: DrillState,
    pub started_by: crate::id::UserId,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    pub readings_total: u64,
    pub readings_fed: u64,
    pub stage: FloodStage,
    #[serde(default)]
    pub level_m: Option<f64>,
    #[serde(default)]
    pub observed_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/drills`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillList {
    pub drills: Vec<DrillView>,
}

/// One row of a readings CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvReading {
    /// The station's code (or id), as written.
    pub station: String,
    pub reading: Reading,
    /// The line in the file (the header is line 1).
    pub line: u64,
}

/// Why a readings CSV was refused: the line and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CsvError {
    pub line: u64,
    pub message: String,
}

/// The header a readings CSV must have.
pub const CSV_HEADER: [&str; 3] = ["station", "observed_at", "level_m"];

/// Reads a readings CSV (`station,observed_at,level_m`, RFC 3339 times, levels in metres), refusing
/// the whole file at its first bad line.
pub fn parse_csv<R: std::io::Read>(input: R) -> Result<Vec<CsvReading>, CsvError> {
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let header = rd.headers().map_err(|e| CsvError {
        line: 1,
        message: e.to_string(),
    })?;
    if header.iter().collect::<Vec<_>>() != CSV_HEADER {
        return Err(CsvError {
            line: 1,
            message: format!(
                "the header must be `{}`, not `{}`",
                CSV_HEADER.join(","),
                header.iter().collect::<Vec<_>>().join(",")
            ),
        });
    }
    let mut out = Vec::new();
    for record in rd.records() {
        let record = record.map_err(|e| CsvError {
            line: e.position().map_or(0, |p| p.line()),
            message: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |message: String| CsvError { line, message };
        let (Some(station), Some(at), Some(level)) = (record.get(0), record.get(1), record.get(2))
        else {
            return Err(bad("expected 3 fields: station,observed_at,level_m".into()));
        };
        if station.is_empty() {
            return Err(bad("station: empty".into()));
        }
        let observed_at = DateTime::parse_from_rfc3339(at)
            .map_err(|e| bad(format!("observed_at {at:?}: not an RFC 3339 time ({e})")))?
            .with_timezone(&Utc);
        let (earliest, latest) = observed_range();
        if observed_at < earliest || observed_at >= latest {
            return Err(bad(format!("observed_at {at}: a time from 1900 to 2199")));
        }
        let level_m: f64 = level
            .parse()
            .map_err(|_| bad(format!("level_m {level:?}: not a number")))?;
        if !level_m.is_finite() || !LEVEL_RANGE_M.contains(&level_m) {
            return Err(bad(format!(
                "level_m {level}: a level in metres from -100 to 1000"
            )));
        }
        out.push(CsvReading {
            station: station.to_owned(),
            reading: Reading {
                observed_at,
                level_m,
            },
            line,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const DONGSHAN: Thresholds = Thresholds {
        watch_m: 8.0,
        warning_m: 8.8,
        guarantee_m: 10.5,
    };

    fn series(levels: &[f64]) -> Vec<Reading> {
        let t0 = Utc.with_ymd_and_hms(2024, 6, 29, 0, 0, 0).unwrap();
        levels
            .iter()
            .enumerate()
            .map(|(i, l)| Reading {
                observed_at: t0 + Duration::hours(i as i64),
                level_m: *l,
            })
            .collect()
    }

    #[test]
    fn reaching_a_threshold_enters_its_stage() {
        use FloodStage::*;
        assert_eq!(DONGSHAN.reached(7.99), Normal);
        assert_eq!(DONGSHAN.reached(8.0), Watch);
        assert_eq!(DONGSHAN.reached(8.8), Warning);
        assert_eq!(DONGSHAN.reached(11.0), Guarantee);
        let r = StageRules::default();
        assert_eq!(next_stage(Normal, 8.8, &DONGSHAN, &r), Warning);
        assert_eq!(next_stage(Normal, 10.6, &DONGSHAN, &r), Guarantee);
    }

    #[test]
    fn a_hovering_level_does_not_flap() {
        use FloodStage::*;
        let r = StageRules::default();
        let s = series(&[8.7, 8.8, 8.79, 8.8, 8.75, 8.71, 8.8, 8.72]);
        let got = stages(Watch, &s, &DONGSHAN, &r);
        assert_eq!(
            got,
            vec![Watch, Warning, Warning, Warning, Warning, Warning, Warning, Warning]
        );
        // Without the margin it would have flapped four times.
        let none = StageRules { margin_m: 0.0 };
        let flaps = stages(Watch, &s, &DONGSHAN, &none)
            .windows(2)
            .filter(|w| w[0] != w[1])
            .count();
        assert!(flaps >= 4, "{flaps}");
    }

    #[test]
    fn the_stage_is_left_only_the_margin_below() {
        use FloodStage::*;
        let r = StageRules::default();
        assert_eq!(next_stage(Warning, 8.71, &DONGSHAN, &r), Warning);
        assert_eq!(next_stage(Warning, 8.70, &DONGSHAN, &r), Watch);
        // A fall through two stages at once leaves both.
        assert_eq!(next_stage(Warning, 7.5, &DONGSHAN, &r), Normal);
        // ... but not below what the level reaches.
        assert_eq!(next_stage(Guarantee, 8.9, &DONGSHAN, &r), Warning);
        assert_eq!(next_stage(Watch, 7.95, &DONGSHAN, &r), Watch);
        assert_eq!(next_stage(Watch, 7.90, &DONGSHAN, &r), Normal);
    }

    #[test]
    fn the_rise_is_over_the_window_before_each_reading() {
        let rules = RiseRules::default();
        let s = series(&[8.0, 8.1, 8.2, 8.35, 8.4, 8.3]);
        let rises: Vec<f64> = (0..s.len()).map(|i| rise_at(&s, i, rules.window)).collect();
        assert!((rises[3] - 0.35).abs() < 1e-9, "{rises:?}");
        assert!(rules.is_rapid(rises[3]));
        // 8.4 − min(8.1, 8.2, 8.35, 8.4) = 0.30: still rapid (the threshold is reached).
        assert!(rules.is_rapid(rises[4]), "{rises:?}");
        assert!(!rules.is_rapid(rises[5]), "{rises:?}");
        assert_eq!(rise_at(&s, 0, rules.window), 0.0);
        assert_eq!(rise_at(&s, 99, rules.window), 0.0);
    }

    #[test]
    fn thresholds_must_ascend() {
        assert!(DONGSHAN.validate("").is_ok());
        let bad = Thresholds {
            watch_m: 9.0,
            ..DONGSHAN
        };
        assert_eq!(bad.validate("").unwrap_err().field, "warning_m");
        let nan = Thresholds {
            guarantee_m: f64::NAN,
            ..DONGSHAN
        };
        assert_eq!(nan.validate("t").unwrap_err().field, "t.guarantee_m");
    }

    #[test]
    fn a_batch_is_sorted_folded_and_checked() {
        let s = series(&[8.0, 8.1]);
        let batch = ReadingsBatch {
            readings: vec![s[1], s[0], s[1]],
        };
        assert_eq!(batch.validate().unwrap(), vec![(1, s[0]), (0, s[1])]);
        let clash = ReadingsBatch {
            readings: vec![
                s[0],
                Reading {
                    level_m: 9.0,
                    ..s[0]
                },
            ],
        };
        let e = clash.validate().unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.field.as_str()),
            ("conflict", "readings[1].level_m")
        );
        let far = ReadingsBatch {
            readings: vec![Reading {
                level_m: 5000.0,
                ..s[0]
            }],
        };
        assert_eq!(far.validate().unwrap_err().field, "readings[0].level_m");
        assert_eq!(
            ReadingsBatch { readings: vec![] }
                .validate()
                .unwrap_err()
                .field,
            "readings"
        );
    }

    #[test]
    fn the_csv_is_read_with_line_numbers() {
        let ok = "station,observed_at,level_m\nDONGSHAN,2024-06-14T16:00:00Z,7.41\nDONGSHAN,2024-06-14T17:00:00Z,7.42\n";
        let rows = parse_csv(ok.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[1].reading.level_m, 7.42);
        let bad_time = "station,observed_at,level_m\nDONGSHAN,2024-06-14T16:00:00Z,7.41\nDONGSHAN,yesterday,7.42\n";
        assert_eq!(parse_csv(bad_time.as_bytes()).unwrap_err().line, 3);
        let bad_level = "station,observed_at,level_m\nDONGSHAN,2024-06-14T16:00:00Z,NaN\n";
        assert_eq!(parse_csv(bad_level.as_bytes()).unwrap_err().line, 2);
        let bad_header = "site,time,level\nDONGSHAN,2024-06-14T16:00:00Z,7.41\n";
        assert_eq!(parse_csv(bad_header.as_bytes()).unwrap_err().line, 1);
        let short = "station,observed_at,level_m\nDONGSHAN,2024-06-14T16:00:00Z\n";
        assert_eq!(parse_csv(short.as_bytes()).unwrap_err().line, 2);
    }

    #[test]
    fn response_levels_order_from_iv_to_i() {
        assert!(ResponseLevel::I > ResponseLevel::IV);
        assert_eq!(
            serde_json::to_value(ResponseLevel::III).unwrap(),
            serde_json::json!("III")
        );
        assert_eq!(ResponseLevel::parse("II"), Some(ResponseLevel::II));
    }
}
