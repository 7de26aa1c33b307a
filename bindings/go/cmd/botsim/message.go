package main

// One message's path, in the goroutine of its in-flight slot:
//   limits (user AND group, all or nothing)
//   -> the user's lock (FIFO, 5 s deadline)
//   -> sometimes the AI service (a task pool slot, retried behind a
//      circuit breaker; a failure gets the fallback reply)
//   -> one point for the user in PostgreSQL (retried; idempotent by the
//      message id, so a retry after an ambiguous failure never counts twice)
//   -> release the lock.
// Each message draws its random choices from its own generator, seeded
// from --seed and its id, so a run makes the same decisions for the same
// seed whatever order the goroutines run in.

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sluice "github.com/sluicelib/sluice/bindings/go"
)

type counters struct {
	finished, accepted, rateLimited, lockFailed, dbFailed, aiFailed, aiCalls atomic.Int64
}

// rng is xorshift64*: plenty for picking users and failures.
type rng uint64

func newRng(seed int64, id int64) rng {
	// splitmix64 of (seed, id): neighbouring ids get unrelated streams.
	z := uint64(seed)*0x9E3779B97F4A7C15 + uint64(id)*0xBF58476D1CE4E5B9 + 1
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	if z == 0 {
		z = 1
	}
	return rng(z)
}

func (r *rng) next() uint64 {
	x := uint64(*r)
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	*r = rng(x)
	return x * 0x2545F4914F6CDD1D
}

func (r *rng) chance(percent float64) bool {
	return float64(r.next()>>11)*(100.0/9007199254740992.0) < percent
}

// errAIDown is the simulated service's transient failure; the default
// classification retries errors it does not know.
var errAIDown = errors.New("AI service unavailable")

// runAll hands message ids to --inflight goroutines, paced by --rate.
func (s *sim) runAll(ctx context.Context, start time.Time) {
	ids := make(chan int64)
	var wg sync.WaitGroup
	for i := int64(0); i < s.opt.inflight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				s.handle(ctx, id)
				s.counts.finished.Add(1)
			}
		}()
	}
	for id := int64(0); id < s.opt.messages; id++ {
		if s.opt.rate > 0 {
			due := start.Add(time.Duration(float64(id) * 1e9 / s.opt.rate))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
		ids <- id
	}
	close(ids)
	wg.Wait()
}

func (s *sim) handle(ctx context.Context, id int64) {
	r := newRng(s.opt.seed, id)
	user := int64(r.next() % uint64(s.opt.users))
	ukey := "u" + strconv.FormatInt(user, 10)
	gkey := "g" + strconv.FormatInt(user%s.opt.groups, 10)
	wantAI := r.chance(s.opt.aiPercent)
	t0 := time.Now()

	res, err := sluice.CheckMany(
		sluice.LimitItem{Limiter: s.userLimit, Key: ukey, Cost: 1},
		sluice.LimitItem{Limiter: s.groupLimit, Key: gkey, Cost: 1})
	if err != nil || !res.Allowed {
		// Refused, or ErrLimit if more users are active than the limiter
		// tracks: either way the bot answers "slow down".
		s.counts.rateLimited.Add(1)
		return
	}

	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	guard, err := s.locks.Lock(lctx, ukey)
	cancel()
	if err != nil {
		s.counts.lockFailed.Add(1)
		s.mon.Record("message", time.Since(t0), err)
		return
	}

	if wantAI {
		s.counts.aiCalls.Add(1)
		if err := s.askAI(ctx, &r); err != nil {
			s.counts.aiFailed.Add(1) // the fallback reply; the message still counts
		}
	}

	err = s.dbRetry.Do(ctx, func(actx context.Context) error {
		qctx, cancel := context.WithTimeout(actx, 5*time.Second)
		defer cancel()
		_, err := s.pool.ExecFlags(qctx, sluice.Idempotent,
			"SELECT bot_add_point($1::bigint, $2::int, $3::boolean)", id, user, r.chance(s.opt.dbFailPercent))
		return err
	})
	if err == nil {
		s.counts.accepted.Add(1)
	} else {
		s.counts.dbFailed.Add(1)
	}
	guard.Unlock()
	s.mon.Record("message", time.Since(t0), err)
}

// askAI is the AI call: each attempt holds a task pool slot (the origin's
// 20 concurrent calls) for the call's duration, waiting for one at most
// 10 s, and the policy retries it behind the breaker.
func (s *sim) askAI(ctx context.Context, r *rng) error {
	return s.aiRetry.Do(ctx, func(actx context.Context) error {
		fail := r.chance(s.opt.aiFailPercent)
		wctx, cancel := context.WithTimeout(actx, 10*time.Second)
		defer cancel()
		return s.tasks.Run(wctx, sluice.PriorityNormal, func() error {
			if s.opt.aiMS > 0 {
				t := time.NewTimer(time.Duration(s.opt.aiMS) * time.Millisecond)
				select {
				case <-t.C:
				case <-actx.Done():
					t.Stop()
					return actx.Err()
				}
			}
			if fail {
				return errAIDown
			}
			return nil
		})
	})
}
