//! What the operator sees: a live progress line, the closing table, the
//! Prometheus file, and the check of the database against the run (the C
//! program's report.c, line for line where the binding has the figures).
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice::BreakerState;
use sluice_sys as sys;

use crate::message::{Counters, Sim};
use crate::query_value;

fn ms(d: Duration) -> f64 { d.as_secs_f64() * 1e3 }

/// Main thread: a line rewritten in place on a terminal, a line every 5 s
/// in a log, until `done()` says every slot task has ended.
pub fn progress(sim: &Sim, done: impl Fn() -> bool) {
    let tty = std::io::stderr().is_terminal();
    let every = if tty { 250 } else { 5000 };
    let mut waited = 0;
    while !done() {
        std::thread::sleep(Duration::from_millis(50));
        waited += 50;
        if sim.opt.quiet || waited < every {
            continue;
        }
        waited = 0;
        let secs = sim.start.elapsed().as_secs_f64();
        let n = &sim.n;
        let fin = Counters::get(&n.finished);
        eprint!("{}{secs:6.1} s  {fin}/{} messages  {:.0}/s  accepted {}  rate-limited {}  AI calls {} (failed {})  \
                 failed {}{}",
                if tty { "\r" } else { "" }, sim.opt.messages, if secs > 0.0 { fin as f64 / secs } else { 0.0 },
                Counters::get(&n.accepted), Counters::get(&n.rate_limited), Counters::get(&n.ai_calls),
                Counters::get(&n.ai_failed), Counters::get(&n.lock_failed) + Counters::get(&n.db_failed),
                if tty { "   " } else { "\n" });
    }
    if tty && !sim.opt.quiet {
        eprintln!();
    }
}

fn print_operations(sim: &Sim) {
    println!("\n{:<22} {:>9} {:>9} {:>10} {:>10} {:>10}", "operation", "count", "success", "p50 ms", "p99 ms", "max ms");
    match sim.mon.stats() {
        Ok(series) => {
            for s in series.iter().filter(|s| s.count > 0) {
                println!("{:<22} {:>9} {:>8.2}% {:>10.3} {:>10.3} {:>10.3}", s.name, s.count, s.success_rate * 100.0,
                         ms(s.p50), ms(s.p99), ms(s.max));
            }
        }
        Err(e) => eprintln!("bot_sim: monitor: {e}"),
    }
}

/// The objects' figures. The pool's connection wait and the process
/// figures are not in the safe binding yet: read through sluice-sys.
fn print_objects(sim: &Sim) -> Result<(), sluice::Error> {
    let (us, gs) = (sim.user_limit.stats()?, sim.group_limit.stats()?);
    println!("\nlimits   user: {} allowed, {} refused, {} keys now (peak {})\n         group: {} allowed, {} refused, \
              {} keys now (peak {})",
             us.allowed, us.rejected, us.keys, us.peak_keys, gs.allowed, gs.rejected, gs.keys, gs.peak_keys);
    let ls = sim.locks.stats()?;
    println!("locks    {} acquisitions, {} had to wait (mean wait {:.3} ms), {} timeouts, peak {} users locked",
             ls.acquisitions, ls.contended, if ls.contended > 0 { ms(ls.wait) / ls.contended as f64 } else { 0.0 },
             ls.timeouts, ls.peak_live_keys);
    let ts = sim.tasks.stats()?;
    let ran = ts.completed + ts.failed;
    println!("tasks    {ran} AI calls run, {} failed, {} rejected, {} expired, peak {} running, mean queue wait {:.3} ms",
             ts.failed, ts.rejected, ts.expired, ts.peak_running,
             if ran > 0 { ms(ts.queue_wait) / ran as f64 } else { 0.0 });
    let (ai, db, bs) = (sim.ai_retry.stats()?, sim.db_retry.stats()?, sim.ai_breaker.stats()?);
    let state = match bs.state { BreakerState::Closed => "closed", BreakerState::Open => "open",
                                 BreakerState::HalfOpen => "half-open" };
    println!("retries  AI: {} attempts for {} runs ({} refused by the budget, {} by the breaker: {state}, tripped {} \
              times); database: {} attempts for {} runs",
             ai.attempts, ai.runs, ai.budget_refusals, ai.breaker_refusals, bs.opened, db.attempts, db.runs);

    let mut ps = sys::sluice_pg_pool_stats { size: std::mem::size_of::<sys::sluice_pg_pool_stats>(), ..Default::default() };
    // SAFETY: the pool is alive (sim holds it) and `ps` is sized for the call.
    let rc = unsafe { sys::sluice_pg_pool_stats_get(sim.pool.as_raw(), &mut ps) };
    if rc == 0 {
        println!("pool     {} connections (peak {}), {} queries, {} errors, {} timeouts, mean wait for a connection {:.3} ms",
                 ps.total, ps.peak_total, ps.queries, ps.query_errors, ps.query_timeouts,
                 if ps.acquires > 0 { ps.wait_ns_total as f64 / ps.acquires as f64 / 1e6 } else { 0.0 });
    }
    let mut pr: sys::sluice_process_stats = unsafe { std::mem::zeroed() };
    pr.size = std::mem::size_of::<sys::sluice_process_stats>();
    // SAFETY: as above, for the monitor.
    if unsafe { sys::sluice_monitor_process(sim.mon.as_raw(), &mut pr) } == 0 {
        println!("process  RSS {:.1} MiB, CPU user {:.2} s system {:.2} s, loop lag max {:.3} ms, {} open files",
                 pr.rss_bytes as f64 / 1048576.0, pr.cpu_user_ns as f64 / 1e9, pr.cpu_system_ns as f64 / 1e9,
                 pr.loop_lag_max_ns as f64 / 1e6, pr.open_fds);
    }
    Ok(())
}

fn write_prometheus(sim: &Sim) -> bool {
    let written = sim.mon.prometheus().map_err(|e| e.to_string())
        .and_then(|text| std::fs::write(&sim.opt.prom_path, text).map_err(|e| e.to_string()));
    match written {
        Ok(()) => true,
        Err(e) => {
            eprintln!("{}: {e}", sim.opt.prom_path);
            false
        }
    }
}

/// Main thread, after the run: the table, the Prometheus file and the
/// database check. True if the points stored match the messages accepted
/// and every message is accounted for.
pub fn report(sim: &Sim, seconds: f64) -> bool {
    let n = &sim.n;
    let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Acquire);
    let (fin, acc, limited) = (g(&n.finished), g(&n.accepted), g(&n.rate_limited));
    let (lock_failed, db_failed) = (g(&n.lock_failed), g(&n.db_failed));
    println!("\n{fin} messages from {} users in {} groups in {seconds:.2} s: {:.0} messages/s",
             sim.opt.users, sim.opt.groups, fin as f64 / seconds);
    println!("accepted {acc}, rate-limited {limited}, lock timeouts {lock_failed}, database failures {db_failed}; \
              AI calls {}, {} of them answered with the fallback", g(&n.ai_calls), g(&n.ai_failed));
    print_operations(sim);
    if let Err(e) = print_objects(sim) {
        eprintln!("bot_sim: figures: {e}");
    }
    let prom_ok = write_prometheus(sim);
    if prom_ok {
        println!("\nPrometheus text written to {}", sim.opt.prom_path);
    }
    let _ = std::io::stdout().flush();

    // The check: every accepted message is one point and one message row;
    // nothing refused or failed left a trace.
    let (Some(points), Some(rows)) = (query_value(&sim.pool, "SELECT coalesce(sum(points), 0) FROM bot_users"),
                                      query_value(&sim.pool, "SELECT count(*) FROM bot_msgs")) else {
        return false;
    };
    let (p, r): (u64, u64) = (points.parse().unwrap_or(u64::MAX), rows.parse().unwrap_or(u64::MAX));
    let books_ok = fin == acc + limited + lock_failed + db_failed;
    if p == acc && r == acc && books_ok {
        println!("check: {p} points stored = {acc} messages accepted: OK");
        return prom_ok;
    }
    println!("check FAILED: {p} points and {r} message rows stored, {acc} messages accepted ({fin} finished = {acc} \
              accepted + {limited} limited + {lock_failed} lock + {db_failed} db: {})",
             if books_ok { "adds up" } else { "does not add up" });
    false
}
