package main

// The command line: the C program's options (examples/bot_sim/options.c),
// same names, defaults and ranges.

import (
	"flag"
	"fmt"
	"io"
	"os"
)

type options struct {
	conninfo                  string
	users, groups, messages   int64
	inflight                  int64
	rate                      float64 // messages offered per second; 0: as fast as in-flight allows
	userLimit, userWindowMS   int64
	groupLimit, groupWindowMS int64
	aiPercent, aiFailPercent  float64
	dbFailPercent             float64
	aiMS                      int64
	workers, poolSize         int64
	promPath                  string
	seed                      int64
	quiet                     bool
}

// parseOptions returns the options, or an exit code (0 after --help, 2
// after a bad option) with ok false.
func parseOptions(args []string, stderr io.Writer) (o options, code int, ok bool) {
	fs := flag.NewFlagSet("botsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.conninfo, "conninfo", os.Getenv("SLUICE_PG_CONNINFO"), "PostgreSQL to use (default $SLUICE_PG_CONNINFO)")
	fs.Int64Var(&o.users, "users", 1000, "users")
	fs.Int64Var(&o.groups, "groups", 50, "groups; user u is in group u % groups")
	fs.Int64Var(&o.messages, "messages", 20000, "messages to send in all")
	fs.Int64Var(&o.inflight, "inflight", 64, "messages handled at once (one goroutine each)")
	fs.Float64Var(&o.rate, "rate", 0, "messages offered per second; 0: as fast as in-flight allows")
	fs.Int64Var(&o.userLimit, "user-limit", 20, "messages per user per --user-window-ms (sliding log)")
	fs.Int64Var(&o.userWindowMS, "user-window-ms", 60000, "")
	fs.Int64Var(&o.groupLimit, "group-limit", 300, "messages per group per --group-window-ms (window counter)")
	fs.Int64Var(&o.groupWindowMS, "group-window-ms", 60000, "")
	fs.Float64Var(&o.aiPercent, "ai-percent", 10, "messages that call the AI service")
	fs.Float64Var(&o.aiFailPercent, "ai-fail-percent", 20, "AI calls that fail transiently")
	fs.Int64Var(&o.aiMS, "ai-ms", 20, "how long an AI call takes")
	fs.Float64Var(&o.dbFailPercent, "db-fail-percent", 5, "updates the server rejects with a serialization failure first, retried")
	fs.Int64Var(&o.workers, "workers", 20, "task pool limit for AI calls (the origin's 20)")
	fs.Int64Var(&o.poolSize, "pool-size", 8, "PostgreSQL connections")
	fs.StringVar(&o.promPath, "prom", "bot_sim.prom", "Prometheus text output")
	fs.Int64Var(&o.seed, "seed", 1, "random source")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return o, 0, false
		}
		return o, 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "botsim: unexpected argument %q\n", fs.Arg(0))
		return o, 2, false
	}
	ints := []struct {
		name     string
		v        int64
		min, max int64
	}{
		{"users", o.users, 1, 100000000},
		{"groups", o.groups, 1, 100000000},
		{"messages", o.messages, 1, 1000000000},
		{"inflight", o.inflight, 1, 100000},
		{"user-limit", o.userLimit, 1, 65535},
		{"user-window-ms", o.userWindowMS, 1, 86400000},
		{"group-limit", o.groupLimit, 1, 1000000000},
		{"group-window-ms", o.groupWindowMS, 1, 86400000},
		{"ai-ms", o.aiMS, 0, 60000},
		{"workers", o.workers, 1, 65536},
		{"pool-size", o.poolSize, 1, 1000},
		{"seed", o.seed, 0, 0x7fffffff},
	}
	for _, c := range ints {
		if c.v < c.min || c.v > c.max {
			fmt.Fprintf(stderr, "botsim: --%s=%d: expected an integer in %d..%d\n", c.name, c.v, c.min, c.max)
			return o, 2, false
		}
	}
	floats := []struct {
		name     string
		v        float64
		min, max float64
	}{
		{"rate", o.rate, 0, 1e7},
		{"ai-percent", o.aiPercent, 0, 100},
		{"ai-fail-percent", o.aiFailPercent, 0, 100},
		{"db-fail-percent", o.dbFailPercent, 0, 100},
	}
	for _, c := range floats {
		if !(c.v >= c.min && c.v <= c.max) {
			fmt.Fprintf(stderr, "botsim: --%s=%g: expected a number in %g..%g\n", c.name, c.v, c.min, c.max)
			return o, 2, false
		}
	}
	if o.conninfo == "" {
		fmt.Fprintln(stderr, "botsim: no database: give --conninfo or set SLUICE_PG_CONNINFO")
		return o, 2, false
	}
	return o, 0, true
}
