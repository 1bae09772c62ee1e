//! The flood-watch commands of the CLI: `riverchief alerts`, `riverchief readings import FILE.csv`,
//! and the receipt line under a critical issue in `riverchief issue list`.

use crate::{Client, ClientError, IssueSummary};
use anyhow::{anyhow, Context};
use riverchief_shared::alert::{Alert, AlertKind, AlertState};
use riverchief_shared::flood::{parse_csv, Reading};
use serde::Serialize;
use std::io::Write;
use std::path::Path;

macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `riverchief alerts`: the mirrored alerts, newest first (active ones unless `all`).
pub(crate) async fn alerts(client: &Client, all: bool, json: bool) -> anyhow::Result<()> {
    let alerts: Vec<Alert> = client
        .alerts()
        .await?
        .into_iter()
        .filter(|a| all || a.state != AlertState::Resolved)
        .collect();
    if json {
        say!("{}", serde_json::to_string_pretty(&alerts)?);
        return Ok(());
    }
    if alerts.is_empty() {
        say!("no alerts (sync to fetch the latest)");
    }
    for a in &alerts {
        let ack = match (&a.acknowledged_by_name, a.acknowledged_at) {
            (Some(name), Some(at)) => format!(
                "  acknowledged by {name} at {}",
                riverchief_shared::domain::local_minutes(at)
            ),
            (None, Some(at)) => format!(
                "  acknowledged at {}",
                riverchief_shared::domain::local_minutes(at)
            ),
            _ => String::new(),
        };
        // The message goes last: Chinese characters are two columns wide.
        say!(
            "{}  {:<17} {:<12} {:<8}{}{}  {}",
            riverchief_shared::domain::local_minutes(a.raised_at),
            a.kind.as_str(),
            a.state.as_str(),
            a.level.as_str(),
            if a.drill { "  演练/DRILL" } else { "" },
            ack,
            a.message
        );
    }
    Ok(())
}

/// The receipt of a critical issue this user reported: who acknowledged its alert and when.
pub(crate) fn receipt(
    alerts: &[Alert],
    issue: &IssueSummary,
    me: Option<riverchief_shared::id::UserId>,
) -> Option<String> {
    let mine = issue.local.is_some()
        || issue
            .server
            .as_ref()
            .is_some_and(|s| Some(s.reporter) == me);
    if !issue.critical || !mine {
        return None;
    }
    let alert = alerts
        .iter()
        .find(|a| a.kind == AlertKind::CriticalHazard && a.issue_id == Some(issue.id))?;
    Some(match (&alert.acknowledged_by_name, alert.acknowledged_at) {
        (Some(name), Some(at)) => format!(
            "receipt: acknowledged by {name} at {}",
            riverchief_shared::domain::local_minutes(at)
        ),
        (None, Some(at)) => format!(
            "receipt: acknowledged at {}",
            riverchief_shared::domain::local_minutes(at)
        ),
        _ => "receipt: alert raised, not yet acknowledged".to_owned(),
    })
}

#[derive(Serialize)]
struct StationImport {
    station: String,
    readings: usize,
    inserted: u64,
    stage: String,
    level_m: Option<f64>,
}

/// `riverchief readings import FILE.csv`: reads the whole file first (a bad line stops it before
/// anything is sent), then posts each station's readings in batches of `batch`. A refused batch
/// stops the import, naming the CSV line of the field the server named; batches sent before it
/// stay (sending the file again skips them).
pub(crate) async fn import_readings(
    client: &Client,
    file: &Path,
    batch: usize,
    json: bool,
) -> anyhow::Result<()> {
    let batch = batch.clamp(1, riverchief_shared::flood::MAX_READINGS_PER_BATCH);
    let name = file.display().to_string();
    let f = std::fs::File::open(file).with_context(|| format!("opening {name}"))?;
    let rows = parse_csv(std::io::BufReader::new(f)).map_err(|e| anyhow!("{name}: {e}"))?;
    let mut stations: Vec<(String, Vec<(u64, Reading)>)> = Vec::new();
    for r in rows {
        match stations.iter_mut().find(|(s, _)| *s == r.station) {
            Some((_, list)) => list.push((r.line, r.reading)),
            None => stations.push((r.station, vec![(r.line, r.reading)])),
        }
    }
    let mut out = Vec::new();
    for (station, rows) in &stations {
        let mut last = None;
        let mut inserted = 0;
        for chunk in rows.chunks(batch) {
            let readings = chunk.iter().map(|r| r.1).collect();
            match client.post_readings(station, readings).await {
                Ok(r) => {
                    inserted += r.inserted;
                    last = Some(r);
                }
                Err(ClientError::Server { status, body }) => {
                    let line = body
                        .field
                        .as_deref()
                        .and_then(|f| f.strip_prefix("readings["))
                        .and_then(|f| f.split(']').next())
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| chunk.get(i))
                        .map(|r| r.0);
                    let at = line.map_or_else(String::new, |l| format!(" line {l}:"));
                    return Err(anyhow!(
                        "{name}:{at} the server refused the batch for {station} ({status} {}): {}",
                        body.code,
                        body.message
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        out.push(StationImport {
            station: station.clone(),
            readings: rows.len(),
            inserted,
            stage: last
                .as_ref()
                .map_or_else(|| "normal".to_owned(), |r| r.stage.as_str().to_owned()),
            level_m: last.and_then(|r| r.level_m),
        });
    }
    if json {
        say!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for s in &out {
            say!(
                "{}: {} readings sent, {} new; stage {}, level {}",
                s.station,
                s.readings,
                s.inserted,
                s.stage,
                s.level_m.map_or("-".to_owned(), |l| format!("{l:.2} m"))
            );
        }
    }
    Ok(())
}
