package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/docana/keygate/internal/keystore/postgres/pgtest"
)

// rateLimitCaddyfile is a gateway with rate limits: the widget scope has
// a default, a route with rate_limit_headers off, the metrics on /metrics.
// .Extra.Store is the rate_limit_store line, .Extra.OnError the
// rate_limit_on_error value, .Extra.KeyStore the store line.
const rateLimitCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	apikeys {
		{{.Extra.KeyStore}}
		rate_limit widget 2/1m
		{{.Extra.Store}}
		rate_limit_on_error {{.Extra.OnError}}
	}
}

http://127.0.0.1:{{.Site}} {
	handle /quiet/* {
		apikey {
			rate_limit_headers off
		}
		reverse_proxy {{.Upstream}}
	}
	handle /api/widget/* {
		apikey widget
		reverse_proxy {{.Upstream}}
	}
	handle {
		apikey
		reverse_proxy {{.Upstream}}
	}
}
`

func startLimited(t *testing.T, up *Upstream, keyStore, store, onError string, env ...string) *Gateway {
	t.Helper()
	if keyStore == "" {
		keyStore = "store sqlite"
	}
	return StartGateway(t, Options{
		Caddyfile: rateLimitCaddyfile,
		Upstream:  up,
		Extra:     map[string]any{"KeyStore": keyStore, "Store": store, "OnError": onError},
		Env:       env,
	})
}

// createLimitedKey creates a key with rate limits through the admin API.
func (g *Gateway) createLimitedKey(name, scope string, limits, origins []string) (secret string, k APIKey) {
	g.t.Helper()
	body := map[string]any{"name": name, "scope": scope, "expires_in": "1d", "rate_limits": limits}
	if origins != nil {
		body["allowed_origins"] = origins
	}
	resp, b := g.Admin(http.MethodPost, "/apikeys", body)
	if resp.StatusCode != http.StatusCreated {
		g.t.Fatalf("POST /apikeys: %d %s", resp.StatusCode, b)
	}
	var created struct {
		Secret string `json:"secret"`
		APIKey APIKey `json:"api_key"`
	}
	if err := json.Unmarshal(b, &created); err != nil {
		g.t.Fatal(err)
	}
	return created.Secret, created.APIKey
}

// countAdmitted sends n requests and returns how many got 200; any status
// but 200 and 429 fails the test.
func countAdmitted(t *testing.T, g *Gateway, path string, h http.Header, n int) int {
	t.Helper()
	ok := 0
	for range n {
		resp, body := g.Request(http.MethodGet, path, h)
		switch resp.StatusCode {
		case 200:
			ok++
		case 429:
		default:
			t.Fatalf("GET %s = %d %s", path, resp.StatusCode, body)
		}
	}
	return ok
}

var rateLimitField = regexp.MustCompile(`^"1m";r=(\d+);t=(\d+)$`)

func TestGatewayRateLimitAnswers429WithHeadersAndKeepsUsageWhenLimitsChange(t *testing.T) {
	t.Parallel()
	up := NewUpstream(t)
	g := startLimited(t, up, "", "", "allow")
	secret, k := g.createLimitedKey("limited", "full", []string{"3/1m", "1000/1d"}, nil)
	if want := []string{"3/1m", "1000/1d"}; strings.Join(k.RateLimits, ",") != strings.Join(want, ",") {
		t.Fatalf("rate_limits = %q, want %q", k.RateLimits, want)
	}
	for i := range 3 {
		resp, body := g.Request(http.MethodGet, "/data", WithKey(secret))
		if resp.StatusCode != 200 {
			t.Fatalf("request %d = %d %s", i, resp.StatusCode, body)
		}
		m := rateLimitField.FindStringSubmatch(resp.Header.Get("RateLimit"))
		if m == nil || m[1] != strconv.Itoa(2-i) {
			t.Fatalf("request %d: RateLimit %q, want \"1m\";r=%d;t=...", i, resp.Header.Get("RateLimit"), 2-i)
		}
		if resp.Header.Get("RateLimit-Policy") != "" {
			t.Errorf("admitted answer carries RateLimit-Policy")
		}
	}
	resp, body := g.Request(http.MethodGet, "/data", WithKey(secret))
	if resp.StatusCode != 429 || !strings.Contains(string(body), `"code":"rate_limited"`) {
		t.Fatalf("fourth request = %d %s, want 429 rate_limited", resp.StatusCode, body)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > 63 {
		t.Errorf("Retry-After = %q, want whole seconds from 1 to 63 (a window and a bucket, rounded up)", resp.Header.Get("Retry-After"))
	}
	if got, want := resp.Header.Get("RateLimit-Policy"), `"1m";q=3;w=60, "1d";q=1000;w=86400`; got != want {
		t.Errorf("RateLimit-Policy = %q, want %q", got, want)
	}
	if m := rateLimitField.FindStringSubmatch(resp.Header.Get("RateLimit")); m == nil || m[1] != "0" {
		t.Errorf("RateLimit = %q, want the exhausted minute", resp.Header.Get("RateLimit"))
	}
	if up.Count() != 3 {
		t.Errorf("upstream got %d requests, want 3: a 429 was proxied", up.Count())
	}

	// Raising the limit keeps the 3 used: 2 more, not 5.
	resp, body = g.Admin(http.MethodPatch, "/apikeys/"+k.ID, map[string]any{"rate_limits": []string{"5/1m"}})
	if resp.StatusCode != 200 {
		t.Fatalf("PATCH = %d %s", resp.StatusCode, body)
	}
	if got := countAdmitted(t, g, "/data", WithKey(secret), 6); got != 2 {
		t.Errorf("after raising 3/1m to 5/1m: %d admitted, want 2 (the 3 used still count)", got)
	}
	// A bad limit is refused, naming the field, and changes nothing.
	resp, body = g.Admin(http.MethodPatch, "/apikeys/"+k.ID, map[string]any{"rate_limits": []string{"5/1w"}})
	if resp.StatusCode != 400 || !strings.Contains(string(body), `rate_limits[0]: \"5/1w\": the window's unit must be s, m, h or d`) {
		t.Errorf("PATCH bad limit = %d %s", resp.StatusCode, body)
	}
	// Clearing them: the full scope has no default, so no limit and no
	// RateLimit field.
	g.Admin(http.MethodPatch, "/apikeys/"+k.ID, map[string]any{"rate_limits": []string{}})
	resp, _ = g.Request(http.MethodGet, "/data", WithKey(secret))
	if resp.StatusCode != 200 || resp.Header.Get("RateLimit") != "" {
		t.Errorf("after clearing: %d with RateLimit %q, want 200 without", resp.StatusCode, resp.Header.Get("RateLimit"))
	}
}

func TestGatewayRateLimitRefusedRequestsDoNotCountAndScopeDefaultsApply(t *testing.T) {
	t.Parallel()
	up := NewUpstream(t)
	g := startLimited(t, up, "", "", "allow")
	// A widget key without limits of its own: the widget default, 2/1m.
	secret, _ := g.createLimitedKey("widget", "widget", nil, []string{"https://shop.example"})
	bad := WithKey(secret)
	bad.Set("Origin", "https://evil.example")
	for range 10 {
		if resp, _ := g.Request(http.MethodGet, "/api/widget/x", bad); resp.StatusCode != 403 {
			t.Fatalf("other origin = %d, want 403", resp.StatusCode)
		}
	}
	good := WithKey(secret)
	good.Set("Origin", "https://shop.example")
	if got := countAdmitted(t, g, "/api/widget/x", good, 5); got != 2 {
		t.Errorf("after 10 refused by origin: %d of 5 admitted, want 2 (the widget default 2/1m; refused requests never count)", got)
	}
	// Preflights pass without a key and count nothing.
	pre := http.Header{"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"}}
	if resp, _ := g.Request(http.MethodOptions, "/api/widget/x", pre); resp.StatusCode != 200 {
		t.Errorf("preflight = %d, want passed on", resp.StatusCode)
	}
}

func TestGatewayRateLimitHeadersOff(t *testing.T) {
	t.Parallel()
	g := startLimited(t, NewUpstream(t), "", "", "allow")
	secret, _ := g.createLimitedKey("quiet", "full", []string{"1/1h"}, nil)
	resp, _ := g.Request(http.MethodGet, "/quiet/x", WithKey(secret))
	if resp.StatusCode != 200 || resp.Header.Get("RateLimit") != "" {
		t.Fatalf("admitted = %d with RateLimit %q; want none", resp.StatusCode, resp.Header.Get("RateLimit"))
	}
	resp, _ = g.Request(http.MethodGet, "/quiet/x", WithKey(secret))
	if resp.StatusCode != 429 || resp.Header.Get("RateLimit") == "" || resp.Header.Get("RateLimit-Policy") == "" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("429 = %d %v; it always carries both fields and Retry-After", resp.StatusCode, resp.Header)
	}
}

func TestGatewayRateLimitCLI(t *testing.T) {
	t.Parallel()
	g := startLimited(t, NewUpstream(t), "", "", "allow")
	out, errOut, code := g.Run("apikey", "create", "--address", g.Ports.Admin, "--name", "cli", "--scope", "full", "--expires", "1d",
		"--rate-limit", "10/60s", "--rate-limit", "1000/1d", "--json")
	if code != 0 {
		t.Fatalf("create: %d %s", code, errOut)
	}
	var created struct {
		APIKey APIKey `json:"api_key"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || strings.Join(created.APIKey.RateLimits, " ") != "10/1m 1000/1d" {
		t.Fatalf("create --rate-limit: %v %s", err, out)
	}
	id := created.APIKey.ID
	if _, errOut, code := g.Run("apikey", "update", id, "--address", g.Ports.Admin, "--rate-limit", "ten/1m"); code == 0 || !strings.Contains(errOut, `--rate-limit: "ten/1m" must be N/WINDOW`) {
		t.Errorf("update with a bad limit: %d %s", code, errOut)
	}
	if _, errOut, code := g.Run("apikey", "update", id, "--address", g.Ports.Admin, "--rate-limit", "5/1s", "--no-rate-limits"); code == 0 || !strings.Contains(errOut, "--rate-limit and --no-rate-limits: give one") {
		t.Errorf("update with both: %d %s", code, errOut)
	}
	out, errOut, code = g.Run("apikey", "update", id, "--address", g.Ports.Admin, "--rate-limit", "5/1s")
	if code != 0 || !strings.Contains(out, "Limits:     5/1s") {
		t.Errorf("update --rate-limit: %d %s %s", code, out, errOut)
	}
	out, _, _ = g.Run("apikey", "update", id, "--address", g.Ports.Admin, "--no-rate-limits")
	if !strings.Contains(out, "Limits:     the scope's default") {
		t.Errorf("update --no-rate-limits:\n%s", out)
	}
}

func TestCaddyfileBadRateLimitIsAnErrorWithFileAndLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	text := "{\n\tapikeys {\n\t\trate_limit widget 10/1s\n\t\trate_limit routine 0/1m\n\t}\n}\n:8080 {\n\tapikey\n}\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(keygateBin, "adapt", "--config", path, "--adapter", "caddyfile").CombinedOutput()
	// The log line is JSON: the quotes around the limit are escaped.
	if err == nil || !strings.Contains(string(out), `rate_limit routine: \"0/1m\": N must be from 1 to 1000000000, at `+path+`:4`) {
		t.Fatalf("adapt = %v:\n%s", err, out)
	}
}

// redisForTest returns the address of the shared test Redis
// (KEYGATE_TEST_REDIS, default 127.0.0.1:6379) after flushing database
// db. Without Redis it fails in CI and skips elsewhere.
func redisForTest(t *testing.T, db int) string {
	t.Helper()
	addr := os.Getenv("KEYGATE_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	defer c.Close()
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Redis at %s: %v (.ci/run starts it)", addr, err)
		}
		t.Skipf("no Redis at %s (%v): start redis-server or set KEYGATE_TEST_REDIS=host:port", addr, err)
	}
	return addr
}

// TestGatewayTwoInstancesShareACountOverRedis runs two gateways on one
// PostgreSQL key store and one Redis, and logs the accuracy figures that
// docs/DESIGN.md gives.
func TestGatewayTwoInstancesShareACountOverRedis(t *testing.T) {
	addr := redisForTest(t, 13)
	dsn := pgtest.NewDatabase(t)
	up := NewUpstream(t)
	store := fmt.Sprintf("rate_limit_store redis redis://%s/13", addr)
	env := []string{"KEYGATE_DSN=" + dsn}
	a := startLimited(t, up, "store postgres {env.KEYGATE_DSN}", store, "allow", env...)
	b := startLimited(t, up, "store postgres {env.KEYGATE_DSN}", store, "allow", env...)

	// Near the limit every request is judged by Redis: exact.
	secret, _ := a.createLimitedKey("shared", "full", []string{"20/1m"}, nil)
	admitted := 0
	for i := range 60 {
		g := a
		if i%2 == 1 {
			g = b
		}
		admitted += countAdmitted(t, g, "/x", WithKey(secret), 1)
	}
	if admitted != 20 {
		t.Errorf("alternating over two instances: %d admitted under 20/1m, want 20", admitted)
	}

	// Under concurrent load on both, far from the limit first: measure
	// what is admitted over N.
	for _, n := range []int{200, 2000} {
		secret, _ := a.createLimitedKey(fmt.Sprintf("load %d", n), "full", []string{fmt.Sprintf("%d/1h", n)}, nil)
		var ok, refused atomic.Int64
		var wg sync.WaitGroup
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
		for w := range 8 {
			g := a
			if w%2 == 1 {
				g = b
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n * 2 / 8 {
					req, _ := http.NewRequest(http.MethodGet, g.SiteURL+"/x", nil)
					req.Header.Set("Authorization", "ApiKey "+secret)
					resp, err := client.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					switch resp.StatusCode {
					case 200:
						ok.Add(1)
					case 429:
						refused.Add(1)
					default:
						t.Errorf("status %d", resp.StatusCode)
					}
				}
			}()
		}
		wg.Wait()
		over := float64(ok.Load()-int64(n)) / float64(n) * 100
		t.Logf("two instances, 8 clients, %d requests under %d/1h: %d admitted, %.2f%% over the limit", 2*n, n, ok.Load(), over)
		if ok.Load() < int64(n) || over > 12.5 {
			t.Errorf("admitted %d under %d/1h: want at least %d and at most 12.5%% over", ok.Load(), n, n)
		}
	}
}

// startOwnRedis starts a redis-server on port, of this test's own, so it
// can be stopped; it is stopped when the test ends.
func startOwnRedis(t *testing.T, port int) func() {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found (.ci/run installs it)")
		}
		t.Skip("redis-server not found: apt-get install redis-server")
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer c.Close()
	for range 200 {
		if c.Ping(context.Background()).Err() == nil {
			return stop
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("own redis-server does not answer")
	return nil
}

func TestGatewayRedisDownAllowOrDenyAndRecovery(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil && os.Getenv("CI") != "true" {
		t.Skip("redis-server not found: apt-get install redis-server")
	}
	port := freePort(t)
	up := NewUpstream(t)
	store := fmt.Sprintf("rate_limit_store redis redis://127.0.0.1:%d/0", port)
	// Both gateways start while Redis is down.
	deny := startLimited(t, up, "", store, "deny")
	allow := startLimited(t, up, "", store, "allow")
	dsecret, _ := deny.createLimitedKey("deny", "full", []string{"1000/1m"}, nil)
	plain, _ := deny.createLimitedKey("no limits", "full", nil, nil)
	asecret, _ := allow.createLimitedKey("allow", "full", []string{"1000/1m"}, nil)

	resp, body := deny.Request(http.MethodGet, "/x", WithKey(dsecret))
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(body), `"code":"rate_limit_unavailable"`) {
		t.Fatalf("deny while Redis is down = %d %q %s, want 503 rate_limit_unavailable, Retry-After 1", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp, _ := deny.Request(http.MethodGet, "/x", WithKey(plain)); resp.StatusCode != 200 {
		t.Errorf("key without limits while Redis is down = %d, want 200", resp.StatusCode)
	}
	if resp, _ := allow.Request(http.MethodGet, "/x", WithKey(asecret)); resp.StatusCode != 200 {
		t.Errorf("allow while Redis is down = %d, want 200", resp.StatusCode)
	}
	start := time.Now()
	for range 50 {
		deny.Request(http.MethodGet, "/x", WithKey(dsecret))
	}
	// Logged at most once a second, not once a request.
	limit := int(time.Since(start)/time.Second) + 2
	if n := strings.Count(deny.Output(), "rate-limit store unavailable"); n < 1 || n > limit {
		t.Errorf("%d log lines for 51 refusals in %v, want 1 to %d (one a second)", n, time.Since(start), limit)
	}
	_, metrics := deny.Admin(http.MethodGet, "/metrics", nil)
	if !regexp.MustCompile(`(?m)^caddy_apikey_rate_limit_store_errors_total [1-9]`).Match(metrics) {
		t.Errorf("metrics hold no rate-limit store error:\n%s", grepLines(string(metrics), "rate_limit"))
	}

	// Redis starts, stops under load, starts again: the gateway answers
	// every request (200, or 503 while down) and recovers by itself.
	stop := startOwnRedis(t, port)
	waitStatus(t, deny, dsecret, 200)
	var codes sync.Map
	var done atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				req, _ := http.NewRequest(http.MethodGet, deny.SiteURL+"/x", nil)
				req.Header.Set("Authorization", "ApiKey "+dsecret)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				n, _ := codes.LoadOrStore(resp.StatusCode, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	time.Sleep(time.Second)
	stop = startOwnRedis(t, port)
	waitStatus(t, deny, dsecret, 200)
	time.Sleep(300 * time.Millisecond)
	done.Store(true)
	wg.Wait()
	stop()
	var summary []string
	codes.Range(func(k, v any) bool {
		summary = append(summary, fmt.Sprintf("%v: %d", k, v.(*atomic.Int64).Load()))
		if k != 200 && k != 503 {
			t.Errorf("status %v under load while Redis stopped and started", k)
		}
		return true
	})
	t.Logf("answers while Redis was stopped and restarted under load: %s", strings.Join(summary, ", "))
}

// waitStatus waits until a request with secret gets want.
func waitStatus(t *testing.T, g *Gateway, secret string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ := g.Request(http.MethodGet, "/x", WithKey(secret))
		if resp.StatusCode == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d 10s later, want %d", resp.StatusCode, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
