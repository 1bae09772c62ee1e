//! The `riverchief-server` command line: `serve`, `migrate`, `user add|passwd|role|activate|
//! deactivate|list|devices|revoke`, `stock check`, `changes compact`, `station add|list` and
//! `readings import` (the flood-watch commands are in `cli/flood.rs`). User changes are audited
//! (actor: the server's command line) in the transaction that makes them.
//!
//! Every flag of `serve` also reads a `RIVERCHIEF_*` variable. `serve` prints exactly one line
//! `listening on http://HOST:PORT` to stdout once it is bound (with the real port when asked for
//! port 0); tools and tests wait for that line. Logs go to stderr.

use crate::app::{Application, Config};
use crate::db::{self, Db, Location};
use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use riverchief_shared::api::UserInfo;
use riverchief_shared::domain::Role;
use riverchief_shared::id::UserId;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

mod flood;

#[derive(Debug, Parser)]
#[command(
    name = "riverchief-server",
    version,
    about = "The riverchief server: river-chief patrols and embankment flood watch."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (creating and migrating the database as needed).
    Serve(ServeArgs),
    /// Create or migrate the database, then exit.
    Migrate(DataDir),
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Flood supplies.
    #[command(subcommand)]
    Stock(StockCommand),
    /// Gauge stations.
    #[command(subcommand)]
    Station(flood::StationCommand),
    /// Gauge readings.
    #[command(subcommand)]
    Readings(flood::ReadingsCommand),
    /// The change log that devices pull.
    #[command(subcommand)]
    Changes(ChangesCommand),
}

#[derive(Debug, Subcommand)]
enum ChangesCommand {
    /// Delete changes superseded by a newer change of the same record (a running server does this
    /// every 15 minutes for changes older than a day).
    Compact(CompactArgs),
}

#[derive(Debug, Args)]
struct CompactArgs {
    #[command(flatten)]
    data: DataDir,
    /// Keep every change younger than this many hours.
    #[arg(long, default_value_t = 24)]
    keep_hours: u32,
}

#[derive(Debug, Subcommand)]
enum StockCommand {
    /// Prove that every balance equals the sum of its ledger; exits non-zero when one does not.
    Check(DataDir),
}

#[derive(Debug, Args)]
struct DataDir {
    /// Where photos and partial uploads live (and the SQLite file, unless --database-url is given).
    #[arg(long, env = "RIVERCHIEF_DATA_DIR", default_value = "./riverchief-data")]
    data_dir: PathBuf,
    /// The database: postgres://USER:PASSWORD@HOST:PORT/NAME, or an SQLite file path
    /// [default: DATA_DIR/riverchief.sqlite3].
    #[arg(long, env = "RIVERCHIEF_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

impl DataDir {
    fn config(&self, bind: impl Into<String>) -> Config {
        let mut config = Config::new(bind, &self.data_dir);
        config.database_url = self.database_url.clone();
        config
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "RIVERCHIEF_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    #[command(flatten)]
    data: DataDir,
    /// Seed the Qinhuai demo world (segments and demo users) if it is not there yet.
    #[arg(long, env = "RIVERCHIEF_DEMO", value_parser = clap::builder::BoolishValueParser::new())]
    demo: bool,
    /// One password for every demo user (drills, tests); otherwise each gets a random one, printed.
    #[arg(long, env = "RIVERCHIEF_DEMO_PASSWORD")]
    demo_password: Option<String>,
    /// The dashboard's base map: a tile URL template with {z}, {x} and {y} (and {s} for subdomains),
    /// e.g. an in-house tile server or Tianditu with your key; none = segments on a plain background.
    #[arg(long, env = "RIVERCHIEF_TILE_URL", value_parser = parse_tile_url)]
    tile_url: Option<String>,
    /// The attribution the tile provider asks to show on the map.
    #[arg(long, env = "RIVERCHIEF_TILE_ATTRIBUTION")]
    tile_attribution: Option<String>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "RIVERCHIEF_WORKERS", value_parser = parse_workers)]
    workers: Option<usize>,
    /// Where photos go: s3://BUCKET/PREFIX (configured by the AWS_* variables) or file:///PATH
    /// [default: DATA_DIR].
    #[arg(long, env = "RIVERCHIEF_PHOTO_STORE")]
    photo_store: Option<String>,
    /// How often each segment must be covered per flood stage, in minutes:
    /// `normal=10080,watch=60,warning=30,guarantee=15` (any subset; the rest keep their defaults,
    /// which are the demo file's when --demo is given).
    #[arg(long, env = "RIVERCHIEF_PATROL_INTERVALS", value_parser = parse_intervals)]
    patrol_intervals: Option<Intervals>,
    /// A patrol covers a segment when it passes along at least this fraction of it, 0 < F <= 1
    /// [default: 0.8].
    #[arg(long, env = "RIVERCHIEF_COVERING_RATIO", value_parser = parse_fraction)]
    covering_ratio: Option<f64>,
    /// Fixes whose reported accuracy is worse than this many metres count for nothing [default: 50].
    #[arg(long, env = "RIVERCHIEF_MAX_ACCURACY_M", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    max_accuracy_m: Option<u32>,
    /// Two fixes further apart than this many metres cover nothing between them [default: 150].
    #[arg(long, env = "RIVERCHIEF_MAX_STEP_M", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_step_m: Option<u32>,
    /// Two fixes further apart than this many seconds cover nothing between them [default: 120].
    #[arg(long, env = "RIVERCHIEF_MAX_STEP_SECONDS", value_parser = clap::value_parser!(u32).range(1..=86_400))]
    max_step_seconds: Option<u32>,
    /// How long a report may wait to be accepted before it is escalated, in working hours
    /// (Monday to Friday round the clock, Asia/Shanghai) [default: 24, one working day].
    #[arg(long, env = "RIVERCHIEF_ACCEPT_WITHIN_HOURS", value_parser = clap::value_parser!(u32).range(1..=2000))]
    accept_within_hours: Option<u32>,
    /// Failed logins allowed per username within the login window before 429 [default: 5].
    #[arg(long, env = "RIVERCHIEF_LOGIN_FAILURES_PER_USER", value_parser = clap::value_parser!(u32).range(1..=1000))]
    login_failures_per_user: Option<u32>,
    /// Failed logins allowed per client address within the login window [default: 20].
    #[arg(long, env = "RIVERCHIEF_LOGIN_FAILURES_PER_ADDRESS", value_parser = clap::value_parser!(u32).range(1..=100000))]
    login_failures_per_address: Option<u32>,
    /// The login window in seconds [default: 900].
    #[arg(long, env = "RIVERCHIEF_LOGIN_WINDOW_SECS", value_parser = clap::value_parser!(u32).range(1..=86400))]
    login_window_secs: Option<u32>,
    /// Take the client address for the login limit from X-Forwarded-For / Forwarded (only behind a
    /// proxy that sets them).
    #[arg(long, env = "RIVERCHIEF_TRUST_FORWARDED", value_parser = clap::builder::BoolishValueParser::new())]
    trust_forwarded: bool,
    #[command(flatten)]
    flood: flood::FloodArgs,
    #[command(flatten)]
    webhooks: WebhookArgs,
}

/// Webhook retries: delay `base × 2^(n−1)` (at most `cap`, plus up to a quarter of jitter) after
/// the n-th failed attempt, until `max-attempts`; and the alert stream's keep-alive.
#[derive(Debug, Args)]
struct WebhookArgs {
    /// The first retry's delay, in milliseconds [default: 5000].
    #[arg(long, env = "RIVERCHIEF_WEBHOOK_BACKOFF_BASE_MS", value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    webhook_backoff_base_ms: Option<u64>,
    /// The longest delay between attempts, in milliseconds [default: 900000].
    #[arg(long, env = "RIVERCHIEF_WEBHOOK_BACKOFF_CAP_MS", value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    webhook_backoff_cap_ms: Option<u64>,
    /// Attempts before a delivery is given up [default: 12].
    #[arg(long, env = "RIVERCHIEF_WEBHOOK_MAX_ATTEMPTS", value_parser = clap::value_parser!(u32).range(1..=1000))]
    webhook_max_attempts: Option<u32>,
    /// How long one attempt may take, in milliseconds [default: 10000].
    #[arg(long, env = "RIVERCHIEF_WEBHOOK_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..=600_000))]
    webhook_timeout_ms: Option<u64>,
    /// How often an idle alert stream sends a keep-alive comment, in milliseconds [default: 15000]
    /// (below the idle timeout of any proxy in front).
    #[arg(long, env = "RIVERCHIEF_STREAM_KEEPALIVE_MS", value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    stream_keepalive_ms: Option<u64>,
}

impl WebhookArgs {
    fn apply(&self, d: &mut crate::delivery::DeliveryConfig) {
        use std::time::Duration;
        if let Some(ms) = self.webhook_backoff_base_ms {
            d.backoff_base = Duration::from_millis(ms);
        }
        if let Some(ms) = self.webhook_backoff_cap_ms {
            d.backoff_cap = Duration::from_millis(ms);
        }
        if let Some(n) = self.webhook_max_attempts {
            d.max_attempts = n;
        }
        if let Some(ms) = self.webhook_timeout_ms {
            d.timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = self.stream_keepalive_ms {
            d.keepalive = Duration::from_millis(ms);
        }
    }
}

/// `--patrol-intervals`, parsed: (stage, minutes) pairs.
#[derive(Debug, Clone)]
struct Intervals(Vec<(String, i64)>);

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!(
            "{s:?} is not a fraction above 0 and at most 1 (0.8 = 80 %)"
        )),
    }
}

fn parse_intervals(s: &str) -> Result<Intervals, String> {
    s.split(',')
        .map(|pair| {
            let (stage, minutes) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?}: expected STAGE=MINUTES"))?;
            let stage = stage.trim();
            if riverchief_shared::coverage::FloodStage::parse(stage).is_none() {
                return Err(format!(
                    "{stage:?}: not a flood stage (normal, watch, warning, guarantee)"
                ));
            }
            let minutes: i64 = minutes
                .trim()
                .parse()
                .map_err(|_| format!("{pair:?}: minutes must be a whole number"))?;
            if !(1..=525_600).contains(&minutes) {
                return Err(format!("{pair:?}: minutes must be 1..=525600"));
            }
            Ok((stage.to_string(), minutes))
        })
        .collect::<Result<_, _>>()
        .map(Intervals)
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Add(UserAddArgs),
    /// Set a user's password.
    Passwd(UserPasswdArgs),
    /// Set a user's role.
    Role(UserRoleArgs),
    /// Let a switched-off user log in again.
    Activate(UserNameArgs),
    /// Switch a user off: their tokens stop working at once and they cannot log in.
    Deactivate(UserNameArgs),
    /// List users with their role, state and number of live device tokens.
    List(DataDir),
    /// List a user's device tokens (id, device, created, revoked).
    Devices(UserNameArgs),
    /// Revoke a device token by its id (from `user devices`): it gets 401 from its next request.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct UserRoleArgs {
    #[arg(long)]
    username: String,
    /// patroller, duty_lead or admin.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    #[command(flatten)]
    data: DataDir,
}

#[derive(Debug, Args)]
struct UserNameArgs {
    #[arg(long)]
    username: String,
    #[command(flatten)]
    data: DataDir,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    /// The token id.
    #[arg(long)]
    token: String,
    #[command(flatten)]
    data: DataDir,
}

#[derive(Debug, Args)]
struct NewPassword {
    /// The password; without it (and without RIVERCHIEF_NEW_PASSWORD) one is generated and printed.
    #[arg(long, env = "RIVERCHIEF_NEW_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

#[derive(Debug, Args)]
struct UserAddArgs {
    #[arg(long)]
    username: String,
    #[arg(long)]
    display_name: String,
    /// patroller, duty_lead or admin.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    #[command(flatten)]
    password: NewPassword,
    /// Assign a segment by code (repeat for several).
    #[arg(long = "segment", value_name = "CODE")]
    segments: Vec<String>,
    #[command(flatten)]
    data: DataDir,
}

#[derive(Debug, Args)]
struct UserPasswdArgs {
    #[arg(long)]
    username: String,
    #[command(flatten)]
    password: NewPassword,
    #[command(flatten)]
    data: DataDir,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?} is not a role: patroller, duty_lead or admin"))
}

fn parse_tile_url(s: &str) -> Result<String, String> {
    crate::routes::dashboard::DashboardConfig::check_tile_url(s.trim())?;
    Ok(s.trim().to_owned())
}

fn parse_workers(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a worker count from 1 to 1024")),
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are not errors; clap knows which exit code each deserves.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let outcome = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Migrate(args) => migrate(args),
        Command::User(UserCommand::Add(args)) => user_add(args),
        Command::User(UserCommand::Passwd(args)) => user_passwd(args),
        Command::User(UserCommand::Role(args)) => user_role(args),
        Command::User(UserCommand::Activate(args)) => user_active(args, true),
        Command::User(UserCommand::Deactivate(args)) => user_active(args, false),
        Command::User(UserCommand::List(args)) => user_list(args),
        Command::User(UserCommand::Devices(args)) => user_devices(args),
        Command::User(UserCommand::Revoke(args)) => user_revoke(args),
        Command::Stock(StockCommand::Check(args)) => stock_check(args),
        Command::Changes(ChangesCommand::Compact(args)) => changes_compact(args),
        Command::Station(c) => flood::station(c),
        Command::Readings(c) => flood::readings(c),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("riverchief-server: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: stdout carries only the lines tools read.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints a line to stdout and flushes it, failing loudly if stdout is gone.
fn say(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    let mut config = args.data.config(args.bind.clone());
    config.demo = args.demo;
    config.demo_password = args.demo_password;
    config.dashboard.tile_url = args.tile_url;
    config.dashboard.tile_attribution = args.tile_attribution;
    config.workers = args.workers;
    config.photo_store = args.photo_store;
    config.flood = args.flood.settings();
    args.flood.apply_to_checks(&mut config.checks);
    args.webhooks.apply(&mut config.delivery);
    if let Some(h) = args.accept_within_hours {
        config.checks.accept_within = chrono::Duration::hours(i64::from(h));
    }
    if let Some(n) = args.login_failures_per_user {
        config.login.per_user = n as usize;
    }
    if let Some(n) = args.login_failures_per_address {
        config.login.per_address = n as usize;
    }
    if let Some(s) = args.login_window_secs {
        config.login.window = chrono::Duration::seconds(i64::from(s));
    }
    config.login.trust_forwarded = args.trust_forwarded;
    if config.demo {
        config.coverage.requirement = crate::demo::requirement()?;
    }
    let rules = &mut config.coverage.rules;
    if let Some(f) = args.covering_ratio {
        rules.covering_ratio = f;
    }
    if let Some(m) = args.max_accuracy_m {
        rules.max_accuracy_m = f64::from(m);
    }
    if let Some(m) = args.max_step_m {
        rules.max_step_m = f64::from(m);
    }
    if let Some(s) = args.max_step_seconds {
        rules.max_step = chrono::Duration::seconds(i64::from(s));
    }
    for (stage, minutes) in args.patrol_intervals.map(|i| i.0).unwrap_or_default() {
        let r = &mut config.coverage.requirement;
        match stage.as_str() {
            "normal" => r.normal = minutes,
            "watch" => r.watch = minutes,
            "warning" => r.warning = minutes,
            _ => r.guarantee = minutes,
        }
    }
    let host = match args.bind.rsplit_once(':') {
        Some((host, _)) if !host.is_empty() => host.to_owned(),
        _ => bail!("--bind {:?} is not HOST:PORT", args.bind),
    };
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config)
            .await
            .context("starting the server")?;
        if !app.demo_users.is_empty() {
            say("demo credentials (for trying riverchief out; not for real use):")?;
            for (user, password) in &app.demo_users {
                say(&format!("  {user}  {password}"))?;
            }
        }
        say(&format!("listening on http://{host}:{}", app.port()))?;
        let handle = app.handle();
        actix_web::rt::spawn(async move {
            stop_signal().await;
            tracing::info!("stopping: ending alert streams, finishing requests in flight");
            handle.stop(true).await;
        });
        app.run_until_stopped().await.context("serving")?;
        Ok(())
    })
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn open_db(data: &DataDir) -> anyhow::Result<(Db, Location)> {
    let location = data.config("127.0.0.1:0").database()?;
    let db = Db::open_at(&location)?;
    let mut conn = db.conn()?;
    db::with_setup_lock(&mut conn, db::changes::epoch)?;
    drop(conn);
    Ok((db, location))
}

fn migrate(args: DataDir) -> anyhow::Result<()> {
    let (_, location) = open_db(&args)?;
    say(&format!("database {location} is up to date"))
}

fn changes_compact(args: CompactArgs) -> anyhow::Result<()> {
    let (db, location) = open_db(&args.data)?;
    let mut conn = db.conn()?;
    let cutoff = chrono::Utc::now() - chrono::Duration::hours(i64::from(args.keep_hours));
    let removed = db::changes::compact(&mut conn, cutoff, 5000)?;
    say(&format!(
        "database {location}: removed {removed} superseded change(s) older than {} hour(s)",
        args.keep_hours
    ))
}

fn stock_check(args: DataDir) -> anyhow::Result<()> {
    let (db, location) = open_db(&args)?;
    let mut conn = db.conn()?;
    let mismatches = db::stock::ledger_check(&mut conn)?;
    if mismatches.is_empty() {
        return say(&format!(
            "database {location}: every stock balance equals the sum of its ledger"
        ));
    }
    for m in &mismatches {
        say(&format!(
            "depot {} item {}: balance {} but the ledger sums to {}",
            m.depot_id, m.item_id, m.on_hand, m.ledger
        ))?;
    }
    bail!(
        "{} stock balance(s) disagree with the ledger",
        mismatches.len()
    )
}

/// The password to set, and whether it was generated (and so must be shown).
fn choose_password(p: NewPassword) -> anyhow::Result<(String, bool)> {
    match p.password {
        Some(p) if p.is_empty() => bail!("the password must not be empty"),
        Some(p) => Ok((p, false)),
        None => Ok((crate::password::generate(), true)),
    }
}

fn user_add(args: UserAddArgs) -> anyhow::Result<()> {
    let username = args.username.trim().to_owned();
    let display_name = args.display_name.trim().to_owned();
    if username.is_empty() || display_name.is_empty() {
        bail!("--username and --display-name must not be empty");
    }
    let (password, generated) = choose_password(args.password)?;
    let hash = crate::password::hash(&password)?;
    let (db, _) = open_db(&args.data)?;
    let mut conn = db.conn()?;
    let info = UserInfo {
        id: UserId::new(),
        username: username.clone(),
        display_name,
        role: args.role,
    };
    db::write_transaction(&mut conn, |conn| -> anyhow::Result<()> {
        if db::users::by_username(conn, &username)?.is_some() {
            bail!("a user named {username:?} already exists");
        }
        let mut segments = Vec::new();
        for code in &args.segments {
            let s = db::segments::by_code(conn, code)?
                .ok_or_else(|| anyhow!("no segment with code {code:?}"))?;
            segments.push(s.properties.id);
        }
        db::users::insert(conn, &info, &hash)?;
        db::users::assign_segments(conn, info.id, &segments)?;
        db::audit::record(
            conn,
            &db::audit::Who::cli(),
            "user.add",
            Some(&info.id.to_string()),
            &serde_json::json!({"username": info.username, "role": info.role, "segments": segments}),
        )?;
        Ok(())
    })?;
    say(&format!(
        "created {} ({}) as {}",
        info.username,
        info.id,
        info.role.as_str()
    ))?;
    if generated {
        say(&format!("password: {password}"))?;
    }
    Ok(())
}

fn user_passwd(args: UserPasswdArgs) -> anyhow::Result<()> {
    let (password, generated) = choose_password(args.password)?;
    let hash = crate::password::hash(&password)?;
    let (db, _) = open_db(&args.data)?;
    let mut conn = db.conn()?;
    let user = db::users::by_username(&mut conn, &args.username)?
        .ok_or_else(|| anyhow!("no user named {:?}", args.username))?;
    db::write_transaction(&mut conn, |conn| -> anyhow::Result<()> {
        db::users::set_password(conn, user.info.id, &hash)?;
        db::audit::record(
            conn,
            &db::audit::Who::cli(),
            "user.password",
            Some(&user.info.id.to_string()),
            &serde_json::json!({"username": args.username, "generated": generated}),
        )?;
        Ok(())
    })?;
    say(&format!("password of {} changed", args.username))?;
    if generated {
        say(&format!("password: {password}"))?;
    }
    Ok(())
}

fn find_user(conn: &mut db::Conn, username: &str) -> anyhow::Result<UserInfo> {
    Ok(db::users::by_username(conn, username)?
        .ok_or_else(|| anyhow!("no user named {username:?}"))?
        .info)
}

fn user_role(args: UserRoleArgs) -> anyhow::Result<()> {
    let (db, _) = open_db(&args.data)?;
    let mut conn = db.conn()?;
    db::write_transaction(&mut conn, |conn| -> anyhow::Result<()> {
        let user = find_user(conn, &args.username)?;
        db::users::set_role(conn, user.id, args.role)?;
        db::audit::record(
            conn,
            &db::audit::Who::cli(),
            "user.update",
            Some(&user.id.to_string()),
            &serde_json::json!({"username": user.username,
                "before": {"role": user.role}, "after": {"role": args.role}}),
        )?;
        Ok(())
    })?;
    say(&format!("{} is now {}", args.username, args.role.as_str()))
}

fn user_active(args: UserNameArgs, active: bool) -> anyhow::Result<()> {
    let (db, _) = open_db(&args.data)?;
    let mut conn = db.conn()?;
    db::write_transaction(&mut conn, |conn| -> anyhow::Result<()> {
        let user = find_user(conn, &args.username)?;
        db::users::set_active(conn, user.id, active)?;
        db::audit::record(
            conn,
            &db::audit::Who::cli(),
            "user.update",
            Some(&user.id.to_string()),
            &serde_json::json!({"username": user.username, "after": {"active": active}}),
        )?;
        Ok(())
    })?;
    say(&format!(
        "{} is {}",
        args.username,
        if active { "active" } else { "switched off" }
    ))
}

fn user_list(args: DataDir) -> anyhow::Result<()> {
    let (db, _) = open_db(&args)?;
    let mut conn = db.conn()?;
    for a in db::users::accounts(&mut conn)? {
        let live = db::users::devices(&mut conn, a.user.id)?
            .iter()
            .filter(|d| d.revoked_at.is_none())
            .count();
        say(&format!(
            "{}  {}  {}  {}  {} device(s)  {}",
            a.user.username,
            a.user.role.as_str(),
            if a.active { "active" } else { "off" },
            a.user.id,
            live,
            a.user.display_name
        ))?;
    }
    Ok(())
}

fn user_devices(args: UserNameArgs) -> anyhow::Result<()> {
    let (db, _) = open_db(&args.data)?;
    let mut conn = db.conn()?;
    let user = find_user(&mut conn, &args.username)?;
    for d in db::users::devices(&mut conn, user.id)? {
        say(&format!(
            "{}  {}  created {}  {}",
            d.id,
            d.device_name,
            d.created_at.to_rfc3339(),
            match d.revoked_at {
                Some(t) => format!("revoked {}", t.to_rfc3339()),
                None => "live".into(),
            }
        ))?;
    }
    Ok(())
}

fn user_revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let (db, _) = open_db(&args.data)?;
    let mut conn = db.conn()?;
    let revoked = db::write_transaction(&mut conn, |conn| -> anyhow::Result<bool> {
        let (owner, device_name, _) = db::users::token(conn, &args.token)?
            .ok_or_else(|| anyhow!("no device token {:?}", args.token))?;
        let revoked = db::users::revoke_token(conn, &args.token)?;
        if revoked {
            db::audit::record(
                conn,
                &db::audit::Who::cli(),
                "token.revoke",
                Some(&args.token),
                &serde_json::json!({"user_id": owner, "device_name": device_name}),
            )?;
        }
        Ok(revoked)
    })?;
    say(&if revoked {
        format!("token {} revoked", args.token)
    } else {
        format!("token {} was already revoked", args.token)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
