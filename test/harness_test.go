// Package test holds keygate's black-box tests: they build the real binary
// once (TestMain), run it on free ports with a Caddyfile, each test with its
// own home, data and config directories, and talk to it over HTTP like a
// client, an operator (admin API, CLI) and an upstream would.
//
// The harness in this file is shared by every test file of the package:
//
//   - StartGateway runs keygate with a Caddyfile template (see Options and
//     Ports); the gateway is stopped with SIGINT when the test ends.
//   - NewUpstream is an upstream API in the test process that records what
//     keygate proxied to it.
//   - Gateway.Admin, Gateway.CreateKey, Gateway.Reload talk to the admin
//     endpoint; Gateway.Run runs the keygate CLI against it.
//   - Gateway.Output is everything the process wrote, for grepping.
//
// Set KEYGATE_BIN to a prebuilt keygate binary to skip the build.
package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	// The tests run the binary, not this package; importing it makes the
	// test binary, and so go test's result cache, change whenever keygate's
	// code does, so a cached pass never hides a broken build.
	_ "github.com/docana/keygate/caddymodule"
)

// keygateBin is the binary under test, set by TestMain.
var keygateBin string

// waitLimit bounds every wait for the gateway (start, stop, reload). It is
// not an assertion about speed: a gateway that needs longer is broken or the
// machine is overloaded, and the test fails with the process output.
const waitLimit = 60 * time.Second

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if bin := os.Getenv("KEYGATE_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			fmt.Fprintln(os.Stderr, "KEYGATE_BIN:", err)
			return 2
		}
		keygateBin = abs
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "keygate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	keygateBin = filepath.Join(dir, "keygate")
	// Built without -race even when the tests run with it: the binary is
	// exercised, not instrumented, and a race build doubles CI time.
	build := exec.Command("go", "build", "-o", keygateBin, "github.com/docana/keygate/cmd/keygate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building keygate:", err)
		return 2
	}
	return m.Run()
}

// Ports are the addresses a gateway's Caddyfile template is executed with.
type Ports struct {
	// Admin is the admin endpoint's host:port ("127.0.0.1:40123").
	Admin string
	// Site is the port of the gateway's HTTP site.
	Site int
	// Upstream is the host:port of the upstream: Options.Upstream's
	// address if set, else a free port.
	Upstream string
	// Dir is the gateway's home directory (HOME, XDG_DATA_HOME=Dir/data,
	// XDG_CONFIG_HOME=Dir/config); the default sqlite store lands in
	// Dir/data/caddy/keygate/keys.db.
	Dir string
	// Extra holds Options.Extra, for templates that need more.
	Extra map[string]any
}

// Options configure StartGateway.
type Options struct {
	// Caddyfile is a text/template executed with Ports. Default:
	// DefaultCaddyfile.
	Caddyfile string
	// Upstream, if set, is the upstream the gateway proxies to.
	Upstream *Upstream
	// Extra is passed to the template as .Extra.
	Extra map[string]any
	// Env is added to the gateway's environment.
	Env []string
}

// DefaultCaddyfile is the routes of the design's example: widget and
// routine routes and a full-only catch-all, all proxied to the upstream,
// with the access log on.
const DefaultCaddyfile = `{
	admin {{.Admin}}
	persist_config off
}

http://127.0.0.1:{{.Site}} {
	log
	handle /api/widget/* {
		apikey widget
		reverse_proxy {{.Upstream}}
	}
	handle /api/routines/* {
		apikey routine
		reverse_proxy {{.Upstream}}
	}
	handle {
		apikey
		reverse_proxy {{.Upstream}}
	}
}
`

// Gateway is a running keygate process.
type Gateway struct {
	t     testing.TB
	Ports Ports
	// SiteURL is "http://127.0.0.1:<site port>".
	SiteURL string
	// AdminURL is "http://<admin address>".
	AdminURL string
	// ConfigPath is the rendered Caddyfile.
	ConfigPath string

	env  []string
	out  *syncBuffer
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
	err  error         // cmd.Wait's result, set before done closes
}

// StartGateway renders the Caddyfile, starts keygate with it and waits
// until its admin endpoint and site answer. The gateway is stopped when
// the test ends; its output is logged if the test failed.
func StartGateway(t testing.TB, opts Options) *Gateway {
	t.Helper()
	dir := t.TempDir()
	ports := Ports{Admin: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Site: freePort(t), Dir: dir, Extra: opts.Extra}
	if opts.Upstream != nil {
		ports.Upstream = opts.Upstream.Addr()
	} else {
		ports.Upstream = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	g := &Gateway{
		t:          t,
		Ports:      ports,
		SiteURL:    fmt.Sprintf("http://127.0.0.1:%d", ports.Site),
		AdminURL:   "http://" + ports.Admin,
		ConfigPath: filepath.Join(dir, "Caddyfile"),
		out:        new(syncBuffer),
	}
	text := opts.Caddyfile
	if text == "" {
		text = DefaultCaddyfile
	}
	if err := os.WriteFile(g.ConfigPath, []byte(g.Render(text)), 0o600); err != nil {
		t.Fatal(err)
	}
	g.env = append(os.Environ(),
		"HOME="+dir,
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	g.env = append(g.env, opts.Env...)
	t.Cleanup(func() {
		g.Stop()
		if t.Failed() {
			t.Logf("keygate output:\n%s", g.Output())
		}
	})
	g.Start()
	return g
}

// Render executes a Caddyfile template with the gateway's ports.
func (g *Gateway) Render(text string) string {
	g.t.Helper()
	tmpl, err := template.New("Caddyfile").Option("missingkey=error").Parse(text)
	if err != nil {
		g.t.Fatalf("parsing Caddyfile template: %v", err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, g.Ports); err != nil {
		g.t.Fatalf("executing Caddyfile template: %v", err)
	}
	return b.String()
}

// Start starts the process (again, after Stop) with the same ports,
// directories and config file, and waits until it is ready.
func (g *Gateway) Start() {
	g.t.Helper()
	g.mu.Lock()
	if g.cmd != nil {
		g.mu.Unlock()
		g.t.Fatal("gateway already running")
	}
	fmt.Fprintf(g.out, "=== harness: starting keygate\n")
	cmd := exec.Command(keygateBin, "run", "--config", g.ConfigPath, "--adapter", "caddyfile")
	cmd.Dir = g.Ports.Dir
	cmd.Env = g.env
	cmd.Stdout, cmd.Stderr = g.out, g.out
	if err := cmd.Start(); err != nil {
		g.mu.Unlock()
		g.t.Fatalf("starting keygate: %v", err)
	}
	done := make(chan struct{})
	g.cmd, g.done = cmd, done
	go func() {
		err := cmd.Wait()
		g.mu.Lock()
		g.err = err
		g.mu.Unlock()
		close(done)
	}()
	g.mu.Unlock()
	g.waitReady()
}

// waitReady polls the admin endpoint and the site port until both answer,
// failing the test if the process exits first.
func (g *Gateway) waitReady() {
	g.t.Helper()
	deadline := time.Now().Add(waitLimit)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-g.done:
			g.t.Fatalf("keygate exited before it was ready: %v\n%s", g.exitErr(), g.Output())
		default:
		}
		if resp, err := client.Get(g.AdminURL + "/config/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", g.Ports.Site), time.Second); err == nil {
					c.Close()
					return
				}
			}
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("keygate not ready after %v\n%s", waitLimit, g.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (g *Gateway) exitErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Stop sends SIGINT, as a terminal's Ctrl-C or a service manager would,
// and waits for the process to exit. Stopping a stopped gateway does
// nothing.
func (g *Gateway) Stop() {
	g.t.Helper()
	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.cmd = nil
	g.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(waitLimit):
		_ = cmd.Process.Kill()
		<-done
		g.t.Errorf("keygate did not exit within %v of SIGINT", waitLimit)
	}
	fmt.Fprintf(g.out, "=== harness: keygate exited: %v\n", g.exitErr())
}

// Restart stops the gateway and starts it again on the same ports and
// directories.
func (g *Gateway) Restart() {
	g.t.Helper()
	g.Stop()
	g.Start()
}

// Output returns everything the process wrote to stdout and stderr so far,
// across restarts.
func (g *Gateway) Output() string { return g.out.String() }

// WaitOutput waits until the process has written s (log lines are written
// after the response is sent), failing the test if it never does.
func (g *Gateway) WaitOutput(s string) {
	g.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !strings.Contains(g.Output(), s) {
		if time.Now().After(deadline) {
			g.t.Fatalf("keygate did not write %q within %v", s, waitLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Do sends req and returns the response with its body read.
func (g *Gateway) Do(req *http.Request) (*http.Response, []byte) {
	g.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, body
}

// Request sends a request to the site; header is copied as is, so a key
// can hold several values (two Authorization headers).
func (g *Gateway) Request(method, path string, header http.Header) (*http.Response, []byte) {
	g.t.Helper()
	req, err := http.NewRequest(method, g.SiteURL+path, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = append([]string(nil), vs...)
	}
	return g.Do(req)
}

// WithKey returns the header "Authorization: ApiKey <secret>".
func WithKey(secret string) http.Header {
	return http.Header{"Authorization": {"ApiKey " + secret}}
}

// Admin sends a request to the admin endpoint. body, unless nil, is sent
// as JSON (a []byte or string as is).
func (g *Gateway) Admin(method, path string, body any) (*http.Response, []byte) {
	g.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			g.t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, g.AdminURL+path, r)
	if err != nil {
		g.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return g.Do(req)
}

// APIKey is a key as the admin API shows it.
type APIKey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Scope      string     `json:"scope"`
	Status     string     `json:"status"`
	Hint       string     `json:"hint"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	ReplacedBy *string    `json:"replaced_by"`

	Owner          *string           `json:"owner"`
	Metadata       map[string]string `json:"metadata"`
	CreatedBy      Actor             `json:"created_by"`
	AllowedOrigins []string          `json:"allowed_origins"`
	AllowedIPs     []string          `json:"allowed_ips"`
	RateLimits     []string          `json:"rate_limits"`

	// Propagation is in the answer to a change: the instances that
	// applied it, and those that had not within confirm_timeout.
	Propagation *struct {
		Confirmed []string `json:"confirmed"`
		Pending   []string `json:"pending"`
	} `json:"propagation"`
}

// Actor is who created a key, as the admin API shows it.
type Actor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// CreateKey creates a key through the admin API and returns its secret
// and record.
func (g *Gateway) CreateKey(name, scope, expiresIn string) (string, APIKey) {
	g.t.Helper()
	resp, body := g.Admin(http.MethodPost, "/apikeys", map[string]string{"name": name, "scope": scope, "expires_in": expiresIn})
	if resp.StatusCode != http.StatusCreated {
		g.t.Fatalf("POST /apikeys: status %d, want 201: %s", resp.StatusCode, body)
	}
	var created struct {
		Secret string `json:"secret"`
		APIKey APIKey `json:"api_key"`
	}
	if err := json.Unmarshal(body, &created); err != nil {
		g.t.Fatalf("POST /apikeys: %v: %s", err, body)
	}
	if created.Secret == "" || created.APIKey.ID == "" {
		g.t.Fatalf("POST /apikeys: no secret or ID in %s", body)
	}
	return created.Secret, created.APIKey
}

// GetKey returns a key through the admin API.
func (g *Gateway) GetKey(id string) APIKey {
	g.t.Helper()
	resp, body := g.Admin(http.MethodGet, "/apikeys/"+id, nil)
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("GET /apikeys/%s: status %d, want 200: %s", id, resp.StatusCode, body)
	}
	var k APIKey
	if err := json.Unmarshal(body, &k); err != nil {
		g.t.Fatalf("GET /apikeys/%s: %v: %s", id, err, body)
	}
	return k
}

// Reload loads a new Caddyfile (a template, rendered with the gateway's
// ports) through the admin endpoint's POST /load, as `caddy reload` does.
func (g *Gateway) Reload(text string) {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.AdminURL+"/load", strings.NewReader(g.Render(text)))
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, body := g.Do(req)
	if resp.StatusCode != http.StatusOK {
		g.t.Fatalf("POST /load: status %d: %s", resp.StatusCode, body)
	}
}

// Run runs the keygate binary with args (for example "apikey", "list",
// "--address", g.Ports.Admin) in the gateway's directory and environment,
// with stdin empty, and returns its output and exit code.
func (g *Gateway) Run(args ...string) (stdout, stderr string, code int) {
	g.t.Helper()
	return g.RunInput("", args...)
}

// RunInput is Run with stdin.
func (g *Gateway) RunInput(stdin string, args ...string) (stdout, stderr string, code int) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, keygateBin, args...)
	cmd.Dir = g.Ports.Dir
	cmd.Env = g.env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		g.t.Fatalf("running keygate %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// Upstream is an HTTP API in the test process standing in for the service
// behind the gateway. It answers 200 {"upstream":"ok"} and records every
// request it receives.
type Upstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []*http.Request // with Body drained and nil
}

// NewUpstream starts an upstream, closed when the test ends.
func NewUpstream(t testing.TB) *Upstream {
	u := new(Upstream)
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		r2 := r.Clone(context.Background())
		r2.Body = nil
		u.mu.Lock()
		u.reqs = append(u.reqs, r2)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"upstream":"ok"}`)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// Addr is the upstream's host:port.
func (u *Upstream) Addr() string { return u.srv.Listener.Addr().String() }

// Requests returns the requests received so far.
func (u *Upstream) Requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*http.Request(nil), u.reqs...)
}

// Count returns how many requests were received.
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// Last returns the latest request received, failing the test if none was.
func (u *Upstream) Last(t testing.TB) *http.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("the upstream received no request")
	}
	return u.reqs[len(u.reqs)-1]
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// The kernel may hand out a port it just handed out, once it is
		// closed: two calls for one gateway then gave the admin endpoint
		// and the site the same port (Caddy binds both with SO_REUSEPORT,
		// so it started, and site requests reached the admin endpoint).
		if !portsGiven[port] {
			portsGiven[port] = true
			return port
		}
	}
}

// portsGiven are the ports freePort handed out in this process.
var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// syncBuffer is a bytes.Buffer safe for the process's two output streams
// and the test's readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
