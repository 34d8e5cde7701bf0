package test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore/postgres/pgtest"
)

// pgLink is a TCP proxy between one gateway and the PostgreSQL server, so
// that a test can take the database away from that gateway alone (the
// server is shared by every test) and give it back, with no restart of
// either. It fails in the two ways networks do:
//
//   - cut: the port refuses connections and open ones are reset, as when
//     the server is down or restarting;
//   - stall: connections are accepted and open ones stay open, but nothing
//     gets through until mend, as in a network partition; what was sent
//     meanwhile is delivered late, as TCP retransmission would.
type pgLink struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener          // nil while cut
	conns map[net.Conn]struct{} // both ends of every open connection
	gate  chan struct{}         // closed while data may pass; open (blocking) while stalled
}

// newPgLink listens on a free port and forwards every connection to
// target. It is closed when the test ends.
func newPgLink(t *testing.T, target string) *pgLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &pgLink{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}, gate: make(chan struct{})}
	close(l.gate)
	l.serve(ln)
	t.Cleanup(func() {
		l.open()
		l.cut()
	})
	return l
}

func (l *pgLink) serve(ln net.Listener) {
	l.mu.Lock()
	l.ln = ln
	l.mu.Unlock()
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			go l.forward(client)
		}
	}()
}

// forward connects client to the target once data may pass.
func (l *pgLink) forward(client net.Conn) {
	if !l.track(client) {
		return
	}
	l.wait()
	server, err := net.Dial("tcp", l.target)
	if err != nil {
		client.Close()
		return
	}
	if !l.track(server) {
		client.Close()
		return
	}
	go l.pipe(client, server)
	go l.pipe(server, client)
}

// track records c as open, or closes it if the link was cut meanwhile.
func (l *pgLink) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		c.Close()
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

// wait blocks while the link is stalled.
func (l *pgLink) wait() {
	l.mu.Lock()
	gate := l.gate
	l.mu.Unlock()
	<-gate
}

// pipe copies src to dst, holding the data back while the link is
// stalled, and closes both when either side ends.
func (l *pgLink) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			l.wait()
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut refuses new connections and resets the open ones.
func (l *pgLink) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		l.ln.Close()
		l.ln = nil
	}
	for c := range l.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, not an orderly close
		}
		c.Close()
	}
	clear(l.conns)
}

// stall lets nothing through until mend.
func (l *pgLink) stall() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.gate:
		l.gate = make(chan struct{})
	default: // stalled already
	}
}

// open lets data through again after a stall.
func (l *pgLink) open() {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.gate:
	default:
		close(l.gate)
	}
}

// mend ends a cut or a stall: the link listens again on its address and
// lets data through.
func (l *pgLink) mend() {
	l.open()
	l.mu.Lock()
	cut := l.ln == nil
	l.mu.Unlock()
	if !cut {
		return
	}
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		l.t.Errorf("listening again on %s: %v", l.addr, err)
		return
	}
	l.serve(ln)
}

// linkTarget returns the host:port of the server dsn names.
func linkTarget(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parsing the test DSN: %v", err)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		t.Fatalf("the outage tests reach PostgreSQL through a TCP proxy: set %s to a DSN with a TCP host, not the socket %s", pgtest.EnvDSN, cfg.Host)
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// viaLink returns dsn with its host and port replaced by addr's.
func viaLink(t *testing.T, dsn, addr string) string {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("parsing the test DSN: %v", err)
		}
		u.Host = addr
		return u.String()
	}
	return dsn + " host=" + host + " port=" + port
}

// pgOutageCaddyfile is a gateway whose store is reached through a
// pgLink. Last-used times are written every second, so that a write fails
// soon after the link goes down.
const pgOutageCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	apikeys {
		store postgres {env.KEYGATE_DSN}
		cache_ttl {{.Extra.CacheTTL}}
		last_used_interval 1s
		sync_interval 1s
	}
}

http://127.0.0.1:{{.Site}} {
	apikey
	reverse_proxy {{.Upstream}}
}
`

// outageSetup is a gateway on its own database, reached through a link,
// with a recording upstream and a direct session on the database.
type outageSetup struct {
	g    *Gateway
	up   *Upstream
	link *pgLink
	db   *pgx.Conn
	p    *prober
	dsn  string // the gateway's, through the link
}

func startOutageSetup(t *testing.T, cacheTTL time.Duration) *outageSetup {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	link := newPgLink(t, linkTarget(t, dsn))
	up := NewUpstream(t)
	via := viaLink(t, dsn, link.addr)
	g := StartGateway(t, Options{
		Caddyfile: pgOutageCaddyfile,
		Upstream:  up,
		Extra:     map[string]any{"CacheTTL": cacheTTL.String()},
		Env:       []string{"KEYGATE_DSN=" + via},
	})
	return &outageSetup{g: g, up: up, link: link, db: connectDB(t, dsn), p: newProber(t), dsn: via}
}

// unknownKey returns a well-formed key that no store holds.
func unknownKey(t *testing.T) string {
	t.Helper()
	f, err := apikey.NewFormat("dk")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := f.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// expectUnavailable fails the test unless the gateway answers secret with
// 503 key_store_unavailable, a Retry-After and no challenge, and proxies
// nothing.
func (s *outageSetup) expectUnavailable(t *testing.T, what, secret string) {
	t.Helper()
	before := s.up.Count()
	resp, body := s.g.Request(http.MethodGet, "/", WithKey(secret))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("%s: status %d %s, want 503", what, resp.StatusCode, body)
		return
	}
	if code, _ := decodeFailure(t, body); code != "key_store_unavailable" {
		t.Errorf("%s: code %q, want key_store_unavailable", what, code)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s <= 0 {
		t.Errorf("%s: Retry-After %q, want a number of seconds", what, resp.Header.Get("Retry-After"))
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != "" {
		t.Errorf("%s: WWW-Authenticate %q on a 503", what, got)
	}
	if got := s.up.Count(); got != before {
		t.Errorf("%s: the upstream received %d requests, want none", what, got-before)
	}
}

// expectAdminUnavailable fails the test unless the admin request answers
// 503 saying the key store is unavailable.
func (s *outageSetup) expectAdminUnavailable(t *testing.T, method, path string, body any) {
	t.Helper()
	resp, answer := s.g.Admin(method, path, body)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("%s %s during the outage: %d %s, want 503", method, path, resp.StatusCode, answer)
		return
	}
	if msg := adminErr(t, answer); !strings.HasPrefix(msg, "key store unavailable") {
		t.Errorf("%s %s during the outage: error %q, want it to say the key store is unavailable", method, path, msg)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Errorf("%s %s during the outage: no Retry-After", method, path)
	}
}

// lastUsedInDB returns the key's last_used_at as stored; zero if NULL.
func (s *outageSetup) lastUsedInDB(t *testing.T, id string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var at *time.Time
	if err := s.db.QueryRow(ctx, `SELECT last_used_at FROM keygate_keys WHERE id = $1`, id).Scan(&at); err != nil {
		t.Fatalf("reading last_used_at of %s: %v", id, err)
	}
	if at == nil {
		return time.Time{}
	}
	return *at
}

// waitFor polls cond until it holds, failing the test with what after
// waitLimit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, waitLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// use sends a request with secret, failing the test unless it is proxied,
// and returns the times around it.
func (s *outageSetup) use(t *testing.T, what, secret string) (before, after time.Time) {
	t.Helper()
	n := s.up.Count()
	before = time.Now()
	s.p.expect(s.g, what, secret, http.StatusOK, "")
	after = time.Now()
	if got := s.up.Count(); got != n+1 {
		t.Fatalf("%s: the upstream received %d requests, want 1", what, got-n)
	}
	return before, after
}

// recoverKey polls the gateway with secret until it stops answering 503
// and checks it then answers 200.
func (s *outageSetup) recoverKey(t *testing.T, what, secret string) {
	t.Helper()
	var status int
	var code string
	waitFor(t, what, func() bool {
		status, code = s.p.status(s.g, secret)
		return status != http.StatusServiceUnavailable
	})
	if status != http.StatusOK {
		t.Fatalf("%s: got %d %q, want 200", what, status, code)
	}
}

func TestPgOutageKeepsCachedKeysRefusesOthersAndRecovers(t *testing.T) {
	t.Parallel()
	s := startOutageSetup(t, time.Minute)
	seenSecret, seen := s.g.CreateKey("seen", "full", "1d")
	unseenSecret, unseen := s.g.CreateKey("unseen", "full", "1d")
	revokedSecret, revoked := s.g.CreateKey("revoked", "full", "1d")
	s.use(t, "a key before the outage", seenSecret)
	s.use(t, "a key revoked before the outage, before it", revokedSecret)
	revoke(t, s.g, revoked.ID)
	s.p.expect(s.g, "a key revoked before the outage", revokedSecret, http.StatusUnauthorized, "api_key_revoked")
	waitFor(t, "the first use written", func() bool { return !s.lastUsedInDB(t, seen.ID).IsZero() })
	errorsBefore := metricSample(t, s.g, `caddy_apikey_last_used_writes_total{result="error"}`)

	s.link.cut()

	s.use(t, "a key verified before the outage, during it", seenSecret)
	s.expectUnavailable(t, "a key never verified by this gateway", unseenSecret)
	s.expectUnavailable(t, "a well-formed key no store holds", unknownKey(t))
	s.p.expect(s.g, "a key revoked before the outage, during it", revokedSecret, http.StatusUnauthorized, "api_key_revoked")
	s.p.expect(s.g, "a malformed key", seenSecret[:len(seenSecret)-1]+"!", http.StatusUnauthorized, "malformed_api_key")

	s.expectAdminUnavailable(t, http.MethodPost, "/apikeys", map[string]string{"name": "during", "scope": "full", "expires_in": "1d"})
	s.expectAdminUnavailable(t, http.MethodDelete, "/apikeys/"+unseen.ID, nil)
	s.expectAdminUnavailable(t, http.MethodGet, "/apikeys/"+seen.ID, nil)
	s.expectAdminUnavailable(t, http.MethodGet, "/apikeys", nil)

	// The use is kept while its write fails, and the key keeps working.
	waitFor(t, "a last-used write failing during the outage", func() bool {
		return metricSample(t, s.g, `caddy_apikey_last_used_writes_total{result="error"}`) > errorsBefore
	})
	if got := metricSample(t, s.g, "caddy_apikey_last_used_pending"); got < 1 {
		t.Errorf("caddy_apikey_last_used_pending = %v during the outage, want at least 1", got)
	}
	useFrom, useTo := s.use(t, "a key verified before the outage, after a failed write", seenSecret)

	s.link.mend()

	// Everything recovers without a restart.
	s.recoverKey(t, "a key never verified, after the outage", unseenSecret)
	waitFor(t, "the use during the outage written", func() bool { return !s.lastUsedInDB(t, seen.ID).Before(useFrom.Truncate(time.Microsecond)) })
	if got := s.lastUsedInDB(t, seen.ID); got.After(useTo) {
		t.Errorf("last_used_at in the database = %v, want the use during the outage, in [%v, %v]", got, useFrom, useTo)
	}
	if got := s.g.GetKey(seen.ID); got.LastUsedAt == nil || !got.LastUsedAt.Equal(s.lastUsedInDB(t, seen.ID)) {
		t.Errorf("admin API last_used_at = %v, want the stored %v", got.LastUsedAt, s.lastUsedInDB(t, seen.ID))
	}
	waitFor(t, "nothing pending after the outage", func() bool {
		return metricSample(t, s.g, "caddy_apikey_last_used_pending") == 0
	})
	newSecret, _ := s.g.CreateKey("after", "full", "1d")
	s.use(t, "a key created after the outage", newSecret)
	revoke(t, s.g, unseen.ID)
	s.p.expect(s.g, "a key revoked after the outage", unseenSecret, http.StatusUnauthorized, "api_key_revoked")
	s.p.expect(s.g, "a well-formed key no store holds, after the outage", unknownKey(t), http.StatusUnauthorized, "invalid_api_key")

	if out := s.g.Output(); strings.Contains(out, seenSecret) || strings.Contains(out, unseenSecret) || strings.Contains(out, s.dsn) {
		t.Error("the gateway's output holds a secret or the DSN")
	}
}

func TestPgOutageRefusesAKeyVerifiedLongerThanCacheTTLAgoWith503(t *testing.T) {
	t.Parallel()
	const cacheTTL = 2 * time.Second
	s := startOutageSetup(t, cacheTTL)
	secret, _ := s.g.CreateKey("key", "full", "1d")
	revokedSecret, revoked := s.g.CreateKey("revoked", "full", "1d")
	revoke(t, s.g, revoked.ID)
	verified, _ := s.use(t, "before the outage", secret)
	s.p.expect(s.g, "a revoked key before the outage", revokedSecret, http.StatusUnauthorized, "api_key_revoked")
	checked := time.Now() // both records were fetched before this

	s.link.cut()

	// Within cache_ttl the key still works. (On a machine so loaded that
	// cache_ttl has passed already, there is nothing to check here.)
	status, code := s.p.status(s.g, secret)
	switch {
	case time.Since(verified) >= cacheTTL:
		t.Logf("cache_ttl passed before the first request of the outage (got %d %q)", status, code)
	case status != http.StatusOK:
		t.Errorf("within cache_ttl of its verification: got %d %q, want 200", status, code)
	}

	// Once cache_ttl has passed since the verification, the gateway cannot
	// tell whether the key was revoked meanwhile: 503, never 401. Nor can
	// it tell whether a revoked key's record is still the store's.
	time.Sleep(time.Until(checked.Add(cacheTTL + 100*time.Millisecond)))
	s.expectUnavailable(t, "a key verified longer than cache_ttl ago", secret)
	s.expectUnavailable(t, "a revoked key checked longer than cache_ttl ago", revokedSecret)

	s.link.mend()
	s.recoverKey(t, "the key after the outage", secret)
	s.p.expect(s.g, "a revoked key after the outage", revokedSecret, http.StatusUnauthorized, "api_key_revoked")
}

func TestPgOutageWhenTheNetworkStallsAnswersInsteadOfHanging(t *testing.T) {
	t.Parallel()
	s := startOutageSetup(t, time.Minute)
	seenSecret, _ := s.g.CreateKey("seen", "full", "1d")
	unseenSecret, _ := s.g.CreateKey("unseen", "full", "1d")
	s.use(t, "before the stall", seenSecret)

	s.link.stall()

	// Every request gets an answer (the prober gives up after waitLimit):
	// from the cache at once, or 503 once the store's deadline passes.
	from, to := s.use(t, "a key verified before the stall, during it", seenSecret)
	t.Logf("a cached key during the stall: answered in %v", to.Sub(from))
	start := time.Now()
	s.expectUnavailable(t, "a key never verified, during the stall", unseenSecret)
	t.Logf("an uncached key during the stall: 503 after %v", time.Since(start))
	start = time.Now()
	s.expectAdminUnavailable(t, http.MethodPost, "/apikeys", map[string]string{"name": "during", "scope": "full", "expires_in": "1d"})
	t.Logf("an admin create during the stall: 503 after %v", time.Since(start))
	s.use(t, "a key verified before the stall, after the failures", seenSecret)

	s.link.mend()
	s.recoverKey(t, "a key never verified, after the stall", unseenSecret)
	newSecret, _ := s.g.CreateKey("after", "full", "1d")
	s.use(t, "a key created after the stall", newSecret)
}
