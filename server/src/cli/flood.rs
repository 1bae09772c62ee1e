//! The flood-watch commands: `station add`, `station list`, `readings import FILE.csv`, and the
//! flood-watch flags of `serve`.

use super::{open_db, say, DataDir};
use crate::db::{self, flood as store};
use crate::flood::{IngestError, Settings};
use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use riverchief_shared::flood::{parse_csv, Reading, ReadingsBatch, Thresholds};
use std::path::PathBuf;

/// The flood watch's flags of `serve`.
#[derive(Debug, Args)]
pub(super) struct FloodArgs {
    /// How far below a threshold (metres) the level must fall before its stage is left.
    #[arg(long, env = "RIVERCHIEF_STAGE_MARGIN_M", default_value_t = 0.10)]
    stage_margin_m: f64,
    /// A rise of at least this many metres within the window is a rapid rise.
    #[arg(long, env = "RIVERCHIEF_RAPID_RISE_M", default_value_t = 0.30)]
    rapid_rise_m: f64,
    /// The rapid-rise window, in minutes.
    #[arg(
        long,
        env = "RIVERCHIEF_RAPID_RISE_WINDOW_MINUTES",
        default_value_t = 180
    )]
    rapid_rise_window_minutes: i64,
    /// Seconds between scheduled checks (overdue segments, expiring lots, stock); 0 = never.
    #[arg(long, env = "RIVERCHIEF_CHECK_PERIOD_SECONDS", default_value_t = 30)]
    check_period_seconds: u64,
    /// Lots whose date falls within this many days raise `lot_expiring`.
    #[arg(long, env = "RIVERCHIEF_EXPIRING_WITHIN_DAYS", default_value_t = 60)]
    expiring_within_days: i64,
}

impl FloodArgs {
    pub(super) fn settings(&self) -> Settings {
        let mut s = Settings::default();
        if self.stage_margin_m.is_finite() && self.stage_margin_m >= 0.0 {
            s.stage.margin_m = self.stage_margin_m;
        }
        if self.rapid_rise_m.is_finite() && self.rapid_rise_m > 0.0 {
            s.rise.threshold_m = self.rapid_rise_m;
        }
        if self.rapid_rise_window_minutes > 0 {
            s.rise.window = chrono::Duration::minutes(self.rapid_rise_window_minutes);
        }
        s
    }

    /// The scheduled check's period and lot-expiry window, from these flags.
    pub(super) fn apply_to_checks(&self, c: &mut crate::checks::Settings) {
        c.period = (self.check_period_seconds > 0)
            .then(|| std::time::Duration::from_secs(self.check_period_seconds));
        c.expiring_within_days = self.expiring_within_days.max(0);
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum StationCommand {
    /// Add a gauge station with its watch (设防), warning (警戒) and guarantee (保证) levels.
    Add(StationAddArgs),
    /// List the stations with their latest real level and stage.
    List(DataDir),
}

#[derive(Debug, Args)]
pub(super) struct StationAddArgs {
    /// A short code, e.g. DONGSHAN (segments name their governing station by it).
    #[arg(long)]
    code: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    name_en: Option<String>,
    #[arg(long)]
    river: String,
    #[arg(long)]
    lon: Option<f64>,
    #[arg(long)]
    lat: Option<f64>,
    /// The levels' datum, e.g. 吴淞 Wusong.
    #[arg(long)]
    datum: Option<String>,
    #[arg(long)]
    watch: f64,
    #[arg(long)]
    warning: f64,
    #[arg(long)]
    guarantee: f64,
    #[command(flatten)]
    data: DataDir,
}

#[derive(Debug, Subcommand)]
pub(super) enum ReadingsCommand {
    /// Import a CSV of readings (`station,observed_at,level_m`) as real readings, in one
    /// transaction: a bad line refuses the whole file. Rows already stored are skipped.
    Import(ReadingsImportArgs),
}

#[derive(Debug, Args)]
pub(super) struct ReadingsImportArgs {
    file: PathBuf,
    #[command(flatten)]
    data: DataDir,
}

pub(super) fn station(c: StationCommand) -> anyhow::Result<()> {
    match c {
        StationCommand::Add(a) => station_add(a),
        StationCommand::List(d) => station_list(d),
    }
}

fn station_add(a: StationAddArgs) -> anyhow::Result<()> {
    let code = a.code.trim().to_owned();
    if code.is_empty() || a.name.trim().is_empty() || a.river.trim().is_empty() {
        bail!("--code, --name and --river must not be empty");
    }
    let thresholds = Thresholds {
        watch_m: a.watch,
        warning_m: a.warning,
        guarantee_m: a.guarantee,
    };
    thresholds.validate("").map_err(|e| anyhow!("{e}"))?;
    for (name, v, range) in [("--lon", a.lon, 180.0), ("--lat", a.lat, 90.0)] {
        if v.is_some_and(|v| !v.is_finite() || v.abs() > range) {
            bail!("{name} is out of range");
        }
    }
    let (db, _) = open_db(&a.data)?;
    let mut conn = db.conn()?;
    let station = store::Station {
        id: riverchief_shared::id::StationId::new(),
        code: code.clone(),
        name: a.name.trim().to_owned(),
        name_en: a.name_en,
        river: a.river.trim().to_owned(),
        lon: a.lon,
        lat: a.lat,
        datum: a.datum,
        thresholds,
    };
    db::write_transaction(&mut conn, |conn| -> anyhow::Result<()> {
        if store::station(conn, &code)?.is_some() {
            bail!("a station with code {code:?} already exists");
        }
        store::insert_station(conn, &station)?;
        Ok(())
    })?;
    say(&format!("created station {code} ({})", station.id))
}

fn station_list(d: DataDir) -> anyhow::Result<()> {
    let (db, _) = open_db(&d)?;
    let mut conn = db.conn()?;
    for s in store::all_stations(&mut conn)? {
        let v = store::view(&mut conn, &s)?;
        say(&format!(
            "{}  {}  {}  watch {} warning {} guarantee {}  level {}  stage {}",
            v.code,
            v.name,
            v.river,
            v.thresholds.watch_m,
            v.thresholds.warning_m,
            v.thresholds.guarantee_m,
            v.level_m.map_or("-".to_owned(), |l| format!("{l:.2} m")),
            v.stage.as_str()
        ))?;
    }
    Ok(())
}

pub(super) fn readings(c: ReadingsCommand) -> anyhow::Result<()> {
    let ReadingsCommand::Import(a) = c;
    let file =
        std::fs::File::open(&a.file).with_context(|| format!("opening {}", a.file.display()))?;
    let rows = parse_csv(std::io::BufReader::new(file))
        .map_err(|e| anyhow!("{}: {e}", a.file.display()))?;
    // Grouped by station, keeping each row's line for errors.
    let mut by_station: std::collections::BTreeMap<String, Vec<(u64, Reading)>> =
        Default::default();
    for r in rows {
        by_station
            .entry(r.station)
            .or_default()
            .push((r.line, r.reading));
    }
    let (db, _) = open_db(&a.data)?;
    let mut conn = db.conn()?;
    let settings = Settings::default();
    let policy = crate::coverage::Policy::default();
    let path = a.file.display().to_string();
    let report = db::write_transaction(&mut conn, |conn| -> anyhow::Result<Vec<String>> {
        let mut report = Vec::new();
        for (key, rows) in &by_station {
            let Some(station) = store::station(conn, key)? else {
                let line = rows.first().map_or(0, |r| r.0);
                bail!("{path}: line {line}: no station {key:?}");
            };
            let mut inserted = 0;
            for chunk in rows.chunks(riverchief_shared::flood::MAX_READINGS_PER_BATCH) {
                let batch = ReadingsBatch {
                    readings: chunk.iter().map(|r| r.1).collect(),
                };
                let line_of = |field: &str| {
                    field
                        .strip_prefix("readings[")
                        .and_then(|f| f.split(']').next())
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| chunk.get(i))
                        .map_or(0, |r| r.0)
                };
                let sorted = batch
                    .validate()
                    .map_err(|e| anyhow!("{path}: line {}: {}", line_of(&e.field), e.message))?;
                let done = crate::flood::ingest(
                    conn,
                    &settings,
                    &policy,
                    &station,
                    store::Series::Real,
                    &sorted,
                    chrono::Utc::now(),
                )
                .map_err(|e| match e {
                    IngestError::Conflict { index, .. } => {
                        anyhow!("{path}: line {}: {e}", chunk.get(index).map_or(0, |r| r.0))
                    }
                    IngestError::Db(d) => d.into(),
                })?;
                inserted += done.inserted;
            }
            let v = store::view(conn, &station)?;
            report.push(format!(
                "{}: {} readings, {inserted} new; stage {}, level {}",
                station.code,
                rows.len(),
                v.stage.as_str(),
                v.level_m.map_or("-".to_owned(), |l| format!("{l:.2} m"))
            ));
        }
        Ok(report)
    })?;
    for line in report {
        say(&line)?;
    }
    Ok(())
}
