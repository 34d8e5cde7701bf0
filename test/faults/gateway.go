package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	_ "modernc.org/sqlite" // the driver of internal/keystore/sqlite

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/test/internal/loadkit"
)

// caddyfile is the template of every gateway: one site, every request
// authenticated by apikey and proxied to the upstream. No access log.
const caddyfile = `{
	admin 127.0.0.1:{{.Admin}}
	persist_config off
	auto_https off
{{- if .GracePeriod}}
	grace_period {{.GracePeriod}}
{{- end}}
{{- if .ReadHeader}}
	servers {
		timeouts {
			read_header {{.ReadHeader}}
		}
	}
{{- end}}
	apikeys {
		{{.Store}}
		last_used_interval {{.LastUsedInterval}}
{{- if .CacheTTL}}
		cache_ttl {{.CacheTTL}}
{{- end}}
{{- if .SyncInterval}}
		sync_interval {{.SyncInterval}}
{{- end}}
	}
}

http://127.0.0.1:{{.Port}} {
	header X-Generation {{.Generation}}
	apikey
	reverse_proxy {{.Upstream}} {
		transport http {
			keepalive_idle_conns_per_host 128
		}
	}
}
`

var caddyfileTmpl = template.Must(template.New("Caddyfile").Parse(caddyfile))

// gatewayConfig is what one gateway runs.
type gatewayConfig struct {
	Store            string // the apikeys store line
	LastUsedInterval string // default 10s
	GracePeriod      string // Caddy's grace_period; empty: Caddy's default
	ReadHeader       string // servers timeouts read_header; empty: Caddy's default
	CacheTTL         string
	SyncInterval     string
	Generation       int // changes the config without changing its meaning

	Admin, Port int
	Upstream    string
}

// gateway is a running keygate process.
type gateway struct {
	name  string
	proc  *loadkit.Proc
	cfg   gatewayConfig
	url   string // "http://127.0.0.1:<port>/"
	admin string // "http://127.0.0.1:<port>"
	home  string
	e     *env
}

// startGateway runs keygate with cfg, in a home directory of its own, and
// waits until its site answers.
func (e *env) startGateway(ctx context.Context, name string, cfg gatewayConfig) (*gateway, error) {
	var err error
	if cfg.Port == 0 {
		if cfg.Port, err = loadkit.FreePort(); err != nil {
			return nil, err
		}
	}
	if cfg.Admin == 0 {
		if cfg.Admin, err = loadkit.FreePort(); err != nil {
			return nil, err
		}
	}
	if cfg.LastUsedInterval == "" {
		cfg.LastUsedInterval = "10s"
	}
	cfg.Upstream = e.up.addr
	g := &gateway{
		name: name, cfg: cfg, e: e,
		url:   "http://127.0.0.1:" + strconv.Itoa(cfg.Port) + "/",
		admin: "http://127.0.0.1:" + strconv.Itoa(cfg.Admin),
		home:  filepath.Join(e.work, "home-"+name),
	}
	if err := os.MkdirAll(g.home, 0o700); err != nil {
		return nil, err
	}
	path, err := g.writeConfig()
	if err != nil {
		return nil, err
	}
	g.proc, err = loadkit.StartProc(name, e.work, e.bin, []string{"run", "--config", path, "--adapter", "caddyfile"},
		[]string{"HOME=" + g.home, "XDG_DATA_HOME=" + filepath.Join(g.home, "data"), "XDG_CONFIG_HOME=" + filepath.Join(g.home, "config")})
	if err != nil {
		return nil, err
	}
	if err := loadkit.WaitHTTP(ctx, g.proc, g.url, 60*time.Second); err != nil {
		g.proc.Stop(5 * time.Second)
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return g, nil
}

// writeConfig writes the gateway's Caddyfile and returns its path.
func (g *gateway) writeConfig() (string, error) {
	var buf bytes.Buffer
	if err := caddyfileTmpl.Execute(&buf, g.cfg); err != nil {
		return "", err
	}
	path := filepath.Join(g.e.work, g.name+".Caddyfile")
	return path, os.WriteFile(path, buf.Bytes(), 0o600)
}

// reload loads cfg through the admin endpoint's POST /load.
func (g *gateway) reload(ctx context.Context, cfg gatewayConfig) error {
	cfg.Admin, cfg.Port, cfg.Upstream = g.cfg.Admin, g.cfg.Port, g.cfg.Upstream
	g.cfg = cfg
	var buf bytes.Buffer
	if err := caddyfileTmpl.Execute(&buf, cfg); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.admin+"/load", &buf)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	// A connection of its own, as `caddy reload` does: a load may restart
	// the admin server, closing kept-alive connections, and a POST sent on
	// one that is being closed fails without being retried.
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST /load: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// adminAnswer is one answer of the admin endpoint.
type adminAnswer struct {
	status     int
	retryAfter string
	body       string
	err        error
}

func (a adminAnswer) String() string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	s := strconv.Itoa(a.status)
	if a.retryAfter != "" {
		s += " Retry-After " + a.retryAfter
	}
	return s
}

// adminCall sends a request to the admin endpoint, with a JSON body if
// body is not nil, within limit.
func (g *gateway) adminCall(ctx context.Context, method, path string, body any, limit time.Duration) adminAnswer {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.admin+path, r)
	if err != nil {
		return adminAnswer{err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return adminAnswer{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return adminAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: strings.TrimSpace(string(b))}
}

// createKey creates a full, never-expiring key and returns its secret and
// ID.
func (g *gateway) createKey(ctx context.Context, name string) (secret, id string, err error) {
	a := g.adminCall(ctx, http.MethodPost, "/apikeys", map[string]string{"name": name, "scope": "full", "expires_in": "never"}, 30*time.Second)
	if a.err != nil {
		return "", "", a.err
	}
	if a.status != http.StatusCreated {
		return "", "", fmt.Errorf("POST /apikeys: %d %s", a.status, a.body)
	}
	var created struct {
		Secret string `json:"secret"`
		APIKey struct {
			ID string `json:"id"`
		} `json:"api_key"`
	}
	if err := json.Unmarshal([]byte(a.body), &created); err != nil {
		return "", "", err
	}
	return created.Secret, created.APIKey.ID, nil
}

// keys creates n keys and writes their secrets to a file for wrk.
func (g *gateway) keys(ctx context.Context, n int, prefix string) (secrets, ids []string, file string, err error) {
	for i := range n {
		s, id, err := g.createKey(ctx, fmt.Sprintf("%s %d", prefix, i))
		if err != nil {
			return nil, nil, "", err
		}
		secrets, ids = append(secrets, s), append(ids, id)
	}
	file = filepath.Join(g.e.work, g.name+"-"+strings.ReplaceAll(prefix, " ", "-")+".keys")
	err = os.WriteFile(file, []byte(strings.Join(secrets, "\n")+"\n"), 0o600)
	return secrets, ids, file, err
}

// probe sends GET / with key (none if empty) and returns the status and
// Retry-After, or an error.
func (g *gateway) probe(ctx context.Context, key string, limit time.Duration) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url, nil)
	if err != nil {
		return 0, "", err
	}
	if key != "" {
		req.Header.Set("Authorization", "ApiKey "+key)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}

// probeClient keeps its connections, as a real client would.
var probeClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

// metrics returns the admin endpoint's metrics without labels, and those
// with labels under their full series name.
func (g *gateway) metrics(ctx context.Context) (map[string]float64, error) {
	a := g.adminCall(ctx, http.MethodGet, "/metrics", nil, 10*time.Second)
	if a.err != nil {
		return nil, a.err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(a.body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m, nil
}

// wrk runs a wrk load of the gateway with the keys in file.
func (g *gateway) startWrk(name, file string, keys int, d time.Duration) (*loadkit.Proc, error) {
	return loadkit.StartWrk(g.e.work, loadkit.WrkLoad{
		Name: name, URL: g.url, KeysFile: file, Keys: keys,
		Threads: 1, Connections: g.e.opt.connections, Duration: d,
	})
}

// storedLastUsed reads the last-used times of ids from the SQLite file at
// path, read-only, as an operator would after the fact.
func storedLastUsed(path string, ids []string) (map[string]time.Time, error) {
	u := url.URL{Scheme: "file", Path: path, RawQuery: "mode=ro&_pragma=busy_timeout(5000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	got := map[string]time.Time{}
	for _, id := range ids {
		var us sql.NullInt64
		if err := db.QueryRow("SELECT (SELECT at FROM last_used WHERE key_id = keys.id) FROM keys WHERE id = ?", id).Scan(&us); err != nil {
			return nil, fmt.Errorf("reading key %s: %w", id, err)
		}
		if us.Valid {
			got[id] = time.UnixMicro(us.Int64)
		}
	}
	return got, nil
}

// storedUsage reads, per key of ids, the admitted requests (result ok)
// of the minute rows in the SQLite file at path, read-only.
func storedUsage(path string, ids []string) (map[string]int64, error) {
	u := url.URL{Scheme: "file", Path: path, RawQuery: "mode=ro&_pragma=busy_timeout(5000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	got := map[string]int64{}
	for _, id := range ids {
		var n sql.NullInt64
		// Minute rows: the recorder writes only those (kept 48 hours); the
		// hour and day rows are rolled up from them later.
		if err := db.QueryRow("SELECT sum(n) FROM usage WHERE key_id = ? AND step = 60 AND result = 'ok'", id).Scan(&n); err != nil {
			return nil, fmt.Errorf("reading the usage of key %s: %w", id, err)
		}
		got[id] = n.Int64
	}
	return got, nil
}

// randomKey returns a well-formed key that no store holds.
func randomKey() string {
	f, err := apikey.NewFormat(apikey.DefaultPrefix)
	if err != nil {
		panic(err)
	}
	s, err := f.Generate()
	if err != nil {
		panic(err)
	}
	return s
}
