//! A patroller's own figures for a period (`riverchief stats`): what they recorded on this phone,
//! read from the local store, so they are there with no signal. Patrols walked on another phone are
//! not counted here (the server's report has everything); what this phone recorded is counted
//! whether or not it has been sent yet.
//!
//! A patrol is in the period when it started in it (Asia/Shanghai days). Its hours run from its
//! start to its finish (an unfinished patrol counts as open, without hours); its kilometres are the
//! geodesic length of its recorded fixes. `long_enough` counts the finished patrols that meet the
//! check minimums by time and distance (`shared::report::CheckRules`); whether each covered its
//! segments, and whether a duty lead accepted a flagged one, the server decides.

use crate::client::Client;
use crate::error::Result;
use crate::store;
use chrono::{DateTime, Duration, Utc};
use riverchief_shared::domain::IssueCategory;
use riverchief_shared::geo::distance_m;
use riverchief_shared::report::{local_day, CheckRules, Period};
use riverchief_shared::sync::IssueReport;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What one patroller recorded on this phone in a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatrollerStats {
    pub period: Period,
    /// Patrols started in the period and finished.
    pub patrols: u64,
    /// Patrols started in the period and not yet finished.
    pub open: u64,
    /// Finished patrols that meet the check minimums by time and distance.
    pub long_enough: u64,
    pub hours: f64,
    pub km: f64,
    /// Asia/Shanghai days with at least one patrol.
    pub days: u64,
    pub issues: u64,
    pub critical: u64,
    /// Issues by category (wire names), those found at least once.
    pub by_category: BTreeMap<String, u64>,
    /// Issues reported during one of the period's patrols, per finished patrol.
    pub issues_per_patrol: f64,
}

impl Client {
    /// The figures of what this phone recorded in `period`.
    pub async fn stats(&self, period: Period, rules: CheckRules) -> Result<PatrollerStats> {
        self.db(move |conn| {
            let (from, to) = (store::time(period.from), store::time(period.to));
            let mut patrols = Vec::new();
            {
                let mut stmt = conn.prepare(
                    "SELECT id, started_at, ended_at FROM local_patrols
                     WHERE started_at >= ?1 AND started_at < ?2 ORDER BY started_at",
                )?;
                let rows = stmt.query_map([&from, &to], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })?;
                for row in rows {
                    let (id, started, ended) = row?;
                    patrols.push((
                        id,
                        store::parse_time(&started)?,
                        store::parse_time_opt(ended)?,
                    ));
                }
            }
            let mut points = conn.prepare(
                "SELECT lon, lat FROM local_track_points WHERE patrol_id = ?1 ORDER BY n",
            )?;
            let (mut finished, mut open, mut long_enough) = (0u64, 0u64, 0u64);
            let (mut hours, mut km) = (0.0, 0.0);
            let mut days = BTreeSet::new();
            let mut ids = BTreeSet::new();
            for (id, started, ended) in &patrols {
                let fixes: Vec<[f64; 2]> = points
                    .query_map([id], |r| Ok([r.get::<_, f64>(0)?, r.get::<_, f64>(1)?]))?
                    .collect::<rusqlite::Result<_>>()?;
                let metres: f64 = fixes.windows(2).map(|w| distance_m(w[0], w[1])).sum();
                km += metres / 1000.0;
                days.insert(local_day(*started));
                ids.insert(id.clone());
                match ended {
                    None => open += 1,
                    Some(end) => {
                        finished += 1;
                        hours += duration_hours(*started, *end);
                        if *end - *started >= Duration::minutes(rules.min_minutes)
                            && metres >= rules.min_walked_m
                        {
                            long_enough += 1;
                        }
                        // A patrol past midnight is on the days it spans.
                        let mut d = local_day(*started);
                        while d < local_day(*end) {
                            d += Duration::days(1);
                            days.insert(d);
                        }
                    }
                }
            }
            let mut by_category = BTreeMap::new();
            let (mut issues, mut critical, mut on_patrols) = (0u64, 0u64, 0u64);
            let mut stmt = conn.prepare(
                "SELECT data FROM local_issues WHERE reported_at >= ?1 AND reported_at < ?2",
            )?;
            for data in stmt.query_map([&from, &to], |r| r.get::<_, String>(0))? {
                let report: IssueReport = serde_json::from_str(&data?)?;
                issues += 1;
                if riverchief_shared::domain::is_critical(
                    report.category,
                    report.severity,
                    report.outflow,
                ) {
                    critical += 1;
                }
                if report
                    .patrol_id
                    .is_some_and(|p| ids.contains(&p.to_string()))
                {
                    on_patrols += 1;
                }
                *by_category
                    .entry(category_name(report.category))
                    .or_insert(0) += 1;
            }
            Ok(PatrollerStats {
                period,
                patrols: finished,
                open,
                long_enough,
                hours,
                km,
                days: days.len() as u64,
                issues,
                critical,
                by_category,
                issues_per_patrol: if finished == 0 {
                    0.0
                } else {
                    on_patrols as f64 / finished as f64
                },
            })
        })
        .await
    }
}

fn duration_hours(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_seconds().max(0) as f64 / 3600.0
}

fn category_name(c: IssueCategory) -> String {
    c.as_str().to_owned()
}
