// Command botsim is the bot simulation (examples/bot_sim, docs/bot_sim.md)
// written through the Go binding: users in groups send messages; each
// message passes the user's and the group's rate limits (all or nothing),
// takes the user's lock, sometimes calls a simulated AI service under a
// task pool slot (retried behind a circuit breaker), adds a point to the
// user in PostgreSQL through the pool (retried; idempotent by message id),
// and releases the lock. It ends with the monitor's table, the objects'
// figures, a Prometheus file, and a check that the points stored equal the
// messages accepted (exit 1 if not).
//
//	go run ./cmd/botsim --conninfo="host=127.0.0.1 port=5432 dbname=postgres"
//
// Where the C program runs every step as a callback on the loop thread,
// this one runs each in-flight message slot as a goroutine that blocks on
// each step with a context deadline; the library does the waiting.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	sluice "github.com/sluicelib/sluice/bindings/go"
)

// The schema, as examples/bot_sim/main.c makes it. bot_add_point is
// idempotent by message id (a retry after an ambiguous failure adds
// nothing twice), and raises a real serialization failure when asked to,
// so the retry path runs against the server.
var setupSQL = []string{
	"DROP TABLE IF EXISTS bot_msgs, bot_users",
	"CREATE TABLE bot_users (id int PRIMARY KEY, points bigint NOT NULL DEFAULT 0)",
	"CREATE TABLE bot_msgs (id bigint PRIMARY KEY, user_id int NOT NULL)",
	`CREATE OR REPLACE FUNCTION bot_add_point(p_msg bigint, p_user int, p_fail boolean)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF p_fail THEN
    RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure';
  END IF;
  INSERT INTO bot_msgs (id, user_id) VALUES (p_msg, p_user) ON CONFLICT (id) DO NOTHING;
  IF FOUND THEN
    UPDATE bot_users SET points = points + 1 WHERE id = p_user;
  END IF;
END $$`,
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, code, ok := parseOptions(args, os.Stderr)
	if !ok {
		return code
	}
	s, err := newSim(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "botsim: %v\n", err)
		if s != nil {
			s.close()
		}
		return 1
	}
	defer s.close()

	ctx := context.Background()
	for _, sql := range setupSQL {
		if _, err := s.pool.Exec(ctx, sql); err != nil {
			fmt.Fprintf(os.Stderr, "botsim: %.60s...: %v\n", sql, err)
			return 1
		}
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO bot_users (id) SELECT generate_series(0, $1::int)", o.users-1); err != nil {
		fmt.Fprintf(os.Stderr, "botsim: users: %v\n", err)
		return 1
	}

	paced := ""
	if o.rate > 0 {
		paced = ", paced"
	}
	fmt.Printf("botsim (go): %d messages from %d users in %d groups, %d in flight%s; limits %d per "+
		"%d ms per user, %d per %d ms per group; AI on %.0f%% of messages (%d ms, %.0f%% "+
		"failing), %d AI workers, %d connections\n",
		o.messages, o.users, o.groups, o.inflight, paced, o.userLimit, o.userWindowMS,
		o.groupLimit, o.groupWindowMS, o.aiPercent, o.aiMS, o.aiFailPercent, o.workers, o.poolSize)

	start := time.Now()
	done := make(chan struct{})
	go func() {
		s.runAll(ctx, start)
		close(done)
	}()
	s.progress(start, done)
	return s.report(time.Since(start))
}

// sim is everything the messages share.
type sim struct {
	opt        options
	rt         *sluice.Runtime
	mon        *sluice.Monitor
	pool       *sluice.Pool
	userLimit  *sluice.Limiter
	groupLimit *sluice.Limiter
	locks      *sluice.Locks
	tasks      *sluice.TaskPool
	aiBreaker  *sluice.Breaker
	aiRetry    *sluice.Policy
	dbRetry    *sluice.Policy

	counts counters
}

// newSim makes the objects with the C program's settings. On error the
// returned sim (if any) holds what was made, for close.
func newSim(o options) (*sim, error) {
	s := &sim{opt: o}
	var err error
	if s.rt, err = sluice.New(sluice.WithThreadName("botsim-loop")); err != nil {
		return nil, fmt.Errorf("runtime: %w", err)
	}
	if s.mon, err = sluice.NewMonitor(s.rt, 0); err != nil {
		return s, fmt.Errorf("monitor: %w", err)
	}
	if s.pool, err = sluice.NewPool(s.rt, o.conninfo, sluice.PoolOptions{
		MinSize: 1, MaxSize: int(o.poolSize), Monitor: s.mon,
	}); err != nil {
		return s, fmt.Errorf("PostgreSQL pool: %w", err)
	}
	// Users are told an exact rule (sliding log); groups need O(1) state
	// whatever the limit (window counter).
	if s.userLimit, err = sluice.NewLimiter(s.rt, sluice.LimiterOptions{
		Algorithm: sluice.SlidingLog, Limit: uint64(o.userLimit),
		Window: time.Duration(o.userWindowMS) * time.Millisecond, MaxKeys: uint64(o.users) + 1000,
		Monitor: s.mon, Name: "limit.user",
	}); err != nil {
		return s, fmt.Errorf("user limiter: %w", err)
	}
	if s.groupLimit, err = sluice.NewLimiter(s.rt, sluice.LimiterOptions{
		Algorithm: sluice.SlidingWindow, Limit: uint64(o.groupLimit),
		Window: time.Duration(o.groupWindowMS) * time.Millisecond, MaxKeys: uint64(o.groups) + 1000,
		Monitor: s.mon, Name: "limit.group",
	}); err != nil {
		return s, fmt.Errorf("group limiter: %w", err)
	}
	if s.locks, err = sluice.NewLocks(s.rt, sluice.LocksOptions{Monitor: s.mon}); err != nil {
		return s, fmt.Errorf("locks: %w", err)
	}
	if s.tasks, err = sluice.NewTaskPool(s.rt, sluice.TaskPoolOptions{
		MaxConcurrent: int(o.workers), MaxQueued: int(o.inflight*4 + 100),
		Monitor: s.mon, Name: "ai.task",
	}); err != nil {
		return s, fmt.Errorf("task pool: %w", err)
	}
	// Trips when the service is down, not when it is flaky.
	if s.aiBreaker, err = sluice.NewBreaker(sluice.BreakerOptions{
		WindowCalls: 50, MinimumCalls: 20, FailureRate: 80, OpenFor: 2 * time.Second,
		Monitor: s.mon, Name: "ai.breaker",
	}); err != nil {
		return s, fmt.Errorf("breaker: %w", err)
	}
	if s.aiRetry, err = sluice.NewPolicy(sluice.PolicyOptions{
		MaxAttempts: 3, BaseDelay: 20 * time.Millisecond, MaxDelay: 500 * time.Millisecond,
		TotalTimeout: 10 * time.Second,
		BudgetRatio:  0.5, // room for retries at the default 20% failure rate
		Breaker:      s.aiBreaker, Monitor: s.mon, Name: "ai", Seed: uint64(o.seed),
	}); err != nil {
		return s, fmt.Errorf("AI retry policy: %w", err)
	}
	// The statement is idempotent: an ambiguous failure is retried too.
	if s.dbRetry, err = sluice.NewPolicy(sluice.PolicyOptions{
		MaxAttempts: 5, BaseDelay: 5 * time.Millisecond, MaxDelay: 200 * time.Millisecond,
		TotalTimeout: 10 * time.Second, BudgetRatio: 0.2, Idempotent: true,
		Monitor: s.mon, Name: "db", Seed: uint64(o.seed),
	}); err != nil {
		return s, fmt.Errorf("database retry policy: %w", err)
	}
	return s, nil
}

// close frees the objects, users before what they use.
func (s *sim) close() {
	if s.dbRetry != nil {
		s.dbRetry.Close()
	}
	if s.aiRetry != nil {
		s.aiRetry.Close()
	}
	if s.tasks != nil {
		s.tasks.Shutdown(10 * time.Second)
		s.tasks.Close()
	}
	if s.aiBreaker != nil {
		s.aiBreaker.Close()
	}
	if s.locks != nil {
		s.locks.Close()
	}
	if s.groupLimit != nil {
		s.groupLimit.Close()
	}
	if s.userLimit != nil {
		s.userLimit.Close()
	}
	if s.pool != nil {
		s.pool.Close(5 * time.Second)
	}
	if s.mon != nil {
		s.mon.Close()
	}
	if s.rt != nil {
		s.rt.Close()
	}
}
