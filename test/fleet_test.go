package test

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keystore/postgres/pgtest"
)

// fleetCaddyfile is one instance of a fleet on a shared PostgreSQL store.
// cache_ttl is long: an instance paused (SIGSTOP) for the 2s of
// confirm_timeout must read the change log before it answers from its
// cache again because it notices the pause, not because its cache aged.
const fleetCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	apikeys {
		store postgres {env.KEYGATE_DSN}
		cache_ttl 10m
		sync_interval 1s
		confirm_timeout {{.Extra.ConfirmTimeout}}
	}
}

http://127.0.0.1:{{.Site}} {
	apikey
	reverse_proxy {{.Upstream}}
}
`

// instanceList is GET /apikeys/instances.
type instanceList struct {
	Instances []struct {
		ID           string    `json:"id"`
		Hostname     string    `json:"hostname"`
		Version      string    `json:"version"`
		StartedAt    time.Time `json:"started_at"`
		SeenAt       time.Time `json:"seen_at"`
		AppliedSeq   int64     `json:"applied_seq"`
		CacheEntries int       `json:"cache_entries"`
		Live         bool      `json:"live"`
	} `json:"instances"`
	Seq int64 `json:"seq"`
}

// propagated is a changed key's propagation.
type propagated struct {
	Propagation *struct {
		Confirmed []string `json:"confirmed"`
		Pending   []string `json:"pending"`
	} `json:"propagation"`
}

func instances(t *testing.T, g *Gateway) instanceList {
	t.Helper()
	resp, body := g.Admin(http.MethodGet, "/apikeys/instances", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /apikeys/instances: %d %s", resp.StatusCode, body)
	}
	var l instanceList
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatalf("GET /apikeys/instances: %v: %s", err, body)
	}
	return l
}

func instanceIDs(l instanceList) []string {
	var ids []string
	for _, in := range l.Instances {
		ids = append(ids, in.ID)
	}
	return ids
}

// fleet is several gateways on one database, and each one's instance ID.
type fleet struct {
	gws []*Gateway
	ids []string
	p   *prober
}

// startFleet starts n instances one after the other, learning each one's
// instance ID from the registry as it appears.
func startFleet(t *testing.T, n int, confirmTimeout string) *fleet {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	up := NewUpstream(t)
	f := &fleet{p: newProber(t)}
	for range n {
		g := StartGateway(t, Options{
			Caddyfile: fleetCaddyfile,
			Upstream:  up,
			Extra:     map[string]any{"ConfirmTimeout": confirmTimeout},
			Env:       []string{"KEYGATE_DSN=" + dsn},
		})
		var id string
		waitFor(t, "the new instance in the registry", func() bool {
			for _, cand := range instanceIDs(instances(t, g)) {
				if !slices.Contains(f.ids, cand) {
					id = cand
					return true
				}
			}
			return false
		})
		f.gws, f.ids = append(f.gws, g), append(f.ids, id)
	}
	return f
}

// signal sends sig to g's process.
func signal(t *testing.T, g *Gateway, sig syscall.Signal) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil {
		t.Fatal("the gateway is not running")
	}
	if err := g.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// changeAnswer sends a change to g's admin API and returns the key's
// propagation and how long the answer took.
func changeAnswer(t *testing.T, g *Gateway, method, path string, body any, want int) (confirmed, pending []string, took time.Duration) {
	t.Helper()
	start := time.Now()
	resp, raw := g.Admin(method, path, body)
	took = time.Since(start)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	var key propagated
	var wrapped struct {
		APIKey propagated `json:"api_key"`
	}
	if err := json.Unmarshal(raw, &wrapped); err == nil && wrapped.APIKey.Propagation != nil {
		key = wrapped.APIKey
	} else if err := json.Unmarshal(raw, &key); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, raw)
	}
	if key.Propagation == nil {
		t.Fatalf("%s %s: no propagation in %s", method, path, raw)
	}
	return key.Propagation.Confirmed, key.Propagation.Pending, took
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// Three instances register and list each other as live; every change
// through the admin API answers once all three applied it, and then no
// other instance accepts a revoked key, not even for its first request.
// The CLI says it in words.
func TestFleetConfirmsChangesOnEveryInstance(t *testing.T) {
	t.Parallel()
	f := startFleet(t, 3, "2s")
	a := f.gws[0]
	all := sortedCopy(f.ids)

	l := instances(t, f.gws[2])
	if len(l.Instances) != 3 {
		t.Fatalf("instances = %+v, want 3", l)
	}
	for _, in := range l.Instances {
		if !in.Live || in.Hostname == "" || in.Version == "" || in.StartedAt.IsZero() || in.AppliedSeq != l.Seq {
			t.Errorf("instance %+v: want live, named, started, and at seq %d", in, l.Seq)
		}
	}

	// Create: confirmed everywhere.
	resp, raw := a.Admin(http.MethodPost, "/apikeys", map[string]string{"name": "fleet", "scope": "full", "expires_in": "1d"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, raw)
	}
	var created struct {
		Secret string `json:"secret"`
		APIKey struct {
			ID string `json:"id"`
			propagated
		} `json:"api_key"`
	}
	if err := json.Unmarshal(raw, &created); err != nil || created.APIKey.Propagation == nil {
		t.Fatalf("create answer %s: %v", raw, err)
	}
	if got := sortedCopy(created.APIKey.Propagation.Confirmed); !slices.Equal(got, all) || len(created.APIKey.Propagation.Pending) != 0 {
		t.Errorf("create propagation = %+v, want all of %v confirmed", created.APIKey.Propagation, all)
	}

	// Revocations: the first request to each other instance after the
	// answer is refused.
	const trials = 5
	for i := range trials {
		secret, k := a.CreateKey("trial", "full", "1d")
		for _, g := range f.gws {
			f.p.expect(g, "before the revocation", secret, http.StatusOK, "")
		}
		confirmed, pending, _ := changeAnswer(t, a, http.MethodDelete, "/apikeys/"+k.ID, nil, http.StatusOK)
		if !slices.Equal(sortedCopy(confirmed), all) || len(pending) != 0 {
			t.Fatalf("trial %d: revoke propagation confirmed %v pending %v, want all of %v confirmed", i, confirmed, pending, all)
		}
		for j, g := range f.gws[1:] {
			f.p.expect(g, "the first request after the revocation to instance "+f.ids[j+1], secret, http.StatusUnauthorized, "api_key_revoked")
		}
	}

	// Update and rotate are confirmed too.
	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{http.MethodPatch, "/apikeys/" + created.APIKey.ID, map[string]string{"name": "renamed"}, http.StatusOK},
		{http.MethodPost, "/apikeys/" + created.APIKey.ID + "/rotate", map[string]string{"grace": "0s"}, http.StatusCreated},
	} {
		confirmed, pending, _ := changeAnswer(t, a, c.method, c.path, c.body, c.want)
		if !slices.Equal(sortedCopy(confirmed), all) || len(pending) != 0 {
			t.Errorf("%s %s: confirmed %v pending %v, want all confirmed", c.method, c.path, confirmed, pending)
		}
	}
	f.p.expect(f.gws[2], "the rotated key with 0s grace", created.Secret, http.StatusUnauthorized, "api_key_expired")

	// The CLI in words.
	_, k := a.CreateKey("cli", "full", "1d")
	out, errOut, code := a.Run("apikey", "revoke", "--yes", k.ID)
	if code != 0 || !strings.Contains(out, "Revoked on 3 of 3 instances.") {
		t.Errorf("apikey revoke: exit %d, stdout %q, stderr %q; want \"Revoked on 3 of 3 instances.\"", code, out, errOut)
	}
	out, errOut, code = a.Run("apikey", "instances")
	if code != 0 || !strings.Contains(out, "3 live of 3 instances") || strings.Count(out, " yes ") != 3 {
		t.Errorf("apikey instances: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, id := range f.ids {
		if !strings.Contains(out, id) {
			t.Errorf("apikey instances does not name %s:\n%s", id, out)
		}
	}
}

// A paused instance (SIGSTOP) holds a revocation's answer for
// confirm_timeout and is named pending; the others refuse the key at once,
// and the paused one refuses it from its first request after SIGCONT.
func TestFleetPausedInstanceIsNamedPendingAndRefusesAfterItResumes(t *testing.T) {
	t.Parallel()
	f := startFleet(t, 3, "2s")
	a, b, c := f.gws[0], f.gws[1], f.gws[2]
	secret, k := a.CreateKey("paused", "full", "1d")
	for _, g := range f.gws {
		f.p.expect(g, "before the pause", secret, http.StatusOK, "")
	}

	signal(t, c, syscall.SIGSTOP)
	resumed := false
	resume := func() {
		if !resumed {
			signal(t, c, syscall.SIGCONT)
			resumed = true
		}
	}
	defer resume()
	confirmed, pending, took := changeAnswer(t, a, http.MethodDelete, "/apikeys/"+k.ID, nil, http.StatusOK)
	if !slices.Equal(pending, []string{f.ids[2]}) || !slices.Equal(sortedCopy(confirmed), sortedCopy(f.ids[:2])) {
		t.Errorf("revoke with C paused: confirmed %v pending %v, want %v pending", confirmed, pending, f.ids[2])
	}
	if took < 2*time.Second {
		t.Errorf("revoke with C paused answered in %v, before confirm_timeout (2s)", took)
	}
	f.p.expect(b, "the live instance after the revocation", secret, http.StatusUnauthorized, "api_key_revoked")
	out, _, _ := a.Run("apikey", "instances")
	t.Logf("apikey instances with C paused:\n%s", out)
	resume()
	f.p.expect(c, "the first request to C after SIGCONT", secret, http.StatusUnauthorized, "api_key_revoked")

}

// On SQLite the one instance registers itself, and confirms its changes.
func TestSingleInstanceConfirmsItself(t *testing.T) {
	t.Parallel()
	g := StartGateway(t, Options{})
	l := instances(t, g)
	if len(l.Instances) != 1 || !l.Instances[0].Live {
		t.Fatalf("instances = %+v, want this one, live", l)
	}
	_, k := g.CreateKey("one", "full", "1d")
	confirmed, pending, _ := changeAnswer(t, g, http.MethodDelete, "/apikeys/"+k.ID, nil, http.StatusOK)
	if !slices.Equal(confirmed, []string{l.Instances[0].ID}) || len(pending) != 0 {
		t.Errorf("revoke: confirmed %v pending %v, want %s", confirmed, pending, l.Instances[0].ID)
	}
	_, k = g.CreateKey("two", "full", "1d")
	if out, _, code := g.Run("apikey", "revoke", "--yes", k.ID); code != 0 || !strings.Contains(out, "Revoked on 1 of 1 instance.") {
		t.Errorf("apikey revoke: exit %d, %q", code, out)
	}
}

// An instance that stops cleanly deregisters; a reload, with the same or
// a changed configuration, keeps the instance's one registration.
func TestFleetReloadKeepsOneRegistrationAndStopDeregisters(t *testing.T) {
	t.Parallel()
	f := startFleet(t, 2, "2s")
	a, b := f.gws[0], f.gws[1]

	data, err := os.ReadFile(a.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	a.Reload(text)                                                                 // unchanged
	a.Reload(strings.Replace(text, "cache_ttl 10m", "cache_ttl 9m", 1))            // changed: new pooled resources
	a.Reload(strings.Replace(text, "confirm_timeout 2s", "confirm_timeout 0s", 1)) // changed again
	time.Sleep(1500 * time.Millisecond)                                            // a beat of every resource set
	if got := sortedCopy(instanceIDs(instances(t, b))); !slices.Equal(got, sortedCopy(f.ids)) {
		t.Errorf("instances after reloads of A = %v, want %v", got, sortedCopy(f.ids))
	}
	for _, in := range instances(t, b).Instances {
		if !in.Live {
			t.Errorf("instance %s is not live after the reloads", in.ID)
		}
	}

	b.Stop()
	if got := instanceIDs(instances(t, a)); !slices.Equal(got, []string{f.ids[0]}) {
		t.Errorf("instances after B stopped = %v, want A's %s alone", got, f.ids[0])
	}
	// With B gone and confirm_timeout 0s, a change is confirmed at once
	// by A alone.
	_, k := a.CreateKey("after", "full", "1d")
	confirmed, pending, _ := changeAnswer(t, a, http.MethodDelete, "/apikeys/"+k.ID, nil, http.StatusOK)
	if !slices.Equal(confirmed, []string{f.ids[0]}) || len(pending) != 0 {
		t.Errorf("revoke with B stopped: confirmed %v pending %v", confirmed, pending)
	}
}
