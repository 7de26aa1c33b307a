//! bot_sim, through the Rust binding: the origin's chat bot under load,
//! the same program as examples/bot_sim (C) with the same options, schema,
//! per-message path, report and database check (docs/bot_sim.md).
//!
//!   cargo run --release --offline --example bot_sim -- --help
//!
//! Files: bot_sim/options.rs (the command line), bot_sim/message.rs (one
//! message's path, an async fn), bot_sim/executor.rs (the std-only
//! executor running the in-flight slots), bot_sim/report.rs (progress,
//! the table, the Prometheus file, the check), this file (wiring).
#[path = "common/block_on.rs"]
mod block_on;
#[path = "bot_sim/executor.rs"]
mod executor;
#[path = "bot_sim/message.rs"]
mod message;
#[path = "bot_sim/options.rs"]
mod options;
#[path = "bot_sim/report.rs"]
mod report;

use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::{Algorithm, Breaker, BreakerOptions, BreakerWindow, Limiter, LimiterOptions, Locks, LocksOptions, Monitor,
             Pool, PoolOptions, RetryOptions, RetryPolicy, Runtime, TaskPool, TaskPoolOptions};

use block_on::block_on;
use message::{Counters, Sim};
use options::{Options, Parsed};

/// The schema, as main.c creates it. bot_add_point is idempotent by
/// message id (a retry after an ambiguous failure adds nothing twice), and
/// raises a real serialization failure when asked to, so the retry path
/// runs against the server.
const SETUP_SQL: &[&str] = &[
    "DROP TABLE IF EXISTS bot_msgs, bot_users",
    "CREATE TABLE bot_users (id int PRIMARY KEY, points bigint NOT NULL DEFAULT 0)",
    "CREATE TABLE bot_msgs (id bigint PRIMARY KEY, user_id int NOT NULL)",
    "CREATE OR REPLACE FUNCTION bot_add_point(p_msg bigint, p_user int, p_fail boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF p_fail THEN
    RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure';
  END IF;
  INSERT INTO bot_msgs (id, user_id) VALUES (p_msg, p_user) ON CONFLICT (id) DO NOTHING;
  IF FOUND THEN
    UPDATE bot_users SET points = points + 1 WHERE id = p_user;
  END IF;
END $$",
];

/// Runs one statement on the pool and waits: the first value of the first
/// row ("" if none), or None after printing the error.
pub fn query_value(pool: &Pool, sql: &str) -> Option<String> {
    match block_on(pool.query(sql, &[])) {
        Ok(rows) => Some(if rows.is_empty() { String::new() } else {
            rows.text(0, 0).ok().flatten().unwrap_or_default().to_owned()
        }),
        Err(e) => {
            let head: String = sql.chars().take(60).collect();
            eprintln!("bot_sim: {head}...: {e}");
            None
        }
    }
}

fn fail_with(what: &str) -> impl FnOnce(sluice::Error) -> String + '_ { move |e| format!("{what}: {e}") }

/// The objects, with main.c's options.
fn make_sim(o: Options) -> Result<Sim, String> {
    let rt = Runtime::builder().thread_name("bot-loop").build().map_err(fail_with("runtime"))?;
    let mon = Arc::new(Monitor::new(Some(&rt)).map_err(fail_with("monitor"))?);
    let pool = Pool::new(&rt, &o.conninfo, PoolOptions { min_size: 1, max_size: o.pool_size as u32,
                                                          monitor: Some(mon.clone()), ..Default::default() })
        .map_err(fail_with("PostgreSQL pool"))?;
    let user_limit = Limiter::new(Some(&rt), LimiterOptions {
        algorithm: Algorithm::SlidingLog, // users are told an exact rule
        limit: o.user_limit, window: Duration::from_millis(o.user_window_ms), max_keys: o.users + 1000,
        monitor: Some(mon.clone()), name: Some("limit.user".into()), ..Default::default()
    }).map_err(fail_with("user limiter"))?;
    let group_limit = Limiter::new(Some(&rt), LimiterOptions {
        algorithm: Algorithm::SlidingWindow, // O(1) per group whatever the limit
        limit: o.group_limit, window: Duration::from_millis(o.group_window_ms), max_keys: o.groups + 1000,
        monitor: Some(mon.clone()), name: Some("limit.group".into()), ..Default::default()
    }).map_err(fail_with("group limiter"))?;
    let locks = Locks::new(&rt, LocksOptions { monitor: Some(mon.clone()), ..Default::default() })
        .map_err(fail_with("locks"))?;
    let tasks = TaskPool::new(&rt, TaskPoolOptions {
        max_concurrent: o.workers as u32, max_queued: (o.inflight * 4 + 100) as u32, monitor: Some(mon.clone()),
        name: Some("ai.task".into()), ..Default::default()
    }).map_err(fail_with("task pool"))?;
    let ai_breaker = Breaker::new(BreakerOptions {
        window: BreakerWindow::Count(50), minimum_calls: 20,
        failure_rate_percent: 80.0, // trips when the service is down, not when flaky
        open: Duration::from_millis(2000), monitor: Some(mon.clone()), name: Some("ai.breaker".into()),
        ..Default::default()
    }).map_err(fail_with("breaker"))?;
    let ai_options = RetryOptions {
        max_attempts: 3, base_delay: Duration::from_millis(20), max_delay: Duration::from_millis(500),
        total_timeout: Some(Duration::from_millis(10000)),
        budget_ratio: 0.5, // room for retries at the default 20% failure rate
        breaker: Some(ai_breaker.clone()), monitor: Some(mon.clone()), name: Some("ai".into()), seed: o.seed,
        ..Default::default()
    };
    let ai_retry = RetryPolicy::new(&rt, ai_options.clone()).map_err(fail_with("AI retry policy"))?;
    let db_retry = RetryPolicy::new(&rt, RetryOptions {
        max_attempts: 5, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(200),
        budget_ratio: 0.2, breaker: None, name: Some("db".into()), ..ai_options
    }).map_err(fail_with("database retry policy"))?;
    Ok(Sim { opt: o, rt, mon, user_limit, group_limit, locks, tasks, ai_breaker, ai_retry, db_retry, pool,
             next: AtomicU64::new(0), start: Instant::now(), n: Counters::default() })
}

fn run(o: Options) -> ExitCode {
    let mut sim = match make_sim(o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bot_sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    for sql in SETUP_SQL {
        if query_value(&sim.pool, sql).is_none() {
            return ExitCode::FAILURE;
        }
    }
    if query_value(&sim.pool, &format!("INSERT INTO bot_users (id) SELECT generate_series(0, {})", sim.opt.users - 1))
        .is_none() {
        return ExitCode::FAILURE;
    }
    let o = &sim.opt;
    println!("bot_sim: {} messages from {} users in {} groups, {} in flight{}; limits {} per {} ms per user, {} per {} \
              ms per group; AI on {:.0}% of messages ({} ms, {:.0}% failing{}), {} AI workers, {} connections, {} \
              executor thread(s)",
             o.messages, o.users, o.groups, o.inflight, if o.rate > 0.0 { ", paced" } else { "" }, o.user_limit,
             o.user_window_ms, o.group_limit, o.group_window_ms, o.ai_percent, o.ai_ms, o.ai_fail_percent,
             if o.ai_blocking { ", blocking" } else { "" }, o.workers, o.pool_size, o.threads);
    let (inflight, threads) = (o.inflight.min(o.messages) as usize, o.threads as usize);

    sim.start = Instant::now();
    let sim = Arc::new(sim);
    let slots: Vec<executor::Task> = (0..inflight).map(|_| Box::pin(message::slot(sim.clone())) as executor::Task)
        .collect();
    let running = executor::spawn_all(threads, slots);
    report::progress(&sim, || running.finished());
    let seconds = sim.start.elapsed().as_secs_f64();
    let tasks_ok = running.join();
    // A panicked task lost its message: the check shows it too.
    let ok = report::report(&sim, seconds) && tasks_ok;
    // Nothing runs any more; wait for AI closures still on the workers.
    let _ = sim.tasks.shutdown(Some(Duration::from_secs(10)));
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn main() -> ExitCode {
    match options::parse(std::env::args().skip(1), std::env::var("SLUICE_PG_CONNINFO").ok()) {
        Ok(Parsed::Run(o)) => run(o),
        Ok(Parsed::Help) => {
            print!("{}", options::USAGE);
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("bot_sim: {msg}");
            ExitCode::from(2)
        }
    }
}
