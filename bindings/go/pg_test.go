package sluice

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The pool's tests need a real server: bindings/go/test.sh starts one and
// exports SLUICE_PG_CONNINFO.
func conninfo(t *testing.T) string {
	t.Helper()
	ci := os.Getenv("SLUICE_PG_CONNINFO")
	if ci == "" {
		t.Fatal("SLUICE_PG_CONNINFO is not set: run bindings/go/test.sh")
	}
	return ci
}

func newPool(t *testing.T, rt *Runtime, o PoolOptions) *Pool {
	t.Helper()
	p, err := NewPool(rt, conninfo(t), o)
	if err != nil {
		t.Fatalf("NewPool: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(time.Second); err != nil {
			t.Errorf("Pool.Close: %v", err)
		}
	})
	return p
}

// table creates a fresh table named after the test.
func table(t *testing.T, p *Pool, columns string) string {
	t.Helper()
	name := "go_" + strings.ToLower(strings.NewReplacer("/", "_", "-", "_").Replace(t.Name()))
	ctx := guardCtx(t)
	if _, err := p.Exec(ctx, "DROP TABLE IF EXISTS "+name); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Exec(ctx, "CREATE TABLE "+name+" ("+columns+")"); err != nil {
		t.Fatal(err)
	}
	return name
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not a *sluice.Error", err, err)
	}
	return se
}

func TestPGTypesNullsUnicode(t *testing.T) {
	rt := newRuntime(t)
	p := newPool(t, rt, PoolOptions{MaxSize: 2})
	ctx := guardCtx(t)
	when := time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.FixedZone("x", 5*3600+30*60))
	blob := []byte{0, 1, 2, 0xfe, 0xff, 0}
	uni := "héllo ✓ 世界 🙂"
	rows, err := p.Query(ctx, `SELECT $1::int AS n, $2::bigint AS big, $3::text AS "текст",
		$4::text AS nothing, $5::bool AS yes, $6::float8 AS f, $7::bytea AS blob,
		$8::timestamptz AS at, $9::numeric AS num, $10::int2 AS small, $11::float8 AS inf,
		$12::date AS day, NULL::int AS null_int`,
		7, int64(math.MaxInt64), uni, nil, true, 2.5, blob, when, "12345.678", int16(-3),
		math.Inf(1), "2024-02-29")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	want := []string{"n", "big", "текст", "nothing", "yes", "f", "blob", "at", "num", "small", "inf", "day", "null_int"}
	if got := rows.Columns(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("columns %q", got)
	}
	if rows.Affected() != 1 {
		t.Errorf("Affected of a one-row SELECT = %d", rows.Affected())
	}
	if !rows.Next() {
		t.Fatal("no row")
	}
	var (
		n       int
		big     int64
		text    string
		nothing any
		yes     bool
		f       float64
		b       []byte
		at      time.Time
		num     string
		small   int16
		inf     float64
		day     time.Time
		nullInt *int64
	)
	if err := rows.Scan(&n, &big, &text, &nothing, &yes, &f, &b, &at, &num, &small, &inf, &day, &nullInt); err != nil {
		t.Fatal(err)
	}
	if n != 7 || big != math.MaxInt64 || text != uni || nothing != nil || !yes || f != 2.5 ||
		!bytes.Equal(b, blob) || !at.Equal(when) || num != "12345.678" || small != -3 ||
		!math.IsInf(inf, 1) || nullInt != nil {
		t.Fatalf("got %d %d %q %v %v %v %x %v %q %d %v %v", n, big, text, nothing, yes, f, b, at, num, small, inf, nullInt)
	}
	if !day.Equal(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("date %v", day)
	}
	// The same row into *any, sql.Null* and pointers to pointers.
	var anyN, anyBlob, anyAt any
	var ns sql.NullString
	var ni sql.NullInt64
	var ptext *string
	if err := rows.Scan(&anyN, new(any), &ptext, &ns, new(any), new(any), &anyBlob, &anyAt, new(any), new(any), new(any), new(any), &ni); err != nil {
		t.Fatal(err)
	}
	if anyN != int64(7) || !bytes.Equal(anyBlob.([]byte), blob) || !anyAt.(time.Time).Equal(when) ||
		ptext == nil || *ptext != uni || ns.Valid || ni.Valid {
		t.Fatalf("any/Null*: %v %v %v %v %+v %+v", anyN, anyBlob, anyAt, ptext, ns, ni)
	}
	// NULL into a plain string is refused, saying what to use instead.
	var s string
	if err := rows.Scan(new(any), new(any), new(any), &s, new(any), new(any), new(any), new(any), new(any), new(any), new(any), new(any), new(any)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "NULL") {
		t.Fatalf("NULL into *string: %v", err)
	}
	if rows.Next() || rows.Err() != nil {
		t.Fatal("a second row")
	}
	if err := rows.Scan(&n); !errors.Is(err, ErrState) {
		t.Fatalf("Scan after the end: %v", err)
	}

	// Unicode through a table and back, with a parameter per row.
	tbl := table(t, p, "id int PRIMARY KEY, name text")
	names := []string{"Zoë", "Łódź", "東京", "עברית", "🙂🙃", ""}
	for i, name := range names {
		if _, err := p.Exec(ctx, "INSERT INTO "+tbl+" VALUES ($1, $2)", i, name); err != nil {
			t.Fatal(err)
		}
	}
	rows, err = p.Query(ctx, "SELECT id, name, length(name) FROM "+tbl+" ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for rows.Next() {
		var id, length int
		var name string
		if err := rows.Scan(&id, &name, &length); err != nil {
			t.Fatal(err)
		}
		if id != i || name != names[i] || length != len([]rune(names[i])) {
			t.Fatalf("row %d: %d %q %d", i, id, name, length)
		}
		i++
	}
	if i != len(names) {
		t.Fatalf("%d rows", i)
	}

	// QueryRow, ErrNoRows, a NULL through a *[]byte.
	var got []byte = []byte("x")
	if err := p.QueryRow(ctx, "SELECT NULL::bytea").Scan(&got); err != nil || got != nil {
		t.Fatalf("NULL bytea: %v %v", got, err)
	}
	if err := p.QueryRow(ctx, "SELECT 1 WHERE false").Scan(&n); err != ErrNoRows {
		t.Fatalf("no row: %v", err)
	}

	// Parameters the binding refuses before anything is sent.
	if _, err := p.Query(ctx, "SELECT $1::text", "a\x00b"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NUL in text: %v", err)
	}
	if _, err := p.Query(ctx, "SELECT $1::text", struct{}{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("struct parameter: %v", err)
	}
	// Named types, pointers and driver.Valuer are unwrapped.
	type userID int64
	var nilStr *string
	var one string
	if err := p.QueryRow(ctx, "SELECT $1::bigint::text || coalesce($2::text, '-') || $3::text",
		userID(42), nilStr, sql.NullString{String: "v", Valid: true}).Scan(&one); err != nil || one != "42-v" {
		t.Fatalf("named/pointer/Valuer: %q %v", one, err)
	}
}

func TestPGExecAffected(t *testing.T) {
	rt := newRuntime(t)
	p := newPool(t, rt, PoolOptions{MaxSize: 2})
	ctx := guardCtx(t)
	tbl := table(t, p, "id int PRIMARY KEY, v text")
	cases := []struct {
		sql  string
		args []any
		want int64
	}{
		{"INSERT INTO " + tbl + " VALUES ($1, 'a'), ($2, 'b'), ($3, 'c')", []any{1, 2, 3}, 3},
		{"UPDATE " + tbl + " SET v = $1 WHERE id >= $2", []any{"z", 2}, 2},
		{"UPDATE " + tbl + " SET v = 'none' WHERE id > 100", nil, 0},
		{"DELETE FROM " + tbl + " WHERE id = $1", []any{1}, 1},
		{"SELECT * FROM " + tbl, nil, 2},
		{"CREATE INDEX ON " + tbl + " (v)", nil, -1},
	}
	for _, c := range cases {
		n, err := p.Exec(ctx, c.sql, c.args...)
		if err != nil || n != c.want {
			t.Fatalf("%s: %d, %v; want %d", c.sql, n, err, c.want)
		}
	}
	// Flags: unnamed, and idempotent (a no-op unless something breaks).
	if n, err := p.ExecFlags(ctx, NoPrepare|Idempotent, "UPDATE "+tbl+" SET v = $1", "y"); err != nil || n != 2 {
		t.Fatalf("ExecFlags: %d %v", n, err)
	}
}

func TestPGServerErrors(t *testing.T) {
	rt := newRuntime(t)
	p := newPool(t, rt, PoolOptions{MaxSize: 2})
	ctx := guardCtx(t)
	_, err := p.Query(ctx, "selec 1")
	se := asError(t, err)
	if !errors.Is(err, ErrPG) || se.SQLState != "42601" || !se.Sent || se.Retryable ||
		!strings.Contains(se.Message, "syntax error") {
		t.Fatalf("syntax error: %+v", se)
	}
	if !strings.Contains(err.Error(), "SQLSTATE 42601") {
		t.Errorf("Error() = %q lacks the SQLSTATE", err.Error())
	}
	// Detail and hint come through.
	tbl := table(t, p, "id int PRIMARY KEY")
	if _, err := p.Exec(ctx, "INSERT INTO "+tbl+" VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	_, err = p.Exec(ctx, "INSERT INTO "+tbl+" VALUES (1)")
	if se := asError(t, err); se.SQLState != "23505" || !strings.Contains(se.Detail, "(id)=(1)") || !se.Sent {
		t.Fatalf("unique violation: %+v", se)
	}
	_, err = p.Exec(ctx, "SELECT no_such_function(1)")
	if se := asError(t, err); se.SQLState != "42883" || se.Hint == "" {
		t.Fatalf("undefined function: %+v", se)
	}
	// A serialization failure is retryable by the library's rules.
	_, err = p.Exec(ctx, "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$")
	if se := asError(t, err); se.SQLState != "40001" || !se.Retryable {
		t.Fatalf("serialization failure: %+v", se)
	}
	if st := mustGet(t, p.Stats); st.Errors42 < 2 || st.Errors23 < 1 || st.Errors40 < 1 {
		t.Fatalf("error classes not counted: %+v", st)
	}
}

// A query's deadline comes from ctx; past it, a sent statement is
// ambiguous, it is cancelled on the server and the pool carries on.
func TestPGQueryTimeout(t *testing.T) {
	rt := newRuntime(t)
	p := newPool(t, rt, PoolOptions{MaxSize: 1})
	var pid int
	if err := p.QueryRow(guardCtx(t), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	// An hour-long statement: only the deadline can end it.
	_, err := p.Query(ctx, "select pg_sleep(3600)")
	el := time.Since(start)
	se := asError(t, err)
	if !errors.Is(err, ErrAmbiguous) || !se.Sent || se.Retryable || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pg_sleep past the deadline: %v (%+v)", err, se)
	}
	if el < 200*time.Millisecond {
		t.Fatalf("returned after %v, before its 200ms deadline", el)
	}
	// The one connection was cancelled on the server and drained, not lost.
	var pid2 int
	if err := p.QueryRow(guardCtx(t), "SELECT pg_backend_pid()").Scan(&pid2); err != nil {
		t.Fatalf("the pool did not recover: %v", err)
	}
	if pid2 != pid {
		t.Errorf("backend %d replaced by %d", pid, pid2)
	}
	if st := mustGet(t, p.Stats); st.Ambiguous != 1 || st.QueryTimeouts != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Without a deadline in ctx (and with no Done channel, so no cancel),
	// the pool's DefaultTimeout applies.
	p2 := newPool(t, rt, PoolOptions{MaxSize: 1, DefaultTimeout: 150 * time.Millisecond})
	_, err = p2.Exec(context.Background(), "SELECT pg_sleep(3600)")
	if se := asError(t, err); !errors.Is(err, ErrAmbiguous) || !se.Sent {
		t.Fatalf("DefaultTimeout: %v", err)
	}
	// A deadline already passed fails before anything is sent.
	past, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	_, err = p.Exec(past, "SELECT 1")
	if se := asError(t, err); !errors.Is(err, ErrTimedOut) || se.Sent || !se.Retryable {
		t.Fatalf("expired context: %v", err)
	}
}

func TestPGTransactions(t *testing.T) {
	rt := newRuntime(t)
	p := newPool(t, rt, PoolOptions{MaxSize: 1})
	ctx := guardCtx(t)
	tbl := table(t, p, "id int")
	ids := func() string {
		var s string
		if err := p.QueryRow(ctx, "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM "+tbl).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}

	tx, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+tbl+" VALUES ($1)", 1); err != nil {
		t.Fatal(err)
	}
	var inside int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM "+tbl).Scan(&inside); err != nil || inside != 1 {
		t.Fatalf("inside: %d %v", inside, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("Rollback after Commit: %v", err)
	}
	if err := tx.Commit(ctx); !errors.Is(err, ErrState) {
		t.Fatalf("second Commit: %v", err)
	}

	tx, err = p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+tbl+" VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// A failed statement aborts the transaction: Commit says so instead of
	// PostgreSQL's silent ROLLBACK.
	tx, err = p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+tbl+" VALUES (3)"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1/0"); !errors.Is(err, ErrPG) {
		t.Fatalf("division by zero: %v", err)
	}
	if err := tx.Commit(ctx); asError(t, err).SQLState != "25P02" {
		t.Fatalf("Commit of an aborted transaction: %v", err)
	}
	if got := ids(); got != "1" {
		t.Fatalf("rows %q after commit, rollback and aborted commit", got)
	}

	// A lease given back in the middle of a transaction is rolled back by
	// the pool, and the same connection (MaxSize 1) is lent again clean.
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "INSERT INTO "+tbl+" VALUES (4)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if _, err := c.Query(ctx, "SELECT 1"); !errors.Is(err, ErrState) {
		t.Fatalf("query after Release: %v", err)
	}
	c, err = p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	var pid2 int
	var inTx bool
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid(), pg_current_xact_id_if_assigned() IS NOT NULL").Scan(&pid2, &inTx); err != nil {
		t.Fatal(err)
	}
	if pid2 != pid || inTx {
		t.Fatalf("backend %d (was %d), still in a transaction: %v", pid2, pid, inTx)
	}
	c.Release()
	if got := ids(); got != "1" {
		t.Fatalf("rows %q: the abandoned transaction was not rolled back", got)
	}
	if st := mustGet(t, p.Stats); st.Evictions[EvictDirty] != 0 {
		t.Fatalf("connection evicted as dirty: %+v", st)
	}
}

// Far more goroutines than connections: every one is served, the pool
// never opens more than MaxSize.
func TestPGManyGoroutines(t *testing.T) {
	rt := newRuntime(t)
	const maxSize, goroutines, each = 4, 300, 5
	p := newPool(t, rt, PoolOptions{MinSize: 1, MaxSize: maxSize})
	ctx := guardCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				want := g*each + i
				var got int
				var err error
				if i%2 == 0 {
					err = p.QueryRow(ctx, "SELECT $1::int", want).Scan(&got)
				} else {
					var c *Conn
					if c, err = p.Acquire(ctx); err == nil {
						err = c.QueryRow(ctx, "SELECT $1::int + 0", want).Scan(&got)
						c.Release()
					}
				}
				if err == nil && got != want {
					err = fmt.Errorf("asked %d, got %d", want, got)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := mustGet(t, p.Stats)
	if st.PeakTotal > maxSize || st.PeakTotal < 1 {
		t.Fatalf("peak %d connections, max %d", st.PeakTotal, maxSize)
	}
	if st.Queries < goroutines*each || st.InUse != 0 || st.Waiting != 0 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("peak %d connections, %d waiting at most", st.PeakTotal, st.PeakWaiting)
}

func TestPGAcquireTimesOut(t *testing.T) {
	rt := newRuntime(t)
	p := newPool(t, rt, PoolOptions{MinSize: 2, MaxSize: 2, DisableAdmission: true})
	ctx := guardCtx(t)
	a, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = p.Acquire(short)
	if se := asError(t, err); !errors.Is(err, ErrTimedOut) || se.Sent || !se.Retryable ||
		!errors.Is(err, context.DeadlineExceeded) || se.Message == "" {
		t.Fatalf("Acquire with every connection held: %v", err)
	}
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Fatalf("gave up after %v", el)
	}
	// A one-shot query waits for a connection the same way, and nothing
	// was sent.
	short2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	_, err = p.Exec(short2, "SELECT 1")
	if se := asError(t, err); !errors.Is(err, ErrTimedOut) || se.Sent || !se.Retryable {
		t.Fatalf("query with every connection held: %v", err)
	}
	a.Release()
	b.Release()
	if _, err := p.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if st := mustGet(t, p.Stats); st.AcquireTimeouts < 2 || st.PeakTotal > 2 {
		t.Fatalf("stats %+v", st)
	}
}

// Cancelling ctx cancels a query waiting for a connection (nothing sent)
// or running on the server (sent).
func TestPGCancel(t *testing.T) {
	rt := newRuntime(t)
	p := newPool(t, rt, PoolOptions{MinSize: 1, MaxSize: 1})
	ctx := guardCtx(t)
	held, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	qctx, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() {
		_, err := p.Query(qctx, "SELECT 1")
		got <- err
	}()
	waitFor(t, "the query to queue", func() bool { return mustGet(t, p.Stats).Waiting == 1 })
	cancel()
	select {
	case err = <-got:
	case <-time.After(hangGuard):
		t.Fatal("hang: cancelled query")
	}
	if se := asError(t, err); !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) || se.Sent {
		t.Fatalf("cancelled while waiting: %v", err)
	}
	if st := mustGet(t, p.Stats); st.Waiting != 0 || st.InUse != 1 {
		t.Fatalf("stats %+v", st)
	}
	held.Release()

	// Cancel a statement running on the server, seen in pg_stat_activity
	// through a second pool.
	watch := newPool(t, rt, PoolOptions{MaxSize: 1})
	qctx, cancel = context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, err := p.Query(qctx, "SELECT pg_sleep(3600) /* go-cancel */")
		got <- err
	}()
	waitFor(t, "pg_sleep to run", func() bool {
		var n int
		err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE state = 'active' AND query LIKE '%go-cancel%' AND pid <> pg_backend_pid()`).Scan(&n)
		return err == nil && n == 1
	})
	cancel()
	err = <-got
	if se := asError(t, err); !errors.Is(err, ErrCanceled) || !se.Sent || se.Retryable {
		t.Fatalf("cancelled while running: %v (%+v)", err, se)
	}
	var one int
	if err := p.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after cancel: %v", err)
	}
}

// Cancels racing completions: whichever wins, results are freed and
// connections given back (TestMain counts both), and the pool is clean.
// Rounds repeat until every outcome was seen, a success that arrived after
// its cancel included (bounded by the hang guard).
func TestPGCancelRaces(t *testing.T) {
	rt := newRuntime(t)
	p := newPool(t, rt, PoolOptions{MinSize: 2, MaxSize: 2, DisableAdmission: true})
	ctx := guardCtx(t)
	var ok, canceled int64
	late0 := atomic.LoadInt64(&lateSuccesses)
	late := func() int64 { return atomic.LoadInt64(&lateSuccesses) - late0 }
	deadline := time.Now().Add(hangGuard / 2)
	for round := 0; round == 0 || atomic.LoadInt64(&ok) == 0 || late() == 0; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d rounds: %d completed, %d cancelled, %d late", round, ok, canceled, late())
		}
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 150; i++ {
					cctx, cancel := context.WithCancel(ctx)
					if i%5 == 0 {
						cancel()
					} else {
						time.AfterFunc(time.Duration((g*37+i*11+round)%1500)*time.Microsecond, cancel)
					}
					var err error
					if i%2 == 0 {
						_, err = p.Exec(cctx, "SELECT 1")
					} else {
						var c *Conn
						if c, err = p.Acquire(cctx); err == nil {
							c.Release()
						}
					}
					cancel()
					switch {
					case err == nil:
						atomic.AddInt64(&ok, 1)
					case errors.Is(err, ErrCanceled) && errors.Is(err, context.Canceled):
						atomic.AddInt64(&canceled, 1)
					default:
						t.Errorf("race %d/%d: %v", g, i, err)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	waitFor(t, "connections back", func() bool { st := mustGet(t, p.Stats); return st.InUse == 0 && st.Waiting == 0 })
	if _, err := p.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if n := atomic.LoadInt64(&liveLeases); n != 0 {
		t.Fatalf("%d leases not released", n)
	}
	t.Logf("%d completed, %d cancelled (%d of them after completing: given back)", ok, canceled, late())
}

func TestPoolCloseAndRuntimeClose(t *testing.T) {
	rt, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ctx := guardCtx(t)
	p, err := NewPool(rt, conninfo(t), PoolOptions{MaxSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Close waits up to the drain time for the lease, then releases it.
	if err := p.Close(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(time.Second); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := atomic.LoadInt64(&liveLeases); n != 0 {
		t.Fatalf("%d leases left after Close", n)
	}
	if err := lease.Release(); err != nil {
		t.Fatalf("Release after Close: %v", err)
	}
	_, qerr := p.Query(ctx, "SELECT 1")
	_, aerr := p.Acquire(ctx)
	_, serr := p.Stats()
	_, lerr := lease.Exec(ctx, "SELECT 1")
	for name, err := range map[string]error{"Query": qerr, "Acquire": aerr, "Stats": serr, "Conn.Exec": lerr} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}

	// Closing the runtime frees the pools and monitors made on it; a
	// query running then completes with ErrClosed.
	mon, err := NewMonitor(rt, 0)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := NewPool(rt, conninfo(t), PoolOptions{MaxSize: 2, Monitor: mon})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := p2.Exec(ctx, "SELECT pg_sleep(10)")
		got <- err
	}()
	waitFor(t, "the query to start", func() bool { return mustGet(t, p2.Stats).InUse == 1 })
	closeAndCheckHandles(t, rt)
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatalf("query at runtime close: %v", err)
	}
	if _, err := p2.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("pool after runtime close: %v", err)
	}
	if _, err := mon.Stats(WindowAll); !errors.Is(err, ErrClosed) {
		t.Fatalf("monitor after runtime close: %v", err)
	}
	if err := p2.Close(time.Second); err != nil || mon.Close() != nil {
		t.Fatalf("Close after the runtime's: %v", err)
	}
	if _, err := NewPool(rt, conninfo(t), PoolOptions{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewPool on a closed runtime: %v", err)
	}
}

func TestPoolOptionsAndConnectFailures(t *testing.T) {
	rt := newRuntime(t)
	_, err := NewPool(rt, "not a conninfo", PoolOptions{})
	if se := asError(t, err); !errors.Is(err, ErrInvalid) || se.Message == "" {
		t.Fatalf("malformed conninfo: %v", err)
	}
	_, err = NewPool(rt, conninfo(t), PoolOptions{MinSize: 5, MaxSize: 2})
	if se := asError(t, err); !errors.Is(err, ErrInvalid) || !strings.Contains(se.Message, "min_size") {
		t.Fatalf("MinSize > MaxSize: %v", err)
	}
	if _, err := NewPool(rt, conninfo(t), PoolOptions{MaxSize: -1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative MaxSize: %v", err)
	}
	// Nothing listens on port 1: the pool is down, and callers hear it at
	// once (fail fast) with the connect error; nothing was sent.
	p, err := NewPool(rt, "host=127.0.0.1 port=1 user=x dbname=x connect_timeout=2", PoolOptions{MinSize: 1, ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(0)
	ctx := guardCtx(t)
	waitFor(t, "the pool to see the server down", func() bool { return mustGet(t, p.Stats).Down })
	_, err = p.Exec(ctx, "SELECT 1")
	if se := asError(t, err); !errors.Is(err, ErrUnreachable) || se.Sent || !se.Retryable || se.Message == "" {
		t.Fatalf("unreachable server: %v (%+v)", err, se)
	}
	_, err = p.Acquire(ctx)
	if se := asError(t, err); !errors.Is(err, ErrUnreachable) || !strings.Contains(se.Message, "unreachable") {
		t.Fatalf("Acquire from a down pool: %v (%+v)", err, se)
	}
}

// Blocking pool calls on the loop thread fail instead of hanging the loop
// that must finish them.
func TestPGOnLoopThread(t *testing.T) {
	rt := newRuntime(t)
	p := newPool(t, rt, PoolOptions{MaxSize: 1})
	got := make(chan error, 3)
	err := rt.Post(func() {
		_, err := p.Exec(context.Background(), "SELECT 1")
		got <- err
		_, err = p.Acquire(context.Background())
		got <- err
		got <- p.Close(0)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, what := range []string{"Exec", "Acquire", "Close"} {
		select {
		case err := <-got:
			if !errors.Is(err, ErrDeadlock) {
				t.Fatalf("%s on the loop thread: %v", what, err)
			}
		case <-time.After(hangGuard):
			t.Fatal("hang")
		}
	}
}

func TestMemoryFigures(t *testing.T) {
	rt := newRuntime(t)
	m, err := rt.Memory()
	if err != nil {
		t.Fatal(err)
	}
	// Without jemalloc loaded in this program, the library counts what it
	// holds in the system allocator; an idle runtime holds something.
	if m.Jemalloc || m.Allocated == 0 {
		t.Fatalf("memory %+v: want the system allocator's count", m)
	}
}
