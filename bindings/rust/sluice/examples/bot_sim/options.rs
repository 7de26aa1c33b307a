//! The command line: every workload figure is an option, with the C
//! program's names, ranges and defaults (examples/bot_sim/options.c), so
//! the same command runs either program.

pub const USAGE: &str = "usage: bot_sim [options]
  --conninfo=S          PostgreSQL to use (default $SLUICE_PG_CONNINFO)
  --users=N             users (default 1000)
  --groups=N            groups; user u is in group u % groups (default 50)
  --messages=N          messages to send in all (default 20000)
  --inflight=N          messages handled at once (default 64)
  --rate=R              messages offered per second; 0: as fast as in-flight allows (default 0)
  --user-limit=N        per user, per --user-window-ms (default 20 per 60000: the origin's)
  --user-window-ms=MS
  --group-limit=N       per group, per --group-window-ms (default 300 per 60000)
  --group-window-ms=MS
  --ai-percent=P        messages that call the AI service (default 10)
  --ai-fail-percent=P   AI calls that fail transiently (default 20)
  --ai-ms=MS            how long an AI call takes (default 20)
  --ai-blocking         run each AI call as a blocking closure on the task
                        pool's worker threads (spawn_blocking) instead of a
                        permit held across a sluice timer
  --db-fail-percent=P   updates the server rejects with a serialization
                        failure first, retried (default 5)
  --workers=N           task pool limit for AI calls (default 20, the origin's)
  --pool-size=N         PostgreSQL connections (default 8)
  --threads=N           executor threads polling the messages (default 1)
  --prom=PATH           Prometheus text output (default bot_sim.prom)
  --seed=N              random source (default 1)
  --quiet               no progress line
";

/// SLUICE_LIMITER_MAX_LOG (limiter.h): the sliding log keeps one entry
/// per unit, so the user limit is bounded (sluice-sys does not declare it).
const LIMITER_MAX_LOG: u64 = 65535;

/// The workload. Field names follow the options.
#[derive(Debug, Clone)]
pub struct Options {
    pub conninfo: String,
    pub users: u64,
    pub groups: u64,
    pub messages: u64,
    pub inflight: u64,
    /// Messages per second offered; 0: as fast as in-flight allows.
    pub rate: f64,
    pub user_limit: u64,
    pub user_window_ms: u64,
    pub group_limit: u64,
    pub group_window_ms: u64,
    pub ai_percent: f64,
    pub ai_fail_percent: f64,
    pub ai_ms: u64,
    pub ai_blocking: bool,
    pub db_fail_percent: f64,
    pub workers: u64,
    pub pool_size: u64,
    pub threads: u64,
    pub prom_path: String,
    pub seed: u64,
    pub quiet: bool,
}

/// What the command line asks for.
pub enum Parsed {
    Run(Options),
    /// --help was printed: exit 0.
    Help,
}

/// The value of "--name=value" if `arg` is that option.
fn value_of<'a>(arg: &'a str, name: &str) -> Option<&'a str> {
    arg.strip_prefix("--")?.strip_prefix(name)?.strip_prefix('=')
}

fn int(name: &str, v: &str, min: u64, max: u64) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(x) if (min..=max).contains(&x) => Ok(x),
        _ => Err(format!("--{name}={v}: expected an integer in {min}..{max}")),
    }
}

fn number(name: &str, v: &str, min: f64, max: f64) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if x >= min && x <= max => Ok(x),
        _ => Err(format!("--{name}={v}: expected a number in {min}..{max}")),
    }
}

/// Parses the arguments after the program name. Err carries the message
/// to print before exiting with status 2.
pub fn parse(args: impl IntoIterator<Item = String>, env_conninfo: Option<String>) -> Result<Parsed, String> {
    let mut o = Options {
        conninfo: env_conninfo.unwrap_or_default(),
        users: 1000, groups: 50, messages: 20000, inflight: 64, rate: 0.0,
        user_limit: 20, user_window_ms: 60000, group_limit: 300, group_window_ms: 60000,
        ai_percent: 10.0, ai_fail_percent: 20.0, ai_ms: 20, ai_blocking: false, db_fail_percent: 5.0,
        workers: 20, pool_size: 8, threads: 1, prom_path: "bot_sim.prom".into(), seed: 1, quiet: false,
    };
    for a in args {
        let a = a.as_str();
        if a == "--help" || a == "-h" {
            return Ok(Parsed::Help);
        } else if a == "--quiet" {
            o.quiet = true;
        } else if a == "--ai-blocking" {
            o.ai_blocking = true;
        } else if let Some(v) = value_of(a, "conninfo") {
            o.conninfo = v.into();
        } else if let Some(v) = value_of(a, "prom") {
            o.prom_path = v.into();
        } else if let Some(v) = value_of(a, "users") {
            o.users = int("users", v, 1, 100_000_000)?;
        } else if let Some(v) = value_of(a, "groups") {
            o.groups = int("groups", v, 1, 100_000_000)?;
        } else if let Some(v) = value_of(a, "messages") {
            o.messages = int("messages", v, 1, 1_000_000_000)?;
        } else if let Some(v) = value_of(a, "inflight") {
            o.inflight = int("inflight", v, 1, 100_000)?;
        } else if let Some(v) = value_of(a, "rate") {
            o.rate = number("rate", v, 0.0, 1e7)?;
        } else if let Some(v) = value_of(a, "user-limit") {
            o.user_limit = int("user-limit", v, 1, LIMITER_MAX_LOG)?;
        } else if let Some(v) = value_of(a, "user-window-ms") {
            o.user_window_ms = int("user-window-ms", v, 1, 86_400_000)?;
        } else if let Some(v) = value_of(a, "group-limit") {
            o.group_limit = int("group-limit", v, 1, 1_000_000_000)?;
        } else if let Some(v) = value_of(a, "group-window-ms") {
            o.group_window_ms = int("group-window-ms", v, 1, 86_400_000)?;
        } else if let Some(v) = value_of(a, "ai-percent") {
            o.ai_percent = number("ai-percent", v, 0.0, 100.0)?;
        } else if let Some(v) = value_of(a, "ai-fail-percent") {
            o.ai_fail_percent = number("ai-fail-percent", v, 0.0, 100.0)?;
        } else if let Some(v) = value_of(a, "db-fail-percent") {
            o.db_fail_percent = number("db-fail-percent", v, 0.0, 100.0)?;
        } else if let Some(v) = value_of(a, "ai-ms") {
            o.ai_ms = int("ai-ms", v, 0, 60_000)?;
        } else if let Some(v) = value_of(a, "workers") {
            o.workers = int("workers", v, 1, 65_536)?;
        } else if let Some(v) = value_of(a, "pool-size") {
            o.pool_size = int("pool-size", v, 1, 1000)?;
        } else if let Some(v) = value_of(a, "threads") {
            o.threads = int("threads", v, 1, 64)?;
        } else if let Some(v) = value_of(a, "seed") {
            o.seed = int("seed", v, 0, 0x7fff_ffff)?;
        } else {
            return Err(format!("unknown option {a}\n{USAGE}"));
        }
    }
    if o.conninfo.is_empty() {
        return Err("no database: give --conninfo or set SLUICE_PG_CONNINFO".into());
    }
    Ok(Parsed::Run(o))
}
