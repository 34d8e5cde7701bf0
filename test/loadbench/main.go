// Command loadbench is keygate's side-by-side load benchmark. It is not a
// test and asserts nothing: it measures, on this machine, how much
// throughput keygate's apikey handler costs in front of Caddy's
// reverse_proxy, next to the same proxy without authentication (bare), a
// header matcher holding one key, and forward_auth to a small Go auth
// service (./test/loadbench/authsvc) reading the same key store.
//
// Run it from the repository root:
//
//	go run ./test/loadbench [flags]
//
// It builds ./cmd/keygate, ./test/loadbench/authsvc and
// ./test/loadbench/upstream once, starts every server on 127.0.0.1 (each
// in its own process, in a home directory of its own), and drives them
// with wrk (apt-get install wrk), one configuration after the other,
// interleaved over several rounds (A B C, then C B A, ...), reporting the
// median of each. Every configuration proxies to the same upstream with the same
// transport settings, and gets the same wrk command and Lua script.
//
// Flags:
//
//	-duration d     length of each measured run (default 10s)
//	-rounds n       interleaved rounds; the table shows medians (default 3)
//	-scenarios s    comma-separated: upstream, cached, cached10k, cached100k, miss,
//	                flood, ratelimit, postgres, or all (default all)
//	-out dir        where report.md, results.json, logs and profiles go
//	                (default test/.cache/loadbench/<time>)
//	-connections n  wrk connections, -threads n wrk threads (default 64, 1)
//	-profile        CPU and allocation profiles of bare and keygate under
//	                the cached load, and of keygate under the miss and
//	                flood loads (default true)
//	-quiet-cores c, -quiet-wait d
//	                before each round, wait up to d for the machine's CPU
//	                use by others to fall below c cores (default 0.5, 1m)
//	-retries n      measure a run again, up to n times, when others used
//	                more than -quiet-cores during it (default 1)
//	-timeout d      stop everything after d (default: from the plan)
//	-keygate path   use this keygate binary instead of building one
//	-compare path   also run another keygate binary (say, built before a
//	                change) in the cached, cached10k, miss and flood
//	                scenarios, interleaved with the rest; its rows are
//	                marked [B]
//	-compare-dataset path
//	                the SQLite dataset -compare's binary runs on, when its
//	                store schema differs from this checkout's: the file the
//	                older checkout's own loadbench built under its
//	                -cache-dir (same keys, older schema). Each process of
//	                the -compare binary gets a fresh copy, which it may
//	                migrate; the file itself is never opened for writing
//	-pg dsn         PostgreSQL server for the postgres scenario (default
//	                $KEYGATE_TEST_POSTGRES or postgres://postgres@127.0.0.1:5432/postgres)
//
// The SQLite dataset of a million keys is built once per machine under
// os.TempDir()/keygate-loadbench and reused. Every process the benchmark
// starts is stopped when it ends, on Ctrl-C and on -timeout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command line flags.
type options struct {
	duration         time.Duration
	warmup           time.Duration
	rounds           int
	scenarios        []string
	out              string
	threads          int
	connections      int
	floodConnections int
	profile          bool
	profileDuration  time.Duration
	quietCores       float64
	quietWait        time.Duration
	retries          int
	timeout          time.Duration
	keygate          string
	compare          string
	compareDataset   string
	pgDSN            string
	pgKeys           int
	cacheDir         string
}

func main() {
	var o options
	var scenarios string
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measured run")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "unmeasured load per configuration before a scenario's first round")
	flag.IntVar(&o.rounds, "rounds", 3, "interleaved rounds; the table shows medians")
	flag.StringVar(&scenarios, "scenarios", "all", "comma-separated scenarios: "+strings.Join(scenarioNames(), ", ")+", or all")
	flag.StringVar(&o.out, "out", "", "output directory (default test/.cache/loadbench/<time>)")
	flag.IntVar(&o.threads, "threads", 1, "wrk threads")
	flag.IntVar(&o.connections, "connections", 64, "wrk connections (split between instances when there are several)")
	flag.IntVar(&o.floodConnections, "flood-connections", 64, "connections of the flood's own wrk")
	flag.BoolVar(&o.profile, "profile", true, "profile bare and keygate under the cached load, keygate under the miss and flood loads")
	flag.DurationVar(&o.profileDuration, "profile-duration", 15*time.Second, "length of each profiled run")
	flag.Float64Var(&o.quietCores, "quiet-cores", 0.5, "CPU cores others may use before a round starts")
	flag.DurationVar(&o.quietWait, "quiet-wait", time.Minute, "longest wait for a quiet machine before each round")
	flag.IntVar(&o.retries, "retries", 1, "times a run is measured again when others used more than -quiet-cores during it")
	flag.DurationVar(&o.timeout, "timeout", 0, "stop after this long (default: twice the planned time plus 15m)")
	flag.StringVar(&o.keygate, "keygate", "", "keygate binary to use instead of building ./cmd/keygate")
	flag.StringVar(&o.compare, "compare", "", "another keygate binary: its rows, marked "+compareTag+", run interleaved with the others (before/after a change)")
	flag.StringVar(&o.compareDataset, "compare-dataset", "", "SQLite dataset for -compare's binary (built by its own checkout's loadbench, when the store schema differs); each of its processes runs on a copy")
	flag.StringVar(&o.pgDSN, "pg", "", "PostgreSQL server DSN (default $KEYGATE_TEST_POSTGRES or postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)")
	flag.IntVar(&o.pgKeys, "pg-keys", 1_000_000, "keys copied into the PostgreSQL database")
	flag.StringVar(&o.cacheDir, "cache-dir", filepath.Join(os.TempDir(), "keygate-loadbench"), "where the SQLite dataset is kept between runs")
	flag.Parse()
	if flag.NArg() > 0 {
		fatalf("unexpected arguments %q", flag.Args())
	}
	if scenarios == "all" {
		o.scenarios = scenarioNames()
	} else {
		for _, s := range strings.Split(scenarios, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(scenarioNames(), s) {
				fatalf("unknown scenario %q: want %s or all", s, strings.Join(scenarioNames(), ", "))
			}
			o.scenarios = append(o.scenarios, s)
		}
	}
	if o.rounds < 1 || o.duration < time.Second || o.connections < 1 || o.threads < 1 {
		fatalf("-rounds, -connections and -threads must be positive, -duration at least 1s")
	}
	if o.compareDataset != "" {
		if o.compare == "" {
			fatalf("-compare-dataset needs -compare")
		}
		if _, err := os.Stat(o.compareDataset); err != nil {
			fatalf("-compare-dataset: %v", err)
		}
	}
	if o.pgDSN == "" {
		o.pgDSN = os.Getenv("KEYGATE_TEST_POSTGRES")
	}
	if o.pgDSN == "" {
		o.pgDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	if o.timeout == 0 {
		o.timeout = 2*plannedTime(o) + 15*time.Minute
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		logf("%v: stopping", sig)
		cancel()
		<-signals
		logf("second signal: killing everything now")
		killAll()
		os.Exit(130)
	}()

	err := run(ctx, o)
	cancel()
	killAll()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (-timeout %v)", err, o.timeout)
		}
		fatalf("%v", err)
	}
}

// plannedTime estimates how long the measured and warm-up runs take.
func plannedTime(o options) time.Duration {
	runs := 0
	for _, s := range o.scenarios {
		runs += scenarioByName(s).runs
	}
	t := time.Duration(runs) * (time.Duration(o.rounds)*(o.duration+2*time.Second) + o.warmup)
	if o.compare != "" {
		t = t * 13 / 10
	}
	if o.profile {
		for _, s := range o.scenarios {
			t += time.Duration(scenarioByName(s).profiles) * o.profileDuration
		}
	}
	return t
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadbench: "+format+"\n", args...)
}

func fatalf(format string, args ...any) {
	logf(format, args...)
	os.Exit(1)
}

// bench is one run of the benchmark.
type bench struct {
	opt      options
	root     string // the module's root directory
	keygate  string // binaries
	authsvc  string
	upstream string
	work     string // scripts, key files, Caddyfiles, logs
	out      string
	dataset  string // the SQLite store of a million keys

	upstreamProc *proc
	upstreamAddr string
	keys         map[string]keySet
	report       report
}

// keySet is a file of keys, one a line.
type keySet struct {
	file string
	n    int
}

func run(ctx context.Context, o options) error {
	b := &bench{opt: o}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed: apt-get install -y wrk")
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return fmt.Errorf("finding the module root (run from the repository): %v", err)
	}
	b.root = filepath.Dir(strings.TrimSpace(string(gomod)))
	b.out = o.out
	if b.out == "" {
		b.out = filepath.Join(b.root, "test", ".cache", "loadbench", time.Now().Format("20060102-150405"))
	}
	b.work = filepath.Join(b.out, "work")
	if err := os.MkdirAll(b.work, 0o700); err != nil {
		return err
	}
	logf("output in %s; stops by itself within %v", b.out, o.timeout)
	if err := b.build(ctx); err != nil {
		return err
	}
	if b.dataset, err = sqliteDataset(ctx, o.cacheDir); err != nil {
		return err
	}
	if err := b.writeKeys(); err != nil {
		return err
	}
	defer b.removeKeys()

	if b.upstreamProc, b.upstreamAddr, err = b.startHelper(ctx, "upstream", b.upstream); err != nil {
		return fmt.Errorf("starting the upstream: %w", err)
	}
	defer b.upstreamProc.Stop(5 * time.Second)

	b.report.start(b)
	for _, name := range o.scenarios {
		if err := b.runScenario(ctx, scenarioByName(name)); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("scenario %s: %w", name, err)
		}
		if err := b.report.write(b); err != nil {
			return err
		}
	}
	b.report.finish(b)
	if err := b.report.write(b); err != nil {
		return err
	}
	fmt.Print(b.report.markdown())
	logf("report in %s", filepath.Join(b.out, "report.md"))
	return nil
}

// build builds the three binaries, keygate unless -keygate names one.
func (b *bench) build(ctx context.Context) error {
	bin := filepath.Join(b.out, "bin")
	if err := os.MkdirAll(bin, 0o700); err != nil {
		return err
	}
	pkgs := []string{"./test/loadbench/authsvc", "./test/loadbench/upstream"}
	if b.opt.compare != "" {
		abs, err := filepath.Abs(b.opt.compare)
		if err != nil {
			return err
		}
		b.opt.compare = abs
	}
	b.keygate = b.opt.keygate
	if b.keygate == "" {
		pkgs = append(pkgs, "./cmd/keygate")
		b.keygate = filepath.Join(bin, "keygate")
	} else if abs, err := filepath.Abs(b.keygate); err == nil {
		b.keygate = abs
	}
	b.authsvc, b.upstream = filepath.Join(bin, "authsvc"), filepath.Join(bin, "upstream")
	logf("building %s", strings.Join(pkgs, " "))
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", bin + "/"}, pkgs...)...)
	cmd.Dir = b.root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	return nil
}

// writeKeys writes the key files the scenarios send.
func (b *bench) writeKeys() error {
	b.keys = map[string]keySet{}
	for _, k := range []struct {
		name string
		n    int
	}{{"1", 1}, {"10k", 10_000}, {"100k", 100_000}} {
		path := filepath.Join(b.work, "valid-"+k.name+".keys")
		if err := writeKeyFile(path, k.n); err != nil {
			return err
		}
		b.keys[k.name] = keySet{path, k.n}
	}
	// More random keys than the negative cache holds (16,384), so that a
	// round-robin over them never hits it.
	const floodKeys = 200_000
	path := filepath.Join(b.work, "flood.keys")
	if err := writeFloodFile(path, floodKeys); err != nil {
		return err
	}
	b.keys["flood"] = keySet{path, floodKeys}
	return nil
}

// removeKeys deletes the key files: they are large, and hold keys that
// open the benchmark's dataset.
func (b *bench) removeKeys() {
	for _, k := range b.keys {
		os.Remove(k.file)
	}
}

// target is what a variant sends its load to: one or more Caddy instances
// (or, for the upstream scenario, a server directly), and the auth service
// behind them, if any.
type target struct {
	urls    []string
	proxies []*proc  // whose CPU is the proxy's
	admins  []string // admin endpoints of the proxies, for allocation counts and profiles
	helpers []*proc  // auth services, whose CPU is reported on its own
}

func instances(list ...*instance) *target {
	t := &target{}
	for _, in := range list {
		t.urls = append(t.urls, in.url)
		t.proxies = append(t.proxies, in.proc)
		t.admins = append(t.admins, in.admin)
	}
	return t
}

// variant is one row of a scenario's table.
type variant struct {
	name   string
	about  string
	target *target
	keys   keySet
	flood  bool   // a second wrk floods the first instance with unknown keys meanwhile
	base   string // the row whose median throughput this row is divided by
	// profile: -profile takes a CPU and an allocation profile of the
	// first instance under this load, after the rounds.
	profile bool
	// cover: the warm-up sends every key of a set larger than coverKeys
	// too (within three minutes), for a cached scenario over many keys.
	cover bool
}

// scenario is one table: configurations measured under one workload.
type scenario struct {
	name     string
	title    string
	about    string
	runs     int // variants, for planning
	profiles int // variants profiled
	setup    func(ctx context.Context, b *bench) ([]variant, func(), error)
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

func scenarioByName(name string) scenario {
	for _, s := range scenarios {
		if s.name == name {
			return s
		}
	}
	panic("unknown scenario " + name)
}

// runScenario starts the scenario's servers, warms each variant up, runs
// the interleaved rounds and the profiles.
func (b *bench) runScenario(ctx context.Context, s scenario) error {
	logf("scenario %s: %s", s.name, s.title)
	variants, stop, err := s.setup(ctx, b)
	defer stop()
	if err != nil {
		return err
	}
	res := &scenarioResult{Name: s.name, Title: s.title, About: s.about}
	for _, v := range variants {
		res.Rows = append(res.Rows, &rowResult{Name: v.name, About: v.about, Base: v.base, Flood: v.flood})
	}
	b.report.Scenarios = append(b.report.Scenarios, res)

	for _, v := range variants {
		if v.flood {
			continue // warmed up by the same target without flood
		}
		if err := b.warmUp(ctx, v, b.opt.warmup); err != nil {
			return fmt.Errorf("warming up %s: %w", v.name, err)
		}
	}
	for round := 1; round <= b.opt.rounds; round++ {
		b.waitQuiet(ctx)
		for _, i := range roundOrder(len(variants), round) {
			v := variants[i]
			if v.keys.n > 1 && v.keys.n <= coverKeys {
				// Cached entries older than cache_ttl (1m) are fetched
				// again on their next use, and a variant's runs are more
				// than a minute apart when a round is long: send every
				// key once more first, so that the run measures hits, as
				// continuous traffic would.
				if err := b.warmUp(ctx, v, time.Second); err != nil {
					return fmt.Errorf("warming up %s: %w", v.name, err)
				}
			}
			r, err := b.measure(ctx, v, b.opt.duration)
			for retry := 0; err == nil && r.OtherCores > b.opt.quietCores && retry < b.opt.retries; retry++ {
				// Others (steal time included: the host) took CPU during
				// the run: its numbers say more about them than about v.
				logf("  round %d %-28s disturbed (%.2f cores used by others, %.0f req/s): measured again",
					round, v.name, r.OtherCores, r.RPS)
				b.waitQuiet(ctx)
				r, err = b.measure(ctx, v, b.opt.duration)
			}
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", v.name, round, err)
			}
			r.Round = round
			res.Rows[i].Runs = append(res.Rows[i].Runs, r)
			logf("  round %d %-28s %8.0f req/s  p50 %6.2fms  p99 %6.2fms  proxy %5.0fµs/req  others %.2f cores  load %.2f",
				round, v.name, r.RPS, r.P50MS, r.P99MS, r.ProxyCPUus, r.OtherCores, r.Load1)
		}
	}
	res.summarize()
	if b.opt.profile {
		for _, v := range variants {
			if v.profile {
				if err := b.profileRun(ctx, s, v); err != nil {
					return fmt.Errorf("profiling %s: %w", v.name, err)
				}
			}
		}
	}
	return nil
}

// roundOrder returns the order in which round runs n variants: forward in
// odd rounds, backward in even ones (A B C, C B A, ...), so that a drift of
// the machine's speed within a round favours no variant.
func roundOrder(n, round int) []int {
	order := make([]int, n)
	for i := range order {
		if round%2 == 1 {
			order[i] = i
		} else {
			order[i] = n - 1 - i
		}
	}
	return order
}

// coverKeys is the largest key set a warm-up sends in full, so that the
// "cached" scenarios measure a warm cache; larger sets are the miss
// workloads, which no warm-up changes.
const coverKeys = 10_000

// warmUp loads v, unmeasured, for d and, for a set of at most coverKeys
// keys or a variant marked cover, until one run sent every key at least
// once (within a minute, or three with cover). It must be one run: wrk's
// round-robin starts again from the first key with each run, so runs
// shorter than the set only ever send its beginning.
func (b *bench) warmUp(ctx context.Context, v variant, d time.Duration) error {
	limit := time.Minute
	if v.cover {
		limit = 3 * time.Minute
	}
	deadline := time.Now().Add(limit)
	need := int64(v.keys.n) * 11 / 10
	for {
		r, err := b.measure(ctx, v, d)
		if err != nil {
			return err
		}
		if (v.keys.n > coverKeys && !v.cover) || r.Requests >= need {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			logf("  %s: warm-up sent at most %d requests in one run for %d keys in %v: measuring anyway", v.name, r.Requests, v.keys.n, limit)
			return nil
		}
		// Long enough for the whole set at this run's rate, and a fifth.
		rate := max(float64(r.Requests)/d.Seconds(), 1)
		d = min(max(time.Duration(1.2*float64(need)/rate*float64(time.Second)), 2*d), left)
	}
}

// waitQuiet waits, up to -quiet-wait, until the machine's CPU use (by
// others: the benchmark's servers are idle between rounds) falls below
// -quiet-cores.
func (b *bench) waitQuiet(ctx context.Context) {
	deadline := time.Now().Add(b.opt.quietWait)
	for {
		before, err1 := machineCPU()
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
		after, err2 := machineCPU()
		if err1 != nil || err2 != nil {
			return
		}
		busy := (after - before).Seconds() / 2
		if busy <= b.opt.quietCores {
			return
		}
		if time.Now().After(deadline) {
			logf("  the machine is still busy (%.2f cores used by others): measuring anyway", busy)
			return
		}
		logf("  waiting for a quieter machine (%.2f cores in use, load %.2f)", busy, loadAverage())
		select {
		case <-ctx.Done():
			return
		case <-time.After(3 * time.Second):
		}
	}
}

// measure runs the variant's load for d and returns what it measured.
func (b *bench) measure(ctx context.Context, v variant, d time.Duration) (runResult, error) {
	t := v.target
	var loads []wrkLoad
	for i, u := range t.urls {
		loads = append(loads, wrkLoad{
			Name: fmt.Sprintf("wrk-%s-%d", slug(v.name), i), URL: u, KeysFile: v.keys.file, Keys: v.keys.n,
			Threads: b.opt.threads, Connections: max(1, b.opt.connections/len(t.urls)), Duration: d,
		})
	}
	if v.flood {
		f := b.keys["flood"]
		loads = append(loads, wrkLoad{
			Name: "wrk-" + slug(v.name) + "-flood", URL: t.urls[0], KeysFile: f.file, Keys: f.n,
			Threads: b.opt.threads, Connections: b.opt.floodConnections, Duration: d,
		})
	}

	var r runResult
	r.Load1 = loadAverage()
	cpu0 := cpuOf(t.proxies)
	helper0 := cpuOf(t.helpers)
	up0 := cpuOf([]*proc{b.upstreamProc})
	mallocs0 := mallocsOf(ctx, t.admins)
	machine0, _ := machineCPU()
	start := time.Now()

	var started []*proc
	for _, l := range loads {
		p, err := startWrk(b.work, l)
		if err != nil {
			stopAll(started)
			return r, err
		}
		started = append(started, p)
	}
	var results []wrkResult
	var wrkCPU time.Duration
	for _, p := range started {
		res, err := waitWrk(ctx, b.work, p)
		if err != nil {
			stopAll(started)
			return r, err
		}
		results = append(results, res)
		wrkCPU += res.CPU
	}
	elapsed := time.Since(start)
	machine1, _ := machineCPU()
	proxyCPU := cpuOf(t.proxies) - cpu0
	helperCPU := cpuOf(t.helpers) - helper0
	upCPU := cpuOf([]*proc{b.upstreamProc}) - up0
	mallocs := mallocsOf(ctx, t.admins) - mallocs0

	valid := results[:len(t.urls)]
	for _, res := range valid {
		r.RPS += res.RPS()
		r.Requests += res.Requests
		r.Errors += res.Errors()
		r.Non2xx += res.Status
		// With several instances, the slowest one's percentiles.
		r.P50MS = max(r.P50MS, float64(res.P50US)/1000)
		r.P99MS = max(r.P99MS, float64(res.P99US)/1000)
	}
	all := r.Requests
	if v.flood {
		f := results[len(results)-1]
		r.FloodRPS = f.RPS()
		r.FloodP99MS = float64(f.P99US) / 1000
		all += f.Requests
	}
	if all > 0 {
		r.ProxyCPUus = float64(proxyCPU.Microseconds()) / float64(all)
		r.HelperCPUus = float64(helperCPU.Microseconds()) / float64(all)
		r.UpstreamCPUus = float64(upCPU.Microseconds()) / float64(all)
		if len(t.admins) > 0 && mallocs > 0 {
			r.MallocsPerReq = mallocs / float64(all)
		}
	}
	ours := proxyCPU + helperCPU + upCPU + wrkCPU
	r.OtherCores = max(0, (machine1-machine0-ours).Seconds()/elapsed.Seconds())
	r.WrkCores = wrkCPU.Seconds() / elapsed.Seconds()
	return r, nil
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

// cpuOf returns the CPU time the processes have used so far.
func cpuOf(list []*proc) time.Duration {
	var sum time.Duration
	for _, p := range list {
		if d, err := procCPU(p.Pid()); err == nil {
			sum += d
		}
	}
	return sum
}

// mallocsOf returns the sum of go_memstats_mallocs_total over the admin
// endpoints' metrics.
func mallocsOf(ctx context.Context, admins []string) float64 {
	var sum float64
	for _, a := range admins {
		body, err := get(ctx, a+"/metrics")
		if err != nil {
			return 0
		}
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "go_memstats_mallocs_total "); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				sum += f
			}
		}
	}
	return sum
}

// get fetches url.
func get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return body, nil
}
