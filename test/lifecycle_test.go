package test

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the driver of keygate's SQLite store
)

// lifecycleCaddyfile writes last-used times only at shutdown and reload
// (the interval is an hour), so a test sees whether those paths lose any.
// .Extra.ttl changes the apikeys configuration, and so whether a reload
// keeps the store, cache and recorder or replaces them; .Extra.tag
// changes only the site. It answers with respond rather than proxying:
// reverse_proxy keeps an idle upstream connection (two goroutines) per
// retired config until its idle timeout, which would hide what this file
// measures.
const lifecycleCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	apikeys {
		last_used_interval 1h
		cache_ttl {{.Extra.ttl}}
	}
}

http://127.0.0.1:{{.Site}} {
	header X-Config {{.Extra.tag}}
	apikey
	respond "ok"
}
`

// noKeepAlive is a client whose connections close after each request, so
// that no idle connection keeps a server goroutine alive between counts.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitLimit}

// goroutines returns the number of goroutines in the gateway, and how many
// of them run keygate's code, from the admin endpoint's pprof.
func goroutines(t *testing.T, g *Gateway) (total, keygate int, dump string) {
	t.Helper()
	resp, err := noKeepAlive.Get(g.AdminURL + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	dump = string(body)
	// "goroutine profile: total N", then groups: "<count> @ <pcs>" and
	// "#\t<pc>\t<function>+0x..\t<file>:<line>" lines, separated by blank
	// lines.
	sc := bufio.NewScanner(strings.NewReader(dump))
	count, ours := 0, false
	flush := func() {
		if ours {
			keygate += count
		}
		count, ours = 0, false
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "goroutine profile: total "):
			total, _ = strconv.Atoi(strings.TrimPrefix(line, "goroutine profile: total "))
		case line == "":
			flush()
		case strings.Contains(line, " @ ") && !strings.HasPrefix(line, "#"):
			count, _ = strconv.Atoi(strings.Fields(line)[0])
		case strings.Contains(line, "github.com/docana/keygate/"):
			ours = true
		}
	}
	flush()
	if total == 0 {
		t.Fatalf("no goroutine total in:\n%s", dump)
	}
	return total, keygate, dump
}

// use sends a request with secret, which must be accepted, and returns
// when it was sent (before) and answered (after).
//
// A connection the old server accepted as a reload shut it down is closed
// without an answer (net/http drops requests read after Shutdown began);
// that is Caddy's listener hand-over, not an answer of keygate's, so use
// retries transport errors. HTTP answers are never retried.
func use(t *testing.T, g *Gateway, secret string) (before, after time.Time) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequest(http.MethodGet, g.SiteURL+"/use", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "ApiKey "+secret)
		before = time.Now()
		resp, err := noKeepAlive.Do(req)
		if err != nil {
			if attempt < 5 {
				t.Logf("attempt %d: %v (retrying)", attempt, err)
				continue
			}
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		after = time.Now()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request with the key: %d %s", resp.StatusCode, body)
		}
		return before, after
	}
}

// checkLastUsed fails unless the key's last_used_at, as the admin API
// shows it, lies in [from, to] (to the microsecond the stores keep).
func checkLastUsed(t *testing.T, g *Gateway, id string, from, to time.Time) {
	t.Helper()
	k := g.GetKey(id)
	if k.LastUsedAt == nil {
		t.Fatalf("last_used_at is null, want a time in [%v, %v]", from, to)
	}
	if k.LastUsedAt.Before(from.Truncate(time.Microsecond)) || k.LastUsedAt.After(to) {
		t.Errorf("last_used_at = %v, want a time in [%v, %v]", k.LastUsedAt, from, to)
	}
}

func TestGatewayReloadsLeakNothingAndLoseNoLastUse(t *testing.T) {
	t.Parallel()
	config := func(i int) (string, map[string]any) {
		// Even reloads change the apikeys block (new store, cache and
		// recorder, the old ones closed once unused); odd ones only the
		// site, keeping them.
		ttl := fmt.Sprintf("%ds", 60+i/2)
		return lifecycleCaddyfile, map[string]any{"ttl": ttl, "tag": fmt.Sprintf("v%d", i)}
	}
	text, extra := config(0)
	g := StartGateway(t, Options{Caddyfile: text, Extra: extra})
	secret, k := g.CreateKey("reloaded", "full", "1d")

	reload := func(i int) {
		text, extra := config(i)
		g.Ports.Extra = extra
		if i%5 == 0 {
			// Every fifth reload goes through the CLI, as operators do.
			if err := os.WriteFile(g.ConfigPath, []byte(g.Render(text)), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, errOut, code := g.Run("reload", "--config", g.ConfigPath, "--adapter", "caddyfile", "--address", g.Ports.Admin); code != 0 {
				t.Fatalf("keygate reload: exit %d\n%s%s", code, out, errOut)
			}
			return
		}
		g.Reload(text)
	}

	// Warm up: one reload of each kind, so that whatever Caddy starts once
	// is running before the baseline.
	use(t, g, secret)
	reload(1)
	reload(2)
	use(t, g, secret)
	baseTotal, baseOurs, baseDump := goroutines(t, g)

	var lastFrom, lastTo time.Time
	for i := 3; i < 23; i++ {
		reload(i)
		lastFrom, lastTo = use(t, g, secret)
		// The admin API shows the use at once, from whichever recorder
		// holds it.
		checkLastUsed(t, g, k.ID, lastFrom, lastTo)
	}

	// Old configs are cleaned up as new ones start; wait for the
	// goroutine counts to settle back.
	deadline := time.Now().Add(waitLimit)
	for {
		total, ours, dump := goroutines(t, g)
		if ours == baseOurs && total <= baseTotal+5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 reloads: %d goroutines, %d in keygate; at the baseline %d and %d\nnow:\n%s\nbaseline:\n%s",
				total, ours, baseTotal, baseOurs, dump, baseDump)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// And the last use survives a stop.
	g.Restart()
	checkLastUsed(t, g, k.ID, lastFrom, lastTo)
}

func TestGatewayWritesTheLastUseOfARequestRightBeforeAStop(t *testing.T) {
	t.Parallel()
	g := StartGateway(t, Options{Caddyfile: lifecycleCaddyfile, Extra: map[string]any{"ttl": "1m", "tag": "v1"}})
	_, unused := g.CreateKey("unused", "full", "1w")
	secret, k := g.CreateKey("stopped", "full", "1w")
	from, to := use(t, g, secret)
	g.Stop() // SIGINT right after the answer
	g.Start()
	checkLastUsed(t, g, k.ID, from, to)
	if got := g.GetKey(unused.ID).LastUsedAt; got != nil {
		t.Errorf("an unused key has last_used_at %v", got)
	}
}

// pooledLogCaddyfile writes the last-used times every second. With
// .Extra.logfile set, Caddy's default log goes to that file instead of
// the process's standard error.
const pooledLogCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	{{with .Extra.logfile}}log {
		output file {{.}}
	}{{end}}
	apikeys {
		last_used_interval 1s
	}
}

http://127.0.0.1:{{.Site}} {
	apikey
	respond "ok"
}
`

// The store, verifier and recorder outlive the config that opened them
// (they are pooled while the apikeys block stays the same), so they must
// not log through that config's logger: once the config is unloaded,
// Caddy closes its log writers, and the pooled resources' warnings would
// go nowhere.
func TestPooledResourcesLogAfterTheirFirstConfigIsUnloaded(t *testing.T) {
	t.Parallel()
	first := map[string]any{"logfile": filepath.Join(t.TempDir(), "first.log")}
	g := StartGateway(t, Options{Caddyfile: pooledLogCaddyfile, Extra: first})
	secret, _ := g.CreateKey("pooled", "full", "1d")
	use(t, g, secret)

	// The same apikeys block: the pool is kept, the first config and its
	// log file are let go, and the log goes to standard error.
	g.Ports.Extra = map[string]any{"logfile": ""}
	g.Reload(pooledLogCaddyfile)

	// Another connection holding SQLite's write lock makes the recorder's
	// next write fail, which it logs.
	db, err := sql.Open("sqlite", filepath.Join(g.Ports.Dir, "data", "caddy", "keygate", "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	use(t, g, secret)
	g.WaitOutput("writing last-used times and usage counts failed")
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(g.Output(), `"logger":"apikeys.last_used"`) {
		t.Errorf("the recorder's warning is not logged under apikeys.last_used:\n%s", g.Output())
	}
	// The failed write is a store error of op touch.
	resp, body := g.Admin(http.MethodGet, "/metrics", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin /metrics: %d", resp.StatusCode)
	}
	if !regexp.MustCompile(`(?m)^caddy_apikey_store_errors_total\{op="touch"\} [1-9]`).Match(body) {
		t.Errorf("no touch store error counted in /metrics:\n%s", body)
	}
}
