//! The scheduled tasks: the loops that run on the server's runtime and read the wall clock. What
//! they call takes `now` as a parameter (`checks::run`, `drill::step`, `drill::end`), so this module,
//! the request handlers and start-up are where the server reads the clock (CI checks it).
//!
//! - [`checks`]: the time-based checks every `period` (overdue segments and dispatches, unaccepted
//!   reports, expiring lots, the stock sweep).
//! - [`drill`]: one drill's replay, feeding the readings whose time has come (`speed` seconds of
//!   series per second of wall time) until the series ends or the drill is stopped.

use crate::checks;
use crate::coverage::Policy;
use crate::db::flood as store;
use crate::db::{self, Db};
use crate::drill;
use crate::error::AppError;
use crate::flood;
use chrono::Utc;
use riverchief_shared::flood::DrillState;
use riverchief_shared::id::DrillId;
use std::time::{Duration, Instant};

/// Starts the scheduled check on the runtime, every `period`, against the clock. Failures are
/// logged and the next tick tries again.
pub fn checks(
    db: Db,
    policy: Policy,
    settings: checks::Settings,
    period: std::time::Duration,
    shutdown: crate::delivery::CancellationToken,
) {
    tokio::spawn(async move {
        // The first check one period after start, not at once: a server that starts and stops
        // (tests, one-off commands) writes nothing it was not asked to.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let outcome = db
                .run(move |conn| -> Result<checks::Report, AppError> {
                    Ok(checks::run(conn, &policy, &settings, Utc::now())?)
                })
                .await;
            if let Err(e) = outcome {
                tracing::warn!(error = %e, "scheduled flood-watch check failed");
            }
        }
    });
}

/// Starts replaying a drill (already stored, running) on the runtime.
pub fn drill(db: Db, policy: Policy, settings: flood::Settings, drill_id: DrillId) {
    tokio::spawn(async move {
        if let Err(e) = replay(&db, policy, settings, &drill_id).await {
            tracing::warn!(drill = %drill_id, error = %e, "drill replay failed; stopping it");
            let id = drill_id;
            let _ = db
                .run(move |conn| -> Result<bool, AppError> {
                    Ok(db::write_transaction(conn, |conn| {
                        drill::end(conn, &id, DrillState::Stopped, Utc::now())
                    })?)
                })
                .await;
        }
    });
}

async fn replay(
    db: &Db,
    policy: Policy,
    settings: flood::Settings,
    id: &DrillId,
) -> Result<(), AppError> {
    let key = *id;
    let (drill, station) = db
        .run(move |conn| -> Result<_, AppError> {
            let d = store::drill(conn, &key, true)?
                .ok_or_else(|| AppError::NotFound(format!("no drill {key}")))?;
            let s = store::station_by_id(conn, &d.station_id)?
                .ok_or_else(|| AppError::NotFound(format!("no station {}", d.station_id)))?;
            Ok((d, s))
        })
        .await?;
    let series = std::sync::Arc::new(drill.series);
    let Some(t0) = series.first().map(|r| r.observed_at) else {
        return Ok(());
    };
    let speed = drill.speed;
    let started = Instant::now();
    let mut fed = usize::try_from(drill.readings_fed).unwrap_or(0);
    loop {
        let series_ms = started.elapsed().as_secs_f64() * speed * 1000.0;
        let due = t0 + chrono::Duration::milliseconds(series_ms.min(1e15) as i64);
        let until = series.partition_point(|r| r.observed_at <= due).max(fed);
        if until > fed {
            let (s, st, key) = (series.clone(), station.clone(), *id);
            let outcome = db
                .run(move |conn| {
                    drill::step(
                        conn,
                        &policy,
                        &settings,
                        &key,
                        &st,
                        &s,
                        (fed, until),
                        Utc::now(),
                    )
                })
                .await?;
            match outcome {
                drill::Step::Fed(n) => fed = n,
                drill::Step::Ended => return Ok(()),
            }
        }
        // Sleep until the next reading is due, but look at least once a second (a stop).
        let wait = series.get(fed).map_or(0.0, |next| {
            let offset = (next.observed_at - t0).num_milliseconds() as f64 / 1000.0 / speed;
            offset - started.elapsed().as_secs_f64()
        });
        tokio::time::sleep(Duration::from_secs_f64(wait.clamp(0.01, 1.0))).await;
    }
}
