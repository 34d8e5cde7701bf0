// Command faults measures how keygate behaves under faults: the gateway is
// loaded by wrk with a valid, cached key while it is stopped (SIGTERM,
// SIGKILL), reloaded, its SQLite file's disk is filled or made read-only,
// its PostgreSQL server is restarted or paused, slow clients hold
// connections open, or a key is revoked through another instance. It is not
// a test and asserts nothing: it prints, per scenario, a table of what was
// done, what happened (figures) and what was lost, for docs/RELIABILITY.md.
//
// Run it from the repository root, as root (it mounts small tmpfs file
// systems and starts a private PostgreSQL server as user postgres):
//
//	go run ./test/faults -scenario all
//	go run ./test/faults -scenario sigterm,sigkill
//
// Everything listens on 127.0.0.1 only. Every load is bounded: wrk runs for
// -duration (default 8s) with at most 64 connections. The shared PostgreSQL
// server (-pg, default 127.0.0.1:5432) is only used, never restarted or
// paused, by the revocation scenario, in a database of its own that is
// dropped at the end; pgrestart and pgpause run a private server on port
// -private-pg-port (default 55432), initialised in a temporary directory.
//
// Flags:
//
//	-scenario s      comma-separated: sigterm, sigkill, reloads, fulldisk,
//	                 readonly, pgrestart, pgpause, slowclients, revocation,
//	                 or all
//	-duration d      length of each wrk run (default 8s, at most 10s)
//	-connections n   wrk connections (default 32, at most 64)
//	-trials n        revocation trials (default 100)
//	-keygate path    a keygate binary to use instead of building one
//	-out dir         logs and the report (default test/.cache/faults/<time>)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/docana/keygate/test/internal/loadkit"
)

// options are the command line flags.
type options struct {
	scenarios     []string
	duration      time.Duration
	connections   int
	trials        int
	keygate       string
	out           string
	pgDSN         string
	privatePGPort int
}

// scenario is one fault and its measurement.
type scenario struct {
	name string
	run  func(ctx context.Context, e *env) (*result, error)
}

var scenarios = []scenario{
	{"sigterm", runSigterm},
	{"sigkill", runSigkill},
	{"reloads", runReloads},
	{"fulldisk", runFullDisk},
	{"readonly", runReadOnly},
	{"pgrestart", runPGRestart},
	{"pgpause", runPGPause},
	{"slowclients", runSlowClients},
	{"revocation", runRevocation},
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

func main() {
	var o options
	var list string
	flag.StringVar(&list, "scenario", "all", "comma-separated scenarios: "+strings.Join(scenarioNames(), ", ")+", or all")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "length of each wrk run (at most 10s)")
	flag.IntVar(&o.connections, "connections", 32, "wrk connections (at most 64)")
	flag.IntVar(&o.trials, "trials", 100, "revocation trials")
	flag.StringVar(&o.keygate, "keygate", "", "keygate binary to use instead of building ./cmd/keygate")
	flag.StringVar(&o.out, "out", "", "output directory (default test/.cache/faults/<time>)")
	flag.StringVar(&o.pgDSN, "pg", "", "shared PostgreSQL server for the revocation scenario (default $KEYGATE_TEST_POSTGRES or postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)")
	flag.IntVar(&o.privatePGPort, "private-pg-port", 55432, "port of the private PostgreSQL server of pgrestart and pgpause")
	flag.Parse()
	if list == "all" {
		o.scenarios = scenarioNames()
	} else {
		for _, s := range strings.Split(list, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(scenarioNames(), s) {
				fatalf("unknown scenario %q: want %s or all", s, strings.Join(scenarioNames(), ", "))
			}
			o.scenarios = append(o.scenarios, s)
		}
	}
	if o.duration < time.Second || o.duration > 10*time.Second {
		fatalf("-duration must be between 1s and 10s")
	}
	if o.connections < 1 || o.connections > 64 {
		fatalf("-connections must be between 1 and 64")
	}
	if o.pgDSN == "" {
		o.pgDSN = os.Getenv("KEYGATE_TEST_POSTGRES")
	}
	if o.pgDSN == "" {
		o.pgDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}

	// Every scenario is bounded; this bounds them all, in case one hangs.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(o.scenarios))*10*time.Minute)
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-signals
		logf("%v: stopping", sig)
		cancel()
		<-signals
		loadkit.KillAll()
		runCleanups()
		os.Exit(130)
	}()
	err := run(ctx, o)
	cancel()
	loadkit.KillAll()
	runCleanups()
	if err != nil {
		fatalf("%v", err)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" faults: "+format+"\n", args...)
}

func fatalf(format string, args ...any) {
	logf(format, args...)
	os.Exit(1)
}

// env is what every scenario shares.
type env struct {
	opt  options
	root string // the module's root
	bin  string // the keygate binary
	out  string
	work string
	up   *upstream
}

func run(ctx context.Context, o options) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed: apt-get install -y wrk")
	}
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return fmt.Errorf("finding the module root (run from the repository): %v", err)
	}
	e := &env{opt: o, root: filepath.Dir(strings.TrimSpace(string(gomod)))}
	e.out = o.out
	if e.out == "" {
		e.out = filepath.Join(e.root, "test", ".cache", "faults", time.Now().Format("20060102-150405"))
	}
	e.work = filepath.Join(e.out, "work")
	if err := os.MkdirAll(e.work, 0o755); err != nil {
		return err
	}
	logf("output in %s", e.out)
	if e.bin = o.keygate; e.bin == "" {
		e.bin = filepath.Join(e.out, "keygate")
		logf("building ./cmd/keygate")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", e.bin, "./cmd/keygate")
		cmd.Dir, cmd.Stdout, cmd.Stderr = e.root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
	} else if e.bin, err = filepath.Abs(e.bin); err != nil {
		return err
	}
	if e.up, err = startUpstream(); err != nil {
		return err
	}
	defer e.up.close()

	var report strings.Builder
	fmt.Fprintf(&report, "Machine: %s; load average %.2f at the start.\n\n", machine(), loadkit.LoadAverage())
	for _, name := range o.scenarios {
		for _, s := range scenarios {
			if s.name != name {
				continue
			}
			logf("scenario %s", name)
			res, err := s.run(ctx, e)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("scenario %s: %w", name, err)
			}
			res.name = name
			md := res.markdown()
			fmt.Print(md)
			report.WriteString(md)
			if err := os.WriteFile(filepath.Join(e.out, "report.md"), []byte(report.String()), 0o644); err != nil {
				return err
			}
		}
	}
	logf("report in %s", filepath.Join(e.out, "report.md"))
	return nil
}

// machine describes the machine in one line.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	out, _ := exec.Command("nproc").Output()
	return fmt.Sprintf("%s, %s cores", model, strings.TrimSpace(string(out)))
}

// cleanups undo what the scenarios did to the machine (mounts, the private
// PostgreSQL server) if they are interrupted.
var cleanups []func()

func atCleanup(f func()) { cleanups = append(cleanups, f) }

func runCleanups() {
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanups = nil
}
