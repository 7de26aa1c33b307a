package main

// What the operator sees: a progress line, the closing table, the
// Prometheus file, and the check of the database against the run.

import (
	"context"
	"fmt"
	"os"
	"time"

	sluice "github.com/sluicelib/sluice/bindings/go"
)

// progress prints a line rewritten in place on a terminal, a line every
// 5 s in a log, until done is closed.
func (s *sim) progress(start time.Time, done <-chan struct{}) {
	fi, _ := os.Stderr.Stat()
	tty := fi != nil && fi.Mode()&os.ModeCharDevice != 0
	every := 5 * time.Second
	if tty {
		every = 250 * time.Millisecond
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-done:
			if tty && !s.opt.quiet {
				fmt.Fprintln(os.Stderr)
			}
			return
		case <-tick.C:
		}
		if s.opt.quiet {
			continue
		}
		secs := time.Since(start).Seconds()
		c := &s.counts
		fin := c.finished.Load()
		cr, nl := "", "\n"
		if tty {
			cr, nl = "\r", "   "
		}
		fmt.Fprintf(os.Stderr, "%s%6.1f s  %d/%d messages  %.0f/s  accepted %d  rate-limited %d  "+
			"AI calls %d (failed %d)  failed %d%s", cr, secs, fin, s.opt.messages, float64(fin)/secs,
			c.accepted.Load(), c.rateLimited.Load(), c.aiCalls.Load(), c.aiFailed.Load(),
			c.lockFailed.Load()+c.dbFailed.Load(), nl)
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// meanMS is total spread over n, in milliseconds; 0 when there was none.
func meanMS(total time.Duration, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return ms(total / time.Duration(n))
}

func (s *sim) printOperations() {
	fmt.Printf("\n%-22s %9s %9s %10s %10s %10s\n", "operation", "count", "success", "p50 ms", "p99 ms", "max ms")
	ops, err := s.mon.Stats(sluice.WindowAll)
	if err != nil {
		fmt.Printf("(monitor: %v)\n", err)
		return
	}
	// "message" first, as in the C program; then the library's series.
	for _, first := range []bool{true, false} {
		for _, op := range ops {
			if op.Count == 0 || (op.Name == "message") != first {
				continue
			}
			fmt.Printf("%-22s %9d %8.2f%% %10.3f %10.3f %10.3f\n", op.Name, op.Count,
				op.SuccessRate*100, ms(op.P50), ms(op.P99), ms(op.Max))
		}
	}
}

func (s *sim) printObjects() {
	us, _ := s.userLimit.Stats()
	gs, _ := s.groupLimit.Stats()
	fmt.Printf("\nlimits   user: %d allowed, %d refused, %d keys now (peak %d)\n"+
		"         group: %d allowed, %d refused, %d keys now (peak %d)\n",
		us.Allowed, us.Rejected, us.Keys, us.PeakKeys, gs.Allowed, gs.Rejected, gs.Keys, gs.PeakKeys)
	ls, _ := s.locks.Stats()
	meanWait := meanMS(ls.WaitTotal, ls.Contended)
	fmt.Printf("locks    %d acquisitions, %d had to wait (mean wait %.3f ms), %d timeouts, peak %d users locked\n",
		ls.Acquisitions, ls.Contended, meanWait, ls.Timeouts, ls.PeakLiveKeys)
	ts, _ := s.tasks.Stats()
	ran := ts.Completed + ts.Failed
	qwait := meanMS(ts.QueueWait, ran)
	fmt.Printf("tasks    %d AI calls run, %d failed, %d rejected, %d expired, peak %d running, mean queue wait %.3f ms\n",
		ran, ts.Failed, ts.Rejected, ts.Expired, ts.PeakRunning, qwait)
	ai, _ := s.aiRetry.Stats()
	db, _ := s.dbRetry.Stats()
	bs, _ := s.aiBreaker.Stats()
	fmt.Printf("retries  AI: %d attempts for %d runs (%d refused by the budget, %d by the breaker: %s, "+
		"tripped %d times); database: %d attempts for %d runs\n",
		ai.Attempts, ai.Runs, ai.BudgetRefusals, ai.BreakerRefusals, bs.State, bs.Opened, db.Attempts, db.Runs)
	ps, _ := s.pool.Stats()
	pwait := meanMS(ps.WaitTotal, ps.Acquires)
	fmt.Printf("pool     %d connections (peak %d), %d queries, %d errors, %d timeouts, mean wait for a connection %.3f ms\n",
		ps.Total, ps.PeakTotal, ps.Queries, ps.QueryErrors, ps.QueryTimeouts, pwait)
	pr, _ := s.mon.Process()
	fmt.Printf("process  RSS %.1f MiB, CPU user %.2f s system %.2f s, loop lag max %.3f ms, %d open files\n",
		float64(pr.RSS)/1048576.0, pr.CPUUser.Seconds(), pr.CPUSystem.Seconds(), ms(pr.LoopLagMax), pr.OpenFDs)
}

func (s *sim) writePrometheus() error {
	text, err := s.mon.Prometheus()
	if err != nil {
		return err
	}
	return os.WriteFile(s.opt.promPath, []byte(text), 0o644)
}

// report prints the results and checks the database: every accepted
// message is one point and one message row, nothing refused or failed
// left a trace, and every message is accounted for. 0 if so.
func (s *sim) report(elapsed time.Duration) int {
	c := &s.counts
	fin, acc := c.finished.Load(), c.accepted.Load()
	limited, lockFailed, dbFailed := c.rateLimited.Load(), c.lockFailed.Load(), c.dbFailed.Load()
	secs := elapsed.Seconds()
	fmt.Printf("\n%d messages from %d users in %d groups in %.2f s: %.0f messages/s\n",
		fin, s.opt.users, s.opt.groups, secs, float64(fin)/secs)
	fmt.Printf("accepted %d, rate-limited %d, lock timeouts %d, database failures %d; "+
		"AI calls %d, %d of them answered with the fallback\n",
		acc, limited, lockFailed, dbFailed, c.aiCalls.Load(), c.aiFailed.Load())
	s.printOperations()
	s.printObjects()
	promErr := s.writePrometheus()
	if promErr != nil {
		fmt.Fprintf(os.Stderr, "botsim: %s: %v\n", s.opt.promPath, promErr)
	} else {
		fmt.Printf("\nPrometheus text written to %s\n", s.opt.promPath)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var points, rows int64
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(sum(points), 0) FROM bot_users").Scan(&points); err != nil {
		fmt.Fprintf(os.Stderr, "botsim: check: %v\n", err)
		return 1
	}
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM bot_msgs").Scan(&rows); err != nil {
		fmt.Fprintf(os.Stderr, "botsim: check: %v\n", err)
		return 1
	}
	booksOK := fin == acc+limited+lockFailed+dbFailed
	if points == acc && rows == acc && booksOK {
		fmt.Printf("check: %d points stored = %d messages accepted: OK\n", points, acc)
		if promErr != nil {
			return 1
		}
		return 0
	}
	adds := "does not add up"
	if booksOK {
		adds = "adds up"
	}
	fmt.Printf("check FAILED: %d points and %d message rows stored, %d messages accepted "+
		"(%d finished = %d accepted + %d limited + %d lock + %d db: %s)\n",
		points, rows, acc, fin, acc, limited, lockFailed, dbFailed, adds)
	return 1
}
