//! The `riverchief` command line: a thin shell over [`Client`]. It lives in the library so that
//! other binaries (test wrappers) can run exactly the same program with [`main`].
//!
//! Commands that record something print the new id alone on stdout, so scripts can capture it;
//! everything meant for people goes to stdout as text, or as JSON with `--json`. Errors go to
//! stderr and make the exit status non-zero.

use crate::{Client, ClientError, ClientOptions, IssueDraft, RetryPolicy, SyncProgress};
use anyhow::{anyhow, Context};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use riverchief_shared::domain::{
    Crs, IssueCategory, IssueEventKind, Outflow, Severity, TrackPoint,
};
use riverchief_shared::geo::{Lat, Lon, Position};
use riverchief_shared::id::{IssueId, PatrolId, UserId};
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "riverchief",
    version,
    about = "Record river patrols and embankment hazards offline; sync when there is signal."
)]
struct Cli {
    /// Server URL (default: the one of the last login).
    #[arg(long, global = true, env = "RIVERCHIEF_SERVER")]
    server: Option<String>,
    /// Data directory: the local store and captured photos.
    #[arg(
        long,
        global = true,
        env = "RIVERCHIEF_DATA",
        default_value = "./riverchief-client"
    )]
    data: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Attempts per request before a sync gives up.
    #[arg(long, global = true, env = "RIVERCHIEF_RETRIES", hide = true)]
    retries: Option<u32>,
    /// First retry delay in milliseconds (doubles per retry).
    #[arg(long, global = true, env = "RIVERCHIEF_RETRY_BASE_MS", hide = true)]
    retry_base_ms: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in and fetch the segments.
    Login {
        #[arg(long)]
        username: String,
        #[arg(long, env = "RIVERCHIEF_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// How this device is named in the server's list of logins.
        #[arg(long, default_value = "riverchief-cli")]
        device_name: String,
    },
    /// List the segments (from the local copy).
    Segments,
    /// Record a patrol.
    #[command(subcommand)]
    Patrol(PatrolCommand),
    /// Report and follow up issues.
    #[command(subcommand)]
    Issue(IssueCommand),
    /// Record a dispatch of supplies to a segment, sent with the next sync. The server judges it
    /// against the stock when it arrives; a refusal (with the quantity available) shows in `status`.
    Dispatch {
        /// The depot's code (or id).
        #[arg(long)]
        depot: String,
        /// The item's code (or id).
        #[arg(long)]
        item: String,
        /// A whole number in the item's unit.
        #[arg(long)]
        quantity: i64,
        /// The segment's code (or id).
        #[arg(long)]
        segment: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Show the stock per depot and item, with quota, shortfall and lots past or near their date
    /// (asks the server: needs a signal).
    Stock,
    /// The alerts mirrored from the server (stage changes, hazards with their acknowledgement,
    /// ...), newest first; drill alerts are marked 演练/DRILL.
    Alerts {
        /// Also resolved alerts.
        #[arg(long)]
        all: bool,
    },
    /// Gauge readings (duty leads and admins).
    #[command(subcommand)]
    Readings(ReadingsCommand),
    /// Push recorded work, upload photos, pull changes.
    Sync,
    /// What waits to be sent, what the server refused.
    Status,
    /// What you recorded on this phone in a period: patrols, hours, kilometres, problems found.
    Stats {
        /// `2024`, `2024-Q3`, `2024-07`, `2024-W27` or `2024-07-01..2024-07-31` (Beijing time);
        /// this month when absent.
        #[arg(long)]
        period: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ReadingsCommand {
    /// Send a CSV of readings (`station,observed_at,level_m`) to the server in batches; a bad line
    /// stops the import before anything is sent. Sending a file again changes nothing.
    Import {
        file: PathBuf,
        /// Readings per request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
}

#[derive(Debug, Subcommand)]
enum PatrolCommand {
    /// Start a patrol; prints its id.
    Start {
        /// Segment code or id (repeat for several).
        #[arg(long = "segment", required = true, num_args = 1..)]
        segments: Vec<String>,
        #[arg(long)]
        notes: Option<String>,
        #[arg(long)]
        weather: Option<String>,
    },
    /// Record one track point.
    Point {
        #[arg(long)]
        patrol: PatrolId,
        /// Longitude, WGS-84 degrees.
        #[arg(long, allow_hyphen_values = true)]
        lon: f64,
        /// Latitude, WGS-84 degrees.
        #[arg(long, allow_hyphen_values = true)]
        lat: f64,
        /// Horizontal accuracy, metres.
        #[arg(long)]
        accuracy: Option<f64>,
        /// When the fix was taken (RFC 3339; default now).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// Record a GPX track (trk/trkseg/trkpt with times) as one finished patrol; prints its id.
    Import {
        /// The .gpx file.
        file: std::path::PathBuf,
        /// Segment code or id (repeat for several); default: every segment the track passes along.
        #[arg(long = "segment")]
        segments: Vec<String>,
        /// The datum of the file's coordinates: wgs84 (GPX's own) or gcj02 (Chinese map apps).
        #[arg(long, default_value = "wgs84", value_parser = parse_crs)]
        crs: Crs,
        #[arg(long)]
        notes: Option<String>,
    },
    /// Finish a patrol.
    Finish {
        #[arg(long)]
        patrol: PatrolId,
        #[arg(long)]
        notes: Option<String>,
    },
    /// List patrols.
    List,
}

#[derive(Debug, Subcommand)]
enum IssueCommand {
    /// Report a problem; prints its id.
    Report(ReportArgs),
    /// Issues reported here and those pulled from the server.
    List,
    /// Add an event (comment, status change) to an issue; prints its id.
    Event {
        #[arg(long)]
        issue: IssueId,
        /// comment, accepted, dispatched, in_progress, resolved, verified, rejected, duplicate, reopened
        #[arg(long, value_parser = parse_event_kind)]
        kind: IssueEventKind,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        assignee: Option<UserId>,
        #[arg(long)]
        duplicate_of: Option<IssueId>,
        /// For a dispatch: when the work is due (RFC 3339, e.g. 2024-07-03T18:00:00+08:00).
        #[arg(long, value_parser = parse_due)]
        due: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long = "photo")]
        photos: Vec<PathBuf>,
    },
}

fn parse_due(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("{s:?} is not an RFC 3339 time (2024-07-03T18:00:00+08:00)"))
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Segment code or id.
    #[arg(long)]
    segment: String,
    /// Longitude of the problem, WGS-84 degrees.
    #[arg(long, allow_hyphen_values = true)]
    lon: f64,
    /// Latitude of the problem, WGS-84 degrees.
    #[arg(long, allow_hyphen_values = true)]
    lat: f64,
    /// piping, seepage, leak, crack, slope_slide, sinkhole, overtopping, bank_collapse,
    /// wave_erosion, structure_defect, litter, floating_debris, sewage_outfall, water_anomaly,
    /// illegal_structure, illegal_fishing, damaged_facility, sign_board, other
    #[arg(long, value_parser = parse_category)]
    category: IssueCategory,
    /// 1 minor, 2 significant, 3 major.
    #[arg(long, value_parser = parse_severity)]
    severity: Severity,
    /// Piping only: clear or muddy.
    #[arg(long, value_parser = parse_outflow)]
    outflow: Option<Outflow>,
    /// What was found.
    #[arg(long)]
    description: String,
    /// The patrol it was found on.
    #[arg(long)]
    patrol: Option<PatrolId>,
    /// A photo file (repeat for several).
    #[arg(long = "photo")]
    photos: Vec<PathBuf>,
}

fn parse_category(s: &str) -> Result<IssueCategory, String> {
    IssueCategory::parse(s).ok_or_else(|| {
        let all: Vec<&str> = IssueCategory::ALL.iter().map(|c| c.as_str()).collect();
        format!("unknown category; one of: {}", all.join(", "))
    })
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    let n: u8 = s.parse().map_err(|_| "severity is 1, 2 or 3".to_owned())?;
    Severity::try_from(n)
}

fn parse_outflow(s: &str) -> Result<Outflow, String> {
    match s {
        "clear" => Ok(Outflow::Clear),
        "muddy" => Ok(Outflow::Muddy),
        _ => Err("outflow is clear or muddy".into()),
    }
}

fn parse_event_kind(s: &str) -> Result<IssueEventKind, String> {
    IssueEventKind::parse(s).ok_or_else(|| format!("unknown event kind {s:?}"))
}

/// Runs the CLI with the process's arguments.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// Runs the CLI with the given arguments (the first is the program name).
pub fn main_from<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Prints help and version to stdout, usage errors to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain_message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the error before it already
/// includes (most of ours quote their source).
fn chain_message(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RIVERCHIEF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Writes a line to stdout; a closed stdout (`| head`) is not worth a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut retry = RetryPolicy::default();
    if let Some(n) = cli.retries {
        retry.max_attempts = n;
    }
    if let Some(ms) = cli.retry_base_ms {
        retry.base_delay = Duration::from_millis(ms);
    }
    let options = ClientOptions {
        server_url: cli.server.clone(),
        retry,
        ..ClientOptions::default()
    };
    let client = Client::open(&cli.data, options)
        .with_context(|| format!("cannot open the data directory {}", cli.data.display()))?;
    let json = cli.json;
    match cli.command {
        Command::Login {
            username,
            password,
            device_name,
        } => {
            let password = password.ok_or_else(|| {
                anyhow!("no password: pass --password or set RIVERCHIEF_PASSWORD")
            })?;
            let server = client.server_url().await?.ok_or(ClientError::NoServer)?;
            let user = client
                .login(&server, &username, &password, &device_name)
                .await?;
            // Segment codes resolve only from the mirror; without signal the next sync fetches it.
            if let Err(e) = client.pull(&|_| {}).await {
                eprintln!("warning: logged in, but could not fetch the server's data yet: {e}");
            }
            let segments = client.segments().await?.len();
            if json {
                print_json(&user)?;
            } else {
                say!(
                    "logged in to {server} as {} ({}, {}); {segments} segments in the local copy",
                    user.username,
                    user.display_name,
                    user.role.as_str()
                );
            }
        }
        Command::Segments => segments(&client, json).await?,
        Command::Patrol(command) => patrol(&client, command, json).await?,
        Command::Issue(command) => issue(&client, command, json).await?,
        Command::Dispatch {
            depot,
            item,
            quantity,
            segment,
            note,
        } => {
            let id = client
                .move_stock(&depot, &item, "dispatch", quantity, Some(&segment), note)
                .await?;
            if json {
                print_json(&serde_json::json!({ "mutation_id": id }))?;
            } else {
                say!("dispatch of {quantity} {item} from {depot} to {segment} recorded ({id}); it is sent with the next sync");
            }
        }
        Command::Stock => stock(&client, json).await?,
        Command::Alerts { all } => crate::flood_cli::alerts(&client, all, json).await?,
        Command::Readings(ReadingsCommand::Import { file, batch }) => {
            crate::flood_cli::import_readings(&client, &file, batch, json).await?
        }
        Command::Sync => sync(&client, json).await?,
        Command::Status => status(&client, json).await?,
        Command::Stats { period } => stats(&client, period, json).await?,
    }
    Ok(())
}

async fn stock(client: &Client, json: bool) -> anyhow::Result<()> {
    let view = client.stock().await?;
    if json {
        return print_json(&view);
    }
    for line in &view.stock {
        let short = if line.shortfall > 0 {
            format!("  SHORT {}", line.shortfall)
        } else {
            String::new()
        };
        // The names go last: Chinese characters are two columns wide and would break alignment.
        say!(
            "{:<8} {:<12} {:>6} / {:<6}{}  {} ({})",
            line.depot,
            line.item,
            line.on_hand,
            line.quota,
            short,
            line.item_name,
            line.unit
        );
        for lot in &line.lots_expiring {
            say!(
                "         lot of {} expires {}",
                lot.quantity,
                lot.expires_on.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}

async fn segments(client: &Client, json: bool) -> anyhow::Result<()> {
    let segments = client.segments().await?;
    if json {
        return print_json(&segments);
    }
    if segments.is_empty() {
        say!("no segments in the local copy; log in or sync to fetch them");
    }
    for s in &segments {
        let p = &s.properties;
        // The name goes last: Chinese characters are two columns wide and would break alignment.
        say!(
            "{:<10} {:>7}–{:<7} {:>6.0} m  {:<5}  {}  {}",
            p.code,
            p.start_chainage,
            p.end_chainage,
            p.length_m,
            match p.bank {
                riverchief_shared::domain::Bank::Left => "left",
                riverchief_shared::domain::Bank::Right => "right",
            },
            p.id,
            p.name
        );
    }
    Ok(())
}

fn parse_crs(s: &str) -> Result<Crs, String> {
    match s.to_ascii_lowercase().as_str() {
        "wgs84" => Ok(Crs::Wgs84),
        "gcj02" => Ok(Crs::Gcj02),
        _ => Err(format!("{s:?}: expected wgs84 or gcj02")),
    }
}

async fn patrol(client: &Client, command: PatrolCommand, json: bool) -> anyhow::Result<()> {
    match command {
        PatrolCommand::Start {
            segments,
            notes,
            weather,
        } => {
            let mut ids = Vec::with_capacity(segments.len());
            for s in &segments {
                ids.push(client.resolve_segment(s).await?);
            }
            let id = client.start_patrol(&ids, notes, weather).await?;
            say!("{id}");
        }
        PatrolCommand::Point {
            patrol,
            lon,
            lat,
            accuracy,
            at,
        } => {
            let point = TrackPoint {
                t: at.unwrap_or_else(Utc::now),
                lon: Lon::parse(lon, "lon")?,
                lat: Lat::parse(lat, "lat")?,
                accuracy_m: accuracy,
                crs: None,
                mock: false,
            };
            client.add_points(patrol, &[point]).await?;
        }
        PatrolCommand::Import {
            file,
            segments,
            crs,
            notes,
        } => {
            let mut ids = Vec::with_capacity(segments.len());
            for s in &segments {
                ids.push(client.resolve_segment(s).await?);
            }
            let imported = client.import_gpx(&file, Some(crs), &ids, notes).await?;
            if json {
                return print_json(&imported);
            }
            say!("{}", imported.patrol_id);
        }
        PatrolCommand::Finish { patrol, notes } => client.finish_patrol(patrol, notes).await?,
        PatrolCommand::List => {
            let patrols = client.patrols().await?;
            if json {
                return print_json(&patrols);
            }
            for p in &patrols {
                let state = match &p.local {
                    Some(local) => format!("{:?}", local.state).to_lowercase(),
                    None => "from server".into(),
                };
                say!(
                    "{}  {}  {}  {} points  [{state}]",
                    p.id,
                    p.started_at.format("%Y-%m-%d %H:%M"),
                    p.ended_at
                        .map(|t| format!("ended {}", t.format("%H:%M")))
                        .unwrap_or_else(|| "ongoing".into()),
                    p.point_count
                );
            }
        }
    }
    Ok(())
}

async fn issue(client: &Client, command: IssueCommand, json: bool) -> anyhow::Result<()> {
    match command {
        IssueCommand::Report(args) => {
            let segment_id = client.resolve_segment(&args.segment).await?;
            let draft = IssueDraft {
                segment_id,
                patrol_id: args.patrol,
                location: Position {
                    lon: Lon::parse(args.lon, "lon")?,
                    lat: Lat::parse(args.lat, "lat")?,
                },
                category: args.category,
                severity: args.severity,
                outflow: args.outflow,
                description: args.description,
                photos: args.photos,
            };
            let id = client.report_issue(draft).await?;
            say!("{id}");
        }
        IssueCommand::Event {
            issue,
            kind,
            note,
            assignee,
            duplicate_of,
            due,
            photos,
        } => {
            let id = client
                .add_issue_event_due(issue, kind, note, assignee, duplicate_of, due, photos)
                .await?;
            say!("{id}");
        }
        IssueCommand::List => {
            let issues = client.my_issues().await?;
            if json {
                return print_json(&issues);
            }
            let alerts = client.alerts().await?;
            let me = client.user().await?.map(|u| u.id);
            let codes: HashMap<_, _> = client
                .segments()
                .await?
                .into_iter()
                .map(|s| (s.properties.id, s.properties.code))
                .collect();
            if issues.is_empty() {
                say!("no issues");
            }
            for i in &issues {
                let status = match (&i.server, &i.local) {
                    (Some(server), _) => format!(
                        "{} photos {}/{}{}",
                        server.status.as_str(),
                        server.photos_arrived,
                        server.photos_expected,
                        if server.overdue { " OVERDUE" } else { "" }
                    ),
                    (None, Some(local)) => match &local.error {
                        Some(e) => format!("refused: {}", e.message),
                        None => "not yet sent".into(),
                    },
                    (None, None) => String::new(),
                };
                let segment = codes
                    .get(&i.segment_id)
                    .cloned()
                    .unwrap_or_else(|| i.segment_id.to_string());
                let description: String = i.description.chars().take(40).collect();
                // Steps of mine the server kept but did not apply: say so, with the reason.
                let refused: Vec<String> = i
                    .server
                    .iter()
                    .flat_map(|s| s.events.iter())
                    .filter(|e| Some(e.by) == me)
                    .filter_map(|e| {
                        e.rejected
                            .as_ref()
                            .map(|r| format!("your {} was refused: {r}", e.kind.as_str()))
                    })
                    .collect();
                let refused = if refused.is_empty() {
                    String::new()
                } else {
                    format!("  ({})", refused.join("; "))
                };
                say!(
                    "{}  {}  {} {}/{}  sev {}{}  {}  [{status}]{refused}",
                    i.id,
                    i.reported_at.format("%Y-%m-%d %H:%M"),
                    segment,
                    i.category.label_zh(),
                    i.category.as_str(),
                    u8::from(i.severity),
                    if i.critical { " CRITICAL" } else { "" },
                    description
                );
                if let Some(receipt) = crate::flood_cli::receipt(&alerts, i, me) {
                    say!("    {receipt}");
                }
            }
        }
    }
    Ok(())
}

async fn sync(client: &Client, json: bool) -> anyhow::Result<()> {
    let bar = ProgressBar::hidden();
    let style = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )?
    .progress_chars("=> ");
    bar.set_style(style);
    let progress = |event: SyncProgress| match event {
        SyncProgress::PhotoStarted {
            sha,
            index,
            total,
            offset,
        } => {
            bar.reset();
            bar.set_length(total);
            bar.set_position(offset);
            let resumed = if offset > 0 { " (resumed)" } else { "" };
            bar.set_message(format!("photo {index} {}{resumed}", &sha.hex()[..8]));
            // Shown only once there is a photo to show, so a sync without photos draws nothing.
            if bar.is_hidden() {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
        SyncProgress::PhotoBytes { sent, .. } => bar.set_position(sent),
        SyncProgress::PhotoFailed { sha, reason } => {
            bar.println(format!("photo {} refused: {reason}", &sha.hex()[..8]));
        }
        _ => {}
    };
    let result = client.sync(&progress).await;
    bar.finish_and_clear();
    let report = match result {
        Ok(report) => report,
        Err(e @ ClientError::SyncInProgress) => return Err(e.into()),
        Err(e) => {
            let (records, photos) = client
                .status()
                .await
                .map(|s| (s.pending, s.photos_pending))
                .unwrap_or_default();
            return Err(anyhow::Error::new(e).context(format!(
                "sync failed ({records} records and {photos} photos stay queued for the next sync)"
            )));
        }
    };
    if json {
        return print_json(&report);
    }
    say!(
        "records: {} applied, {} already there, {} refused",
        report.pushed,
        report.duplicates,
        report.rejected
    );
    say!(
        "photos:  {} uploaded, {} already there, {} refused; {} sent",
        report.photos_uploaded,
        report.photos_skipped,
        report.photos_failed,
        human_bytes(report.bytes_uploaded)
    );
    say!("pulled:  {} changes", report.pulled);
    if report.reset {
        say!("the server asked for a fresh start: the local copy of its data was rebuilt");
    }
    if report.rejected > 0 || report.photos_failed > 0 {
        say!("see `riverchief status` for what was refused and why");
    }
    Ok(())
}

async fn stats(client: &Client, period: Option<String>, json: bool) -> anyhow::Result<()> {
    use riverchief_shared::report::{CheckRules, Period};
    let spec = period.unwrap_or_else(|| {
        Utc::now()
            .with_timezone(&riverchief_shared::domain::shanghai())
            .format("%Y-%m")
            .to_string()
    });
    let period = Period::parse(&spec, "--period").map_err(|e| anyhow!("{}", e.message))?;
    let s = client.stats(period, CheckRules::default()).await?;
    if json {
        return print_json(&s);
    }
    say!("period:    {}", s.period.label);
    say!(
        "patrols:   {} finished ({} long enough to count), {} open, on {} day(s)",
        s.patrols,
        s.long_enough,
        s.open,
        s.days
    );
    say!("walked:    {:.1} h, {:.1} km", s.hours, s.km);
    say!(
        "problems:  {} reported ({} critical), {:.1} per patrol",
        s.issues,
        s.critical,
        s.issues_per_patrol
    );
    for (category, n) in &s.by_category {
        let label = IssueCategory::parse(category).map_or(category.as_str(), |c| c.label_zh());
        say!("           {label} ({category}): {n}");
    }
    Ok(())
}

async fn status(client: &Client, json: bool) -> anyhow::Result<()> {
    let s = client.status().await?;
    if json {
        return print_json(&s);
    }
    say!("device:    {}", s.device_id);
    say!(
        "server:    {}",
        s.server_url.as_deref().unwrap_or("(none; log in first)")
    );
    match (&s.user, s.logged_in) {
        (Some(u), true) => say!(
            "user:      {} ({}, {})",
            u.username,
            u.display_name,
            u.role.as_str()
        ),
        (Some(u), false) => say!("user:      {} (logged out)", u.username),
        (None, _) => say!("user:      not logged in"),
    }
    say!(
        "queue:     {} pending ({} urgent), {} sent, {} refused",
        s.pending,
        s.pending_urgent,
        s.done,
        s.rejected.len()
    );
    say!(
        "photos:    {} to upload, {} uploaded, {} refused",
        s.photos_pending,
        s.photos_confirmed,
        s.photos_failed.len()
    );
    say!(
        "last sync: {}",
        s.last_sync_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "never".into())
    );
    if let Some(e) = &s.last_sync_error {
        say!("last sync failed: {e}");
    }
    if !s.rejected.is_empty() {
        say!("refused records:");
        for r in &s.rejected {
            let field = r
                .error
                .field
                .as_deref()
                .map(|f| format!(", {f}"))
                .unwrap_or_default();
            say!(
                "  #{} {} {}: {} ({}{field})",
                r.device_seq,
                r.kind,
                r.id,
                r.error.message,
                r.error.code
            );
        }
    }
    if !s.photos_failed.is_empty() {
        say!("refused photos:");
        for p in &s.photos_failed {
            say!("  {}: {}", p.sha256, p.reason);
        }
    }
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_a_report() {
        let cli = Cli::try_parse_from([
            "riverchief",
            "--data",
            "/tmp/x",
            "issue",
            "report",
            "--segment",
            "QH-01",
            "--lon",
            "118.744",
            "--lat",
            "32.05",
            "--category",
            "piping",
            "--severity",
            "3",
            "--outflow",
            "muddy",
            "--description",
            "浑水管涌",
            "--photo",
            "a.jpg",
            "--photo",
            "b.jpg",
        ])
        .expect("parses");
        let Command::Issue(IssueCommand::Report(args)) = cli.command else {
            panic!("not a report: {:?}", cli.command);
        };
        assert_eq!(args.category, IssueCategory::Piping);
        assert_eq!(args.severity, Severity::Major);
        assert_eq!(args.outflow, Some(Outflow::Muddy));
        assert_eq!(args.photos.len(), 2);
        assert!(Cli::try_parse_from(["riverchief", "issue", "report", "--severity", "4"]).is_err());
    }

    #[test]
    fn error_chains_do_not_repeat_themselves() {
        let inner = ClientError::Validation(riverchief_shared::FieldError::new(
            "invalid",
            "data.outflow",
            "outflow is only for piping",
        ));
        let e = anyhow::Error::new(inner).context("cannot report");
        assert_eq!(
            chain_message(&e),
            "cannot report: invalid data.outflow: outflow is only for piping"
        );
    }

    #[test]
    fn bytes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
