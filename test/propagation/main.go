// Command propagation measures how a change made through one gateway
// instance reaches the others of a fleet sharing one PostgreSQL store: the
// revoke answer's latency (which waits for every live instance to confirm,
// or confirm_timeout), the first request to every other instance after the
// answer, an instance paused by SIGSTOP while a key is revoked, and an
// instance cut from the database. It asserts nothing: it prints tables for
// docs/PROPAGATION.md. The end-to-end tests in test/fleet_test.go check the
// same behaviours with few trials.
//
// Run it from the repository root, with PostgreSQL at -pg (default the
// local server, user postgres, trust authentication):
//
//	go run ./test/propagation
//	go run ./test/propagation -trials 100 -fleets 2,3 -scenario all
//
// Every instance runs the real keygate binary (built from ./cmd/keygate
// unless -keygate names one) with the defaults (cache_ttl 1m,
// sync_interval 5s, confirm_timeout 2s) unless a scenario says otherwise.
// It uses a database of its own, dropped at the end, and listens on
// 127.0.0.1 only.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docana/keygate/test/internal/loadkit"
)

type options struct {
	trials, pauseTrials int
	fleets              []int
	scenarios           []string
	pgDSN, keygate, out string
	cutTTL              time.Duration
}

func main() {
	var o options
	var fleets, scen string
	flag.IntVar(&o.trials, "trials", 100, "revocations per fleet size")
	flag.IntVar(&o.pauseTrials, "pause-trials", 10, "revocations with one instance paused")
	flag.StringVar(&fleets, "fleets", "2,3", "fleet sizes, comma-separated")
	flag.StringVar(&scen, "scenario", "all", "comma-separated: revoke, pause, cut, or all")
	flag.StringVar(&o.pgDSN, "pg", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server to create the database on")
	flag.StringVar(&o.keygate, "keygate", "", "keygate binary (default: build ./cmd/keygate)")
	flag.StringVar(&o.out, "out", "", "logs and the report (default test/.cache/propagation/<time>)")
	flag.DurationVar(&o.cutTTL, "cut-ttl", 10*time.Second, "cache_ttl of the instance cut from the database")
	flag.Parse()
	for _, f := range strings.Split(fleets, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 || n > 5 {
			fatalf("-fleets: %q is not a fleet size from 2 to 5", f)
		}
		o.fleets = append(o.fleets, n)
	}
	o.scenarios = strings.Split(scen, ",")
	if scen == "all" {
		o.scenarios = []string{"revoke", "pause", "cut"}
	}
	ctx := context.Background()
	err := run(ctx, o)
	loadkit.KillAll()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	if err != nil {
		fatalf("%v", err)
	}
}

var cleanups []func()

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "propagation: "+format+"\n", args...)
}

func fatalf(format string, args ...any) {
	logf(format, args...)
	os.Exit(1)
}

// env is what every scenario shares.
type env struct {
	bin, work, dsn string
	upstream       string
	opt            options
	client         *http.Client
	report         strings.Builder
}

func run(ctx context.Context, o options) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return fmt.Errorf("finding the module root (run from the repository): %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if o.out == "" {
		o.out = filepath.Join(root, "test", ".cache", "propagation", time.Now().Format("20060102-150405"))
	}
	e := &env{opt: o, work: o.out, client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}}
	if err := os.MkdirAll(e.work, 0o755); err != nil {
		return err
	}
	logf("output in %s", e.work)
	if e.bin = o.keygate; e.bin == "" {
		e.bin = filepath.Join(e.work, "keygate")
		logf("building ./cmd/keygate")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", e.bin, "./cmd/keygate")
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
	}
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer up.Close()
	go http.Serve(up, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })) //nolint:errcheck
	e.upstream = up.Addr().String()

	fmt.Fprintf(&e.report, "Machine: %s; load average %.2f at the start; %s.\n\n", machine(), loadkit.LoadAverage(), time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	for _, s := range o.scenarios {
		var err error
		switch s {
		case "revoke":
			for _, n := range o.fleets {
				if err = e.revokeScenario(ctx, n); err != nil {
					break
				}
			}
		case "pause":
			err = e.pauseScenario(ctx)
		case "cut":
			err = e.cutScenario(ctx)
		default:
			err = fmt.Errorf("unknown scenario %q", s)
		}
		if err != nil {
			return fmt.Errorf("scenario %s: %w", s, err)
		}
		if err := os.WriteFile(filepath.Join(e.work, "report.md"), []byte(e.report.String()), 0o644); err != nil {
			return err
		}
	}
	fmt.Print(e.report.String())
	logf("report in %s", filepath.Join(e.work, "report.md"))
	return nil
}

// gateway is one running instance.
type gateway struct {
	name, site, admin, id string
	proc                  *loadkit.Proc
}

// config is what differs between the scenarios' instances.
type config struct {
	dsn                      string
	cacheTTL, confirmTimeout string
}

const caddyfile = `{
	admin 127.0.0.1:%d
	persist_config off
	apikeys {
		store postgres {env.KEYGATE_DSN}
		%s
	}
}

http://127.0.0.1:%d {
	apikey
	reverse_proxy %s
}
`

// start runs an instance and learns its instance ID from the registry.
func (e *env) start(ctx context.Context, name string, c config, known []string) (*gateway, error) {
	site, err := loadkit.FreePort()
	if err != nil {
		return nil, err
	}
	admin, err := loadkit.FreePort()
	if err != nil {
		return nil, err
	}
	var opts []string
	if c.cacheTTL != "" {
		opts = append(opts, "cache_ttl "+c.cacheTTL)
	}
	if c.confirmTimeout != "" {
		opts = append(opts, "confirm_timeout "+c.confirmTimeout)
	}
	home := filepath.Join(e.work, "home-"+name)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(home, "Caddyfile")
	text := fmt.Sprintf(caddyfile, admin, strings.Join(opts, "\n\t\t"), site, e.upstream)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return nil, err
	}
	g := &gateway{name: name, site: fmt.Sprintf("http://127.0.0.1:%d/", site), admin: fmt.Sprintf("http://127.0.0.1:%d", admin)}
	g.proc, err = loadkit.StartProc(name, e.work, e.bin, []string{"run", "--config", path, "--adapter", "caddyfile"},
		[]string{"HOME=" + home, "XDG_DATA_HOME=" + filepath.Join(home, "data"), "XDG_CONFIG_HOME=" + filepath.Join(home, "config"), "KEYGATE_DSN=" + c.dsn})
	if err != nil {
		return nil, err
	}
	if err := loadkit.WaitHTTP(ctx, g.proc, g.site, time.Minute); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var l struct {
			Instances []struct {
				ID string `json:"id"`
			} `json:"instances"`
		}
		if st, body, err := e.call(g.admin, http.MethodGet, "/apikeys/instances", nil); err == nil && st == 200 {
			if json.Unmarshal(body, &l) == nil {
				for _, in := range l.Instances {
					if !slices.Contains(known, in.ID) {
						g.id = in.ID
						return g, nil
					}
				}
			}
		}
	}
	return nil, fmt.Errorf("%s never appeared in the instance registry", name)
}

func (e *env) call(base, method, path string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// probe sends one request with secret to g and returns its status and
// error code ("" for 200).
func (e *env) probe(g *gateway, secret string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, g.site, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "ApiKey "+secret)
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var fail struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(b, &fail)
	return resp.StatusCode, fail.Error.Code, nil
}

func (e *env) createKey(g *gateway, name string) (secret, id string, err error) {
	st, body, err := e.call(g.admin, http.MethodPost, "/apikeys", map[string]string{"name": name, "scope": "full", "expires_in": "1d"})
	if err != nil || st != http.StatusCreated {
		return "", "", fmt.Errorf("create: %d %s %v", st, body, err)
	}
	var c struct {
		Secret string `json:"secret"`
		APIKey struct {
			ID string `json:"id"`
		} `json:"api_key"`
	}
	err = json.Unmarshal(body, &c)
	return c.Secret, c.APIKey.ID, err
}

type propagation struct {
	Confirmed []string `json:"confirmed"`
	Pending   []string `json:"pending"`
}

// revoke revokes id through g and returns the answer's latency and
// propagation.
func (e *env) revoke(g *gateway, id string) (time.Duration, propagation, error) {
	start := time.Now()
	st, body, err := e.call(g.admin, http.MethodDelete, "/apikeys/"+id, nil)
	took := time.Since(start)
	if err != nil || st != http.StatusOK {
		return 0, propagation{}, fmt.Errorf("revoke: %d %s %v", st, body, err)
	}
	var k struct {
		Propagation *propagation `json:"propagation"`
	}
	if err := json.Unmarshal(body, &k); err != nil || k.Propagation == nil {
		return 0, propagation{}, fmt.Errorf("revoke answer without propagation: %s", body)
	}
	return took, *k.Propagation, nil
}

func (e *env) fleet(ctx context.Context, prefix string, n int, c config) ([]*gateway, error) {
	var gws []*gateway
	var ids []string
	for i := range n {
		g, err := e.start(ctx, fmt.Sprintf("%s-%c", prefix, 'a'+i), c, ids)
		if err != nil {
			return nil, err
		}
		gws, ids = append(gws, g), append(ids, g.id)
	}
	return gws, nil
}

func stopAll(gws []*gateway) {
	for _, g := range gws {
		g.proc.Stop(10 * time.Second)
	}
}

// revokeScenario: n instances; trials revocations through the first; the
// first request to every other instance after each answer.
func (e *env) revokeScenario(ctx context.Context, n int) error {
	dsn, err := e.database(ctx)
	if err != nil {
		return err
	}
	gws, err := e.fleet(ctx, fmt.Sprintf("revoke%d", n), n, config{dsn: dsn})
	if err != nil {
		return err
	}
	defer stopAll(gws)
	logf("revoke: %d instances, %d trials", n, e.opt.trials)
	var lat []time.Duration
	refused := make([]int, n)
	allConfirmed := 0
	var odd []string
	for i := range e.opt.trials {
		secret, id, err := e.createKey(gws[0], fmt.Sprintf("trial %d", i))
		if err != nil {
			return err
		}
		for _, g := range gws {
			if st, _, err := e.probe(g, secret); err != nil || st != 200 {
				return fmt.Errorf("trial %d: warming %s: %d %v", i, g.name, st, err)
			}
		}
		took, p, err := e.revoke(gws[0], id)
		if err != nil {
			return err
		}
		lat = append(lat, took)
		if len(p.Pending) == 0 && len(p.Confirmed) == n {
			allConfirmed++
		}
		for j, g := range gws {
			st, code, err := e.probe(g, secret)
			if err != nil {
				return err
			}
			if st == 401 && code == "api_key_revoked" {
				refused[j]++
			} else {
				odd = append(odd, fmt.Sprintf("trial %d: %s answered %d %q", i, g.name, st, code))
			}
		}
	}
	fmt.Fprintf(&e.report, "### Revoke with %d instances\n\n", n)
	fmt.Fprintf(&e.report, "%d revocations through instance a (`DELETE /apikeys/{id}` on its admin API; every instance had the key cached), then one request with the key to every instance.\n\n", e.opt.trials)
	fmt.Fprintf(&e.report, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(&e.report, "| revoke answer latency | %s |\n", dist(lat))
	fmt.Fprintf(&e.report, "| answers confirmed by all %d instances | %d of %d |\n", n, allConfirmed, e.opt.trials)
	for j, g := range gws {
		what := "other instance"
		if j == 0 {
			what = "the instance revoking"
		}
		fmt.Fprintf(&e.report, "| first request to %s (%s) refused (401 api_key_revoked) | %d of %d |\n", g.name, what, refused[j], e.opt.trials)
	}
	e.report.WriteString("\n")
	for _, o := range odd {
		fmt.Fprintf(&e.report, "* %s\n", o)
	}
	return nil
}

// pauseScenario: three instances, the third paused (SIGSTOP) while a key is
// revoked; then SIGCONT and one request to it at once.
func (e *env) pauseScenario(ctx context.Context) error {
	dsn, err := e.database(ctx)
	if err != nil {
		return err
	}
	gws, err := e.fleet(ctx, "pause", 3, config{dsn: dsn})
	if err != nil {
		return err
	}
	defer stopAll(gws)
	a, b, c := gws[0], gws[1], gws[2]
	logf("pause: %d trials", e.opt.pauseTrials)
	var lat, resumeLat []time.Duration
	namedPending, bRefused, cRefused := 0, 0, 0
	var odd []string
	for i := range e.opt.pauseTrials {
		secret, id, err := e.createKey(a, fmt.Sprintf("pause %d", i))
		if err != nil {
			return err
		}
		for _, g := range gws {
			if st, _, err := e.probe(g, secret); err != nil || st != 200 {
				return fmt.Errorf("trial %d: warming %s: %d %v", i, g.name, st, err)
			}
		}
		if err := syscall.Kill(c.proc.Pid(), syscall.SIGSTOP); err != nil {
			return err
		}
		if err := waitStopped(c.proc.Pid()); err != nil {
			return err
		}
		took, p, err := e.revoke(a, id)
		if err != nil {
			syscall.Kill(c.proc.Pid(), syscall.SIGCONT)
			return err
		}
		lat = append(lat, took)
		if slices.Equal(p.Pending, []string{c.id}) {
			namedPending++
		} else {
			odd = append(odd, fmt.Sprintf("trial %d: propagation %+v, want %s pending", i, p, c.id))
		}
		if st, code, _ := e.probe(b, secret); st == 401 && code == "api_key_revoked" {
			bRefused++
		}
		if err := syscall.Kill(c.proc.Pid(), syscall.SIGCONT); err != nil {
			return err
		}
		start := time.Now()
		st, code, err := e.probe(c, secret)
		resumeLat = append(resumeLat, time.Since(start))
		if err != nil {
			return err
		}
		if st == 401 && code == "api_key_revoked" {
			cRefused++
		} else {
			odd = append(odd, fmt.Sprintf("trial %d: the resumed instance answered %d %q", i, st, code))
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Fprintf(&e.report, "### One of three instances paused (SIGSTOP)\n\n")
	fmt.Fprintf(&e.report, "%d trials: instance c is stopped with SIGSTOP, a cached key revoked through a, then c continued (SIGCONT) and sent one request with the key at once. Defaults: confirm_timeout 2s, cache_ttl 1m.\n\n", e.opt.pauseTrials)
	fmt.Fprintf(&e.report, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(&e.report, "| revoke answer latency | %s |\n", dist(lat))
	fmt.Fprintf(&e.report, "| answers naming c (and only c) pending | %d of %d |\n", namedPending, e.opt.pauseTrials)
	fmt.Fprintf(&e.report, "| first request to b after the answer refused | %d of %d |\n", bRefused, e.opt.pauseTrials)
	fmt.Fprintf(&e.report, "| first request to c after SIGCONT refused | %d of %d |\n", cRefused, e.opt.pauseTrials)
	fmt.Fprintf(&e.report, "| that request's latency | %s |\n\n", dist(resumeLat))
	for _, o := range odd {
		fmt.Fprintf(&e.report, "* %s\n", o)
	}
	return nil
}

// cutScenario: three instances, the third reaching the database through a
// link that is cut; a key it has cached is revoked meanwhile.
func (e *env) cutScenario(ctx context.Context) error {
	dsn, err := e.database(ctx)
	if err != nil {
		return err
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return err
	}
	l, err := newLink(u.Host)
	if err != nil {
		return err
	}
	defer l.close()
	via := *u
	via.Host = l.addr
	gws, err := e.fleet(ctx, "cut", 2, config{dsn: dsn})
	if err != nil {
		return err
	}
	defer stopAll(gws)
	c, err := e.start(ctx, "cut-c", config{dsn: via.String(), cacheTTL: e.opt.cutTTL.String()}, []string{gws[0].id, gws[1].id})
	if err != nil {
		return err
	}
	defer c.proc.Stop(10 * time.Second)
	a := gws[0]
	logf("cut: cache_ttl %v on the cut instance", e.opt.cutTTL)
	secret, id, err := e.createKey(a, "cut")
	if err != nil {
		return err
	}
	other, _, err := e.createKey(a, "cut, not revoked")
	if err != nil {
		return err
	}
	for _, s := range []string{secret, other} {
		if st, _, err := e.probe(c, s); err != nil || st != 200 {
			return fmt.Errorf("warming c: %d %v", st, err)
		}
	}
	cut := time.Now()
	l.cut()
	took, p, err := e.revoke(a, id)
	if err != nil {
		return err
	}
	// c answers the revoked key from its cache until it stops trusting
	// it; then 503 for every key.
	var first503, other503 time.Duration
	served := 0
	for time.Since(cut) < e.opt.cutTTL+15*time.Second && (first503 == 0 || other503 == 0) {
		st, code, err := e.probe(c, secret)
		if err != nil {
			return err
		}
		if st == 200 {
			served++
		}
		if st == 503 && code == "key_store_unavailable" && first503 == 0 {
			first503 = time.Since(cut)
		}
		if st, _, _ := e.probe(c, other); st == 503 && other503 == 0 {
			other503 = time.Since(cut)
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.mend()
	mended := time.Now()
	var refusedAfter time.Duration
	for time.Since(mended) < 30*time.Second {
		st, code, _ := e.probe(c, secret)
		if st == 401 && code == "api_key_revoked" {
			refusedAfter = time.Since(mended)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(&e.report, "### One of three instances cut from the database\n\n")
	fmt.Fprintf(&e.report, "Instance c reaches PostgreSQL through a TCP link that is cut (connections closed, new ones refused); c has cache_ttl %v, the others the defaults. A key c has cached is revoked through a right after the cut; c is asked every 100ms.\n\n", e.opt.cutTTL)
	fmt.Fprintf(&e.report, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(&e.report, "| revoke answer latency; pending | %v; %v (c is %s) |\n", took.Round(time.Millisecond), p.Pending, c.id)
	fmt.Fprintf(&e.report, "| requests c served with the revoked key after the cut | %d |\n", served)
	fmt.Fprintf(&e.report, "| c answers 503 key_store_unavailable for the revoked key, after the cut | %v |\n", first503.Round(time.Millisecond))
	fmt.Fprintf(&e.report, "| c answers 503 for a key not revoked, after the cut | %v |\n", other503.Round(time.Millisecond))
	fmt.Fprintf(&e.report, "| after the link is mended, c refuses the revoked key (401) within | %v |\n\n", refusedAfter.Round(time.Millisecond))
	return nil
}

// database creates a database of its own, dropped at the end.
func (e *env) database(ctx context.Context) (string, error) {
	conn, err := pgx.Connect(ctx, e.opt.pgDSN)
	if err != nil {
		return "", fmt.Errorf("PostgreSQL server unreachable (-pg): %w", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	rand.Read(b[:])
	name := "keygate_propagation_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	cleanups = append(cleanups, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, e.opt.pgDSN)
		if err != nil {
			logf("dropping %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			logf("dropping %s: %v", name, err)
		}
	})
	u, err := url.Parse(e.opt.pgDSN)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}

// link is a TCP forwarder to the database that can be cut.
type link struct {
	addr   string
	target string
	ln     net.Listener
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newLink(target string) (*link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &link{addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.forward(c)
		}
	}()
	return l, nil
}

func (l *link) forward(c net.Conn) {
	l.mu.Lock()
	down := l.down
	l.mu.Unlock()
	if down {
		c.Close()
		return
	}
	s, err := net.Dial("tcp", l.target)
	if err != nil {
		c.Close()
		return
	}
	l.mu.Lock()
	l.conns[c], l.conns[s] = true, true
	l.mu.Unlock()
	go func() { io.Copy(s, c); s.Close(); c.Close() }() //nolint:errcheck
	io.Copy(c, s)                                       //nolint:errcheck
	c.Close()
	s.Close()
}

func (l *link) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = true
	for c := range l.conns {
		c.Close()
	}
	l.conns = map[net.Conn]bool{}
}

func (l *link) mend() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = false
}

func (l *link) close() { l.ln.Close(); l.cut() }

// dist describes durations: median, p90, p99, max, in milliseconds.
func dist(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) string {
		i := int(p*float64(len(s)-1) + 0.5)
		return fmt.Sprintf("%.1f ms", float64(s[i])/float64(time.Millisecond))
	}
	return fmt.Sprintf("median %s, p90 %s, p99 %s, max %s (n=%d)", q(0.5), q(0.9), q(0.99), q(1), len(s))
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores", model, countCPUs())
}

func countCPUs() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "processor\t:")
}

// waitStopped waits until every thread of process pid is stopped (state
// T in /proc): SIGSTOP is delivered asynchronously.
func waitStopped(pid int) error {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		stopped := true
		for _, task := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				continue
			}
			// The state follows the command name in parentheses.
			if i := bytes.LastIndexByte(b, ')'); i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
				stopped = false
				break
			}
		}
		if stopped {
			return nil
		}
	}
	return errors.New("the paused instance did not stop within 5s")
}
