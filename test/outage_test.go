package test

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keystore/postgres/pgtest"
)

// cable is a TCP proxy the test can cut and mend: the gateway reaches
// PostgreSQL through it, so the test can take the store away from a
// running gateway, as a network failure or a database restart would.
type cable struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

func newCable(t *testing.T, target string) *cable {
	c := &cable{t: t, target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = ln.Addr().String()
	c.serve(ln)
	t.Cleanup(c.cut)
	return c
}

func (c *cable) serve(ln net.Listener) {
	c.mu.Lock()
	c.ln = ln
	c.mu.Unlock()
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", c.target)
			if err != nil {
				client.Close()
				continue
			}
			c.mu.Lock()
			c.conns[client], c.conns[server] = true, true
			c.mu.Unlock()
			go pipe(client, server)
			go pipe(server, client)
		}
	}()
}

func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// cut closes the listener and every connection: new connections are
// refused, open ones fail.
func (c *cable) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
	}
	for conn := range c.conns {
		conn.Close()
	}
	c.conns = map[net.Conn]bool{}
}

// mend listens again on the same address.
func (c *cable) mend() {
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Fatalf("listening again on %s: %v", c.addr, err)
	}
	c.serve(ln)
}

// throughCable returns dsn with its host and port replaced by the cable's,
// and the host:port it named.
func throughCable(t *testing.T, dsn string) (string, func(addr string) string) {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("the outage test needs a URL DSN in %s, got %q", pgtest.EnvDSN, dsn)
	}
	target := u.Host
	if u.Port() == "" {
		target = net.JoinHostPort(u.Hostname(), "5432")
	}
	return target, func(addr string) string {
		v := *u
		v.Host = addr
		return v.String()
	}
}

const outageCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	apikeys {
		store postgres {env.KEYGATE_E2E_DSN}
		cache_ttl 10m
		negative_cache_ttl 1s
	}
}

http://127.0.0.1:{{.Site}} {
	apikey
	reverse_proxy {{.Upstream}}
}
`

func TestGatewayAnswers503WhileTheStoreIsDownAndRecovers(t *testing.T) {
	t.Parallel()
	target, via := throughCable(t, pgtest.NewDatabase(t))
	c := newCable(t, target)
	up := NewUpstream(t)
	g := StartGateway(t, Options{
		Caddyfile: outageCaddyfile,
		Upstream:  up,
		// The DSN comes from the environment, as the design recommends.
		Env: []string{"KEYGATE_E2E_DSN=" + via(c.addr)},
	})
	cached, _ := g.CreateKey("cached", "full", "1d")
	uncached, _ := g.CreateKey("uncached", "full", "1d")
	if resp, body := g.Request(http.MethodGet, "/", WithKey(cached)); resp.StatusCode != http.StatusOK {
		t.Fatalf("before the outage: %d %s", resp.StatusCode, body)
	}

	c.cut()
	before := up.Count()
	resp, body := g.Request(http.MethodGet, "/", WithKey(uncached))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("uncached key during the outage: status %d %s, want 503", resp.StatusCode, body)
	} else if code, _ := decodeFailure(t, body); code != "key_store_unavailable" {
		t.Errorf("code = %q, want key_store_unavailable", code)
	}
	if got := resp.Header.Get("Retry-After"); got == "" {
		t.Error("no Retry-After on the 503")
	}
	if got := resp.Header.Get("WWW-Authenticate"); got != "" {
		t.Errorf("WWW-Authenticate %q on a 503", got)
	}
	if up.Count() != before {
		t.Error("a request was proxied while its key could not be verified")
	}
	if resp, body := g.Request(http.MethodGet, "/", WithKey(cached)); resp.StatusCode != http.StatusOK {
		t.Errorf("a key verified within cache_ttl stopped working during the outage: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.Admin(http.MethodPost, "/apikeys", map[string]string{"name": "during", "scope": "full", "expires_in": "1d"}); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("admin create during the outage: %d %s, want 503", resp.StatusCode, body)
	}
	if out := g.Output(); strings.Contains(out, uncached[3:35]) || strings.Contains(out, via(c.addr)) {
		t.Error("the output holds a secret or the DSN")
	}

	// Everything recovers without a restart.
	c.mend()
	deadline := time.Now().Add(waitLimit)
	for {
		resp, body := g.Request(http.MethodGet, "/", WithKey(uncached))
		if resp.StatusCode == http.StatusOK {
			break
		}
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after the store came back: %d %s", resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	g.CreateKey("after", "full", "1d")
}
