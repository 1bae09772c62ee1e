//! The fold of a batch of new readings into a station's series: what to write and which alert
//! changes to announce. Pure: the caller reads the stored series around the batch and the alerts
//! open on it, and writes what comes back.
//!
//! New readings are folded in time order from the stored reading just before the earliest new one,
//! so a late batch is placed where it belongs: every stored reading after it gets its stage
//! ([`next_stage`], with hysteresis) and rise ([`rise_at`]) again, and is rewritten when either
//! changed. A stage change at a reading that is new, or whose stage the batch changed, is announced
//! (the open stage alert resolved, a new one raised); so a replay of what is stored announces
//! nothing. The rapid rise coming on or going off at a new reading is announced. Last, a late batch
//! may have moved history under alerts already announced: whatever makes the open alerts say what
//! the series now says is announced too.

use super::{next_stage, rise_at, Reading, RiseRules, StageRules, Thresholds, EPS};
use crate::coverage::FloodStage;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// A reading with what is derived from it: the stage after it and the rise at it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StagedReading {
    pub reading: Reading,
    pub stage: FloodStage,
    pub rise_m: f64,
}

/// The rules a station's series is folded by: its thresholds, the hysteresis and the rapid rise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FoldRules<'a> {
    pub thresholds: &'a Thresholds,
    pub stage: StageRules,
    pub rise: RiseRules,
}

/// The stored series around a batch, and the alerts open on it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Around<'a> {
    /// The stored reading just before the batch's first new reading: the stage and rise signal the
    /// fold starts from (`None`: the series starts in the batch, at `Normal`).
    pub before: Option<StagedReading>,
    /// The stored readings in the rise window before the first new reading (`[t - window, t)`),
    /// oldest first.
    pub window: &'a [Reading],
    /// The stored readings from the first new reading on, oldest first: derived again.
    pub after: &'a [StagedReading],
    /// The stage the open stage alert announces (`None`: none is open).
    pub announced: Option<FloodStage>,
    /// Whether a rapid-rise alert is open.
    pub rise_open: bool,
}

/// How a folded reading is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// A new reading.
    Insert,
    /// A stored reading whose derived stage or rise changed.
    Update,
}

/// One reading to write, with its stage after it and its rise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowWrite {
    pub row: StagedReading,
    pub write: Write,
}

/// An alert change the fold decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Announcement {
    /// The stage went from `from` to `to` at `at`: the open stage alert is resolved and this one
    /// raised.
    Stage {
        from: FloodStage,
        to: FloodStage,
        at: Reading,
    },
    /// The rapid rise is on at this reading and no rise alert is open: one is raised.
    RiseOn(StagedReading),
    /// The rapid rise is off: the open rise alert is resolved.
    RiseOff,
}

/// What [`fold_batch`] decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    /// The readings to write, in time order (a stored reading whose derived values stand is not
    /// here).
    pub writes: Vec<RowWrite>,
    /// The alert changes, in the order they are made.
    pub announcements: Vec<Announcement>,
    /// The stage after the last reading.
    pub stage: FloodStage,
    /// The reading that entered `stage`, when it is in the folded range (`None`: the stage's run
    /// began before the batch's first new reading).
    pub entered: Option<Reading>,
    /// The series' last reading, derived.
    pub last: StagedReading,
    /// Whether the rapid rise is on at the last reading.
    pub rising: bool,
}

impl Folded {
    /// How many new readings are written.
    pub fn inserted(&self) -> usize {
        self.writes
            .iter()
            .filter(|w| w.write == Write::Insert)
            .count()
    }
}

/// A reading of the batch stored at its time with another level: one time, one level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conflict {
    /// The reading's index in the request.
    pub index: usize,
    pub observed_at: DateTime<Utc>,
    /// The level stored at that time.
    pub stored: f64,
}

/// The readings of `batch` (each with its index in the request) not stored yet, given the levels
/// stored at the batch's times. A stored time with the same level is a replay, skipped; with another
/// level the batch is refused.
pub fn unstored(
    batch: &[(usize, Reading)],
    stored: &BTreeMap<DateTime<Utc>, f64>,
) -> Result<Vec<Reading>, Conflict> {
    let mut fresh = Vec::new();
    for (index, r) in batch {
        match stored.get(&r.observed_at) {
            Some(level) if *level != r.level_m => {
                return Err(Conflict {
                    index: *index,
                    observed_at: r.observed_at,
                    stored: *level,
                })
            }
            Some(_) => {}
            None => fresh.push(*r),
        }
    }
    Ok(fresh)
}

/// Folds `fresh` (new readings, sorted by time, none at a stored time) into the series `around`
/// describes. `None` when there is nothing new: nothing to write, nothing to announce.
pub fn fold_batch(around: &Around<'_>, fresh: &[Reading], rules: &FoldRules<'_>) -> Option<Folded> {
    if fresh.is_empty() {
        return None;
    }
    // The stored tail and the new readings, in time order.
    let mut merged: Vec<(Reading, Option<StagedReading>)> = around
        .after
        .iter()
        .map(|s| (s.reading, Some(*s)))
        .chain(fresh.iter().map(|r| (*r, None)))
        .collect();
    merged.sort_by_key(|(r, _)| r.observed_at);
    let mut series: Vec<Reading> = around.window.to_vec();
    let offset = series.len();
    series.extend(merged.iter().map(|(r, _)| *r));

    let mut stage = around.before.map_or(FloodStage::Normal, |p| p.stage);
    let mut rising = around.before.is_some_and(|p| rules.rise.is_rapid(p.rise_m));
    let mut announced = around.announced;
    let mut rise_open = around.rise_open;
    let mut entered: Option<Reading> = None;
    let mut writes = Vec::new();
    let mut announcements = Vec::new();
    let mut last = None;
    for (k, (reading, old)) in merged.iter().enumerate() {
        let next = next_stage(stage, reading.level_m, rules.thresholds, &rules.stage);
        let rise_m = rise_at(&series, offset + k, rules.rise.window);
        let now_rising = rules.rise.is_rapid(rise_m);
        let row = StagedReading {
            reading: *reading,
            stage: next,
            rise_m,
        };
        let (is_new, stage_moved) = match old {
            None => {
                writes.push(RowWrite {
                    row,
                    write: Write::Insert,
                });
                (true, true)
            }
            Some(o) if o.stage != next || (o.rise_m - rise_m).abs() > EPS => {
                writes.push(RowWrite {
                    row,
                    write: Write::Update,
                });
                (false, o.stage != next)
            }
            Some(_) => (false, false),
        };
        if next != stage {
            entered = Some(*reading);
            if is_new || stage_moved {
                announcements.push(Announcement::Stage {
                    from: stage,
                    to: next,
                    at: *reading,
                });
                announced = Some(next);
            }
        }
        if now_rising != rising && is_new {
            if now_rising && !rise_open {
                announcements.push(Announcement::RiseOn(row));
                rise_open = true;
            } else if !now_rising && rise_open {
                announcements.push(Announcement::RiseOff);
                rise_open = false;
            }
        }
        stage = next;
        rising = now_rising;
        last = Some(row);
    }
    let last = last?;
    // The open alerts made to say what the series now says.
    let shown = announced.unwrap_or(FloodStage::Normal);
    if shown != stage {
        announcements.push(Announcement::Stage {
            from: shown,
            to: stage,
            at: entered.unwrap_or(last.reading),
        });
    }
    if rising && !rise_open {
        announcements.push(Announcement::RiseOn(last));
    } else if !rising && rise_open {
        announcements.push(Announcement::RiseOff);
    }
    Some(Folded {
        writes,
        announcements,
        stage,
        entered,
        last,
        rising,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use FloodStage::*;

    const DONGSHAN: Thresholds = Thresholds {
        watch_m: 8.0,
        warning_m: 8.8,
        guarantee_m: 10.5,
    };

    fn rules() -> FoldRules<'static> {
        FoldRules {
            thresholds: &DONGSHAN,
            stage: StageRules::default(),
            rise: RiseRules::default(),
        }
    }

    fn at(hour: i64, level_m: f64) -> Reading {
        Reading {
            observed_at: Utc.with_ymd_and_hms(2024, 6, 29, 0, 0, 0).unwrap()
                + Duration::hours(hour),
            level_m,
        }
    }

    /// A stored series, as the caller keeps it: every reading folded and written, the alerts it
    /// announced open or resolved.
    #[derive(Default)]
    struct Store {
        rows: Vec<StagedReading>,
        announced: Option<FloodStage>,
        rise_open: bool,
    }

    impl Store {
        fn levels(&self) -> BTreeMap<DateTime<Utc>, f64> {
            self.rows
                .iter()
                .map(|r| (r.reading.observed_at, r.reading.level_m))
                .collect()
        }

        /// What the caller does: skips what is stored, reads around the first new reading, folds,
        /// and applies the writes and announcements.
        fn ingest(&mut self, batch: &[Reading]) -> Option<Folded> {
            let indexed: Vec<(usize, Reading)> = batch.iter().copied().enumerate().collect();
            let fresh = unstored(&indexed, &self.levels()).unwrap();
            let first = fresh.first()?.observed_at;
            let window: Vec<Reading> = self
                .rows
                .iter()
                .map(|r| r.reading)
                .filter(|r| r.observed_at >= first - rules().rise.window && r.observed_at < first)
                .collect();
            let before = self
                .rows
                .iter()
                .rev()
                .find(|r| r.reading.observed_at < first)
                .copied();
            let after: Vec<StagedReading> = self
                .rows
                .iter()
                .filter(|r| r.reading.observed_at >= first)
                .copied()
                .collect();
            let around = Around {
                before,
                window: &window,
                after: &after,
                announced: self.announced,
                rise_open: self.rise_open,
            };
            let folded = fold_batch(&around, &fresh, &rules())?;
            for w in &folded.writes {
                match w.write {
                    Write::Insert => self.rows.push(w.row),
                    Write::Update => {
                        let stored = self
                            .rows
                            .iter_mut()
                            .find(|r| r.reading.observed_at == w.row.reading.observed_at)
                            .unwrap();
                        *stored = w.row;
                    }
                }
            }
            self.rows.sort_by_key(|r| r.reading.observed_at);
            for a in &folded.announcements {
                match a {
                    Announcement::Stage { to, .. } => self.announced = Some(*to),
                    Announcement::RiseOn(_) => self.rise_open = true,
                    Announcement::RiseOff => self.rise_open = false,
                }
            }
            Some(folded)
        }

        fn stages(&self) -> Vec<FloodStage> {
            self.rows.iter().map(|r| r.stage).collect()
        }
    }

    fn stage_changes(f: &Folded) -> Vec<(FloodStage, FloodStage)> {
        f.announcements
            .iter()
            .filter_map(|a| match a {
                Announcement::Stage { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_series_from_nothing_is_inserted_and_each_change_announced() {
        let mut s = Store::default();
        let f = s
            .ingest(&[at(0, 7.5), at(1, 8.1), at(2, 8.9), at(3, 8.85)])
            .unwrap();
        assert_eq!(f.inserted(), 4);
        assert!(f.writes.iter().all(|w| w.write == Write::Insert));
        assert_eq!(stage_changes(&f), vec![(Normal, Watch), (Watch, Warning)]);
        assert_eq!(f.stage, Warning);
        assert_eq!(f.entered, Some(at(2, 8.9)));
        assert_eq!(f.last.reading, at(3, 8.85));
        // 7.5 → 8.1 within the hour: the rapid rise comes on at 01:00 and stays on, raised once.
        assert!(f.rising);
        assert_eq!(
            f.announcements
                .iter()
                .filter(|a| matches!(a, Announcement::RiseOn(_)))
                .count(),
            1
        );
    }

    #[test]
    fn hysteresis_holds_the_stage_until_the_level_falls_the_margin() {
        let mut s = Store::default();
        let f = s
            .ingest(&[
                at(0, 8.7),
                at(1, 8.8),
                at(2, 8.79),
                at(3, 8.75),
                at(4, 8.71),
            ])
            .unwrap();
        assert_eq!(s.stages(), vec![Watch, Warning, Warning, Warning, Warning]);
        assert_eq!(stage_changes(&f), vec![(Normal, Watch), (Watch, Warning)]);
        // 0.10 m below the warning threshold: back to watch, announced once.
        let f = s.ingest(&[at(5, 8.70)]).unwrap();
        assert_eq!(f.stage, Watch);
        assert_eq!(stage_changes(&f), vec![(Warning, Watch)]);
        assert_eq!(f.entered, Some(at(5, 8.70)));
    }

    #[test]
    fn a_replayed_batch_writes_and_announces_nothing() {
        let batch = [at(0, 7.5), at(1, 8.1), at(2, 8.9), at(3, 9.6), at(4, 8.0)];
        let mut s = Store::default();
        assert!(s.ingest(&batch).is_some());
        let stored = s.stages();
        assert!(s.ingest(&batch).is_none());
        assert!(s.ingest(&batch[1..3]).is_none());
        assert_eq!(s.stages(), stored);
        // Folding nothing new decides nothing, whatever is around.
        let around = Around {
            before: s.rows.last().copied(),
            ..Around::default()
        };
        assert_eq!(fold_batch(&around, &[], &rules()), None);
    }

    #[test]
    fn another_level_at_a_stored_time_is_a_conflict() {
        let mut s = Store::default();
        s.ingest(&[at(0, 7.5), at(1, 8.1)]).unwrap();
        let batch = [(0, at(0, 7.5)), (1, at(1, 8.2)), (2, at(2, 8.3))];
        assert_eq!(
            unstored(&batch, &s.levels()),
            Err(Conflict {
                index: 1,
                observed_at: at(1, 0.0).observed_at,
                stored: 8.1,
            })
        );
        assert_eq!(unstored(&batch[2..], &s.levels()), Ok(vec![at(2, 8.3)]));
    }

    #[test]
    fn a_late_reading_re_derives_the_stages_after_it() {
        // Four readings arrive first: all normal, no stage to announce.
        let mut s = Store::default();
        let f = s
            .ingest(&[at(0, 7.0), at(2, 7.95), at(3, 7.92), at(4, 7.5)])
            .unwrap();
        assert_eq!(s.stages(), vec![Normal; 4]);
        assert!(stage_changes(&f).is_empty());
        // A late reading at 01:00 reaches watch: 02:00 and 03:00 stay in watch (within the margin),
        // 04:00 falls back. The stored ones whose stage moved are rewritten, and each change is
        // announced where it now is.
        let f = s.ingest(&[at(1, 8.0)]).unwrap();
        assert_eq!(s.stages(), vec![Normal, Watch, Watch, Watch, Normal]);
        assert_eq!(f.inserted(), 1);
        let updated: Vec<Reading> = f
            .writes
            .iter()
            .filter(|w| w.write == Write::Update)
            .map(|w| w.row.reading)
            .collect();
        assert_eq!(updated, vec![at(2, 7.95), at(3, 7.92)]);
        assert_eq!(stage_changes(&f), vec![(Normal, Watch), (Watch, Normal)]);
        assert_eq!(f.stage, Normal);
        assert_eq!(f.entered, Some(at(4, 7.5)));
        assert_eq!(s.announced, Some(Normal));
    }

    #[test]
    fn a_late_reading_under_an_announced_stage_makes_the_alert_say_what_the_series_says() {
        // Stored: watch since 02:00, announced.
        let mut s = Store::default();
        s.ingest(&[at(0, 7.0), at(2, 8.2), at(3, 8.1)]).unwrap();
        assert_eq!(s.announced, Some(Watch));
        // A late 01:00 at 8.9 puts warning first; 8.2 at 02:00 is 0.10 m or more below warning's
        // threshold but not below watch's: back to watch at 02:00, where the stored stage already
        // was. The open alert announces watch entered at 02:00 again, from warning.
        let f = s.ingest(&[at(1, 8.9)]).unwrap();
        assert_eq!(s.stages(), vec![Normal, Warning, Watch, Watch]);
        assert_eq!(stage_changes(&f), vec![(Normal, Warning), (Warning, Watch)]);
        assert_eq!(f.stage, Watch);
        assert_eq!(s.announced, Some(Watch));
        // Replaying it now changes nothing.
        assert!(s.ingest(&[at(1, 8.9)]).is_none());
    }

    #[test]
    fn a_rise_that_ends_is_resolved_once() {
        let mut s = Store::default();
        let f = s.ingest(&[at(0, 7.0), at(1, 7.4)]).unwrap();
        assert!(f.rising);
        assert!(s.rise_open);
        let f = s.ingest(&[at(5, 7.3)]).unwrap();
        assert!(!f.rising);
        assert_eq!(f.announcements, vec![Announcement::RiseOff]);
        assert!(!s.rise_open);
        let f = s.ingest(&[at(6, 7.2)]).unwrap();
        assert!(f.announcements.is_empty());
    }
}
