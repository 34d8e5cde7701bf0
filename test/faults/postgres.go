package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docana/keygate/test/internal/loadkit"
)

// privatePG is a PostgreSQL server of this program's own, in a temporary
// directory, listening on 127.0.0.1 only, with trust authentication: the
// one the pgrestart and pgpause scenarios restart and pause. The shared
// server other work uses is never touched.
type privatePG struct {
	bin, dir, data string
	port           int
	cred           *syscall.Credential
}

// startPrivatePG initialises and starts the server as user postgres.
func startPrivatePG(port int) (*privatePG, error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		return nil, fmt.Errorf("no /usr/lib/postgresql/*/bin/initdb: install postgresql")
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "keygate-faults-pg-")
	if err != nil {
		return nil, err
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	pg := &privatePG{bin: filepath.Dir(bins[len(bins)-1]), dir: dir, data: filepath.Join(dir, "data"), port: port,
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	atCleanup(pg.destroy)
	if out, err := pg.run("initdb", "-D", pg.data, "-U", "postgres", "--auth=trust", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, dir)
	if out, err := pg.run("pg_ctl", "-D", pg.data, "-o", opts, "-l", filepath.Join(dir, "server.log"), "-w", "start"); err != nil {
		return nil, fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return pg, nil
}

// run runs a PostgreSQL program as user postgres and returns its output.
// The output goes through a file, not a pipe: a server that pg_ctl starts
// inherits it and would keep a pipe open.
func (pg *privatePG) run(name string, args ...string) ([]byte, error) {
	out, err := os.CreateTemp("", "keygate-faults-pg-out-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.Command(filepath.Join(pg.bin, name), args...)
	cmd.Dir = pg.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.cred}
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	return b, err
}

func (pg *privatePG) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}

// postmaster returns the server's process ID.
func (pg *privatePG) postmaster() (int, error) {
	b, err := os.ReadFile(filepath.Join(pg.data, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// children returns the processes whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name, field 2, is in parentheses; ppid is field 4.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// destroy stops the server and removes its directory.
func (pg *privatePG) destroy() {
	if pid, err := pg.postmaster(); err == nil {
		_ = syscall.Kill(pid, syscall.SIGCONT)
		for _, c := range children(pid) {
			_ = syscall.Kill(c, syscall.SIGCONT)
		}
	}
	_, _ = pg.run("pg_ctl", "-D", pg.data, "-m", "immediate", "-w", "stop")
	_ = os.RemoveAll(pg.dir)
}

// pgProbe is one answer seen during a PostgreSQL fault.
type pgProbe struct {
	at      time.Time
	kind    string // "valid" (a stored key never used), "unknown", "admin get", "admin create"
	status  int
	retry   string
	took    time.Duration
	err     error
	proxied bool // a valid key's request reached the upstream
}

func runPGRestart(ctx context.Context, e *env) (*result, error) {
	return runPGFault(ctx, e, "pgrestart", "private PostgreSQL restarted under load",
		"pg_ctl restart -m fast -w", func(pg *privatePG) error {
			out, err := pg.run("pg_ctl", "-D", pg.data, "-l", filepath.Join(pg.dir, "server.log"), "-m", "fast", "-w", "restart")
			if err != nil {
				return fmt.Errorf("pg_ctl restart: %v: %s", err, out)
			}
			return nil
		})
}

const pauseFor = 5 * time.Second

func runPGPause(ctx context.Context, e *env) (*result, error) {
	return runPGFault(ctx, e, "pgpause", fmt.Sprintf("private PostgreSQL paused %v (store timeout 2s) under load", pauseFor),
		fmt.Sprintf("kill -STOP <postmaster> <its children>; sleep %v; kill -CONT the same", pauseFor), func(pg *privatePG) error {
			pid, err := pg.postmaster()
			if err != nil {
				return err
			}
			// The postmaster first, so that it forks no new backend; every
			// backend is a session leader of its own, so they are found
			// by parent, not by process group.
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				return err
			}
			stopped := append([]int{pid}, children(pid)...)
			for _, c := range stopped[1:] {
				_ = syscall.Kill(c, syscall.SIGSTOP)
			}
			logf("  stopped %d PostgreSQL processes", len(stopped))
			time.Sleep(pauseFor)
			for i := len(stopped) - 1; i >= 0; i-- {
				_ = syscall.Kill(stopped[i], syscall.SIGCONT)
			}
			return nil
		})
}

// runPGFault loads a gateway on the private server with a cached key,
// applies fault (which returns when the fault is over) and probes with
// uncached keys and the admin API before, during and after.
func runPGFault(ctx context.Context, e *env, name, about, command string, fault func(*privatePG) error) (*result, error) {
	res := &result{}
	pg, err := startPrivatePG(e.opt.privatePGPort)
	if err != nil {
		return nil, err
	}
	defer pg.destroy()
	g, err := e.startGateway(ctx, name, gatewayConfig{Store: `store postgres "` + pg.dsn() + `"`, LastUsedInterval: "1s"})
	if err != nil {
		return nil, err
	}
	defer g.proc.Stop(15 * time.Second)
	_, _, file, err := g.keys(ctx, 1, name)
	if err != nil {
		return nil, err
	}
	fresh, freshIDs, _, err := g.keys(ctx, 120, name+" fresh")
	if err != nil {
		return nil, err
	}
	_, adminID, err := g.createKey(ctx, name+" admin")
	if err != nil {
		return nil, err
	}

	anonymous0 := e.up.anonymous.Load()
	const loadFor = 10 * time.Second
	w, err := g.startWrk("wrk-"+name, file, 1, loadFor)
	if err != nil {
		return nil, err
	}
	stop := make(chan struct{})
	var mu sync.Mutex
	var probes []pgProbe
	record := func(p pgProbe) {
		mu.Lock()
		probes = append(probes, p)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // keys, every 100ms: one valid never-used key, one unknown key
		defer wg.Done()
		for i := 0; i < len(fresh); i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			start := time.Now()
			st, ra, err := g.probe(ctx, fresh[i], 10*time.Second)
			n, _ := e.up.seen(freshIDs[i])
			record(pgProbe{at: start, kind: "valid", status: st, retry: ra, took: time.Since(start), err: err, proxied: n > 0})
			start = time.Now()
			st, ra, err = g.probe(ctx, randomKey(), 10*time.Second)
			record(pgProbe{at: start, kind: "unknown", status: st, retry: ra, took: time.Since(start), err: err})
		}
	}()
	go func() { // the admin API, every 250ms
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			start := time.Now()
			a := g.adminCall(ctx, http.MethodGet, "/apikeys/"+adminID, nil, 15*time.Second)
			record(pgProbe{at: start, kind: "admin get", status: a.status, retry: a.retryAfter, took: time.Since(start), err: a.err})
			start = time.Now()
			a = g.adminCall(ctx, http.MethodPost, "/apikeys", map[string]string{"name": fmt.Sprintf("%s admin %d", name, i), "scope": "full", "expires_in": "1d"}, 15*time.Second)
			record(pgProbe{at: start, kind: "admin create", status: a.status, retry: a.retryAfter, took: time.Since(start), err: a.err})
		}
	}()
	time.Sleep(1500 * time.Millisecond)
	faultAt := time.Now()
	if err := fault(pg); err != nil {
		close(stop)
		wg.Wait()
		return nil, err
	}
	endAt := time.Now()
	r, err := loadkit.WaitWrk(ctx, e.work, w)
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, err
	}

	// Phases: before the fault, during it, after it ended.
	phase := func(t time.Time) int {
		switch {
		case t.Before(faultAt):
			return 0
		case t.Before(endAt):
			return 1
		}
		return 2
	}
	phaseNames := []string{"before", "during", "after"}
	summary := map[string][3]map[string]int{}
	var notProxiedWrong, unauthorizedValid int
	var recovered time.Time // the first ok answer of a valid key after which all were ok
	var recoveredAdmin time.Time
	for _, kind := range []string{"valid", "unknown", "admin get", "admin create"} {
		summary[kind] = [3]map[string]int{{}, {}, {}}
	}
	var maxTook = map[string]time.Duration{}
	for _, p := range probes {
		ans := strconv.Itoa(p.status)
		if p.err != nil {
			ans = "client error"
		} else if p.retry != "" {
			ans += " (Retry-After " + p.retry + ")"
		}
		summary[p.kind][phase(p.at)][ans]++
		if phase(p.at) >= 1 {
			maxTook[p.kind] = max(maxTook[p.kind], p.took)
		}
		if p.kind == "valid" {
			if p.status != 200 && p.proxied {
				notProxiedWrong++
			}
			if p.status == 401 {
				unauthorizedValid++
			}
			if phase(p.at) >= 1 {
				if p.status == 200 {
					if recovered.IsZero() {
						recovered = p.at.Add(p.took)
					}
				} else {
					recovered = time.Time{}
				}
			}
		}
		if p.kind == "admin create" && phase(p.at) >= 1 {
			if p.status == 201 {
				if recoveredAdmin.IsZero() {
					recoveredAdmin = p.at.Add(p.took)
				}
			} else {
				recoveredAdmin = time.Time{}
			}
		}
	}
	answers := func(kind string) string {
		var parts []string
		for i, m := range summary[kind] {
			var s []string
			for a, n := range m {
				s = append(s, fmt.Sprintf("%d× %s", n, a))
			}
			parts = append(parts, phaseNames[i]+": "+strings.Join(sorted(s), ", "))
		}
		return strings.Join(parts, "; ") + fmt.Sprintf("; slowest during/after %v", maxTook[kind].Round(time.Millisecond))
	}
	since := func(t time.Time) string {
		switch {
		case t.IsZero():
			return "not within the run"
		case t.Before(endAt):
			return "already before"
		}
		return t.Sub(endAt).Round(time.Millisecond).String()
	}
	failed := r.Status + r.Read + r.Write + r.Timeout + r.Connect
	res.add(about, fmt.Sprintf("`go run ./test/faults -scenario %s` (%s, %v into a %v wrk run, -c %d, one cached key; fault lasted %v)",
		name, command, 1500*time.Millisecond, loadFor, e.opt.connections, endAt.Sub(faultAt).Round(time.Millisecond)),
		"cached key: "+wrkSummary(r),
		fmt.Sprintf("%d failed of %d (%.3f%% success)", failed, r.Requests, 100*float64(r.Requests-failed)/float64(max(r.Requests, 1))))
	res.add("uncached valid keys (stored, never used), one every ~100ms", "GET / with the key",
		answers("valid"), fmt.Sprintf("%d answered 401; %d not 200 yet proxied; back to 200 for good %s after the fault ended", unauthorizedValid, notProxiedWrong, since(recovered)))
	res.add("unknown well-formed keys, one every ~100ms", "GET / with a random key", answers("unknown"),
		fmt.Sprintf("requests without a key identity that reached the upstream: %d", e.up.anonymous.Load()-anonymous0))
	res.add("admin reads, every ~250ms", "GET /apikeys/{id}", answers("admin get"), "-")
	res.add("admin writes, every ~250ms", "POST /apikeys", answers("admin create"), fmt.Sprintf("back to 201 for good %s after the fault ended", since(recoveredAdmin)))
	return res, nil
}

func sorted(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}
