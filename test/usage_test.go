package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// usageSeries is the answer of GET /apikeys/{id}/usage.
type usageSeries struct {
	KeyID  string `json:"key_id"`
	Step   string `json:"step"`
	Points []struct {
		Start   time.Time        `json:"start"`
		OK      int64            `json:"ok"`
		Refused map[string]int64 `json:"refused"`
	} `json:"points"`
}

// totals sums a series: admitted, and refused by reason.
func (s usageSeries) totals() (ok int64, refused map[string]int64) {
	refused = map[string]int64{}
	for _, p := range s.Points {
		ok += p.OK
		for r, n := range p.Refused {
			refused[r] += n
		}
	}
	return ok, refused
}

func getUsage(t *testing.T, g *Gateway, path string) usageSeries {
	t.Helper()
	resp, body := g.Admin(http.MethodGet, path, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, body)
	}
	var s usageSeries
	if err := json.Unmarshal(body, &s); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
	return s
}

// usageCaddyfile is DefaultCaddyfile with a last_used_interval that
// leaves the counts unwritten for the whole test unless the process stops.
const usageCaddyfile = `{
	admin {{.Admin}}
	persist_config off
	apikeys {
		last_used_interval {{.Extra.interval}}
	}
}

http://127.0.0.1:{{.Site}} {
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

func TestUsageCountsRequestsByResultAndKeepsThemOverReloadAndSIGTERM(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t), Caddyfile: usageCaddyfile, Extra: map[string]any{"interval": "1h"}})
	full, fk := g.CreateKey("Backend", "full", "never")
	routine, rk := g.CreateKey("Cron", "routine", "never")
	for range 3 {
		if resp, body := g.Request(http.MethodGet, "/api/orders", WithKey(full)); resp.StatusCode != http.StatusOK {
			t.Fatalf("full key: %d %s", resp.StatusCode, body)
		}
	}
	g.Request(http.MethodGet, "/api/orders", WithKey(routine))    // insufficient_scope
	g.Request(http.MethodGet, "/api/orders", WithKey("dk_nokey")) // malformed: nobody's
	check := func(when string) {
		t.Helper()
		s := getUsage(t, g, "/apikeys/"+fk.ID+"/usage")
		if s.KeyID != fk.ID || s.Step != "1h" || len(s.Points) != 25 {
			t.Errorf("%s: series of %s at %s with %d points, want %s, 1h, 25 (24 hours and the current one)", when, s.KeyID, s.Step, len(s.Points), fk.ID)
		}
		if ok, refused := s.totals(); ok != 3 || len(refused) != 0 {
			t.Errorf("%s: full key: %d ok, refused %v; want 3 ok, none refused", when, ok, refused)
		}
		s = getUsage(t, g, "/apikeys/"+rk.ID+"/usage?since=30m&step=1m")
		if len(s.Points) < 30 || len(s.Points) > 31 {
			t.Errorf("%s: 30m at 1m = %d points, want 30 or 31", when, len(s.Points))
		}
		if ok, refused := s.totals(); ok != 0 || refused["insufficient_scope"] != 1 || len(refused) != 1 {
			t.Errorf("%s: routine key: %d ok, refused %v; want insufficient_scope 1", when, ok, refused)
		}
		resp, body := g.Admin(http.MethodGet, "/apikeys/usage", nil)
		want := fmt.Sprintf(`{"keys":[{"key_id":%q,"ok":3,"refused":0},{"key_id":%q,"ok":0,"refused":1}]}`, fk.ID, rk.ID)
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != want {
			t.Errorf("%s: GET /apikeys/usage = %d %s, want %s", when, resp.StatusCode, body, want)
		}
	}
	check("before any write (counts pending in memory)")

	// A reload that changes the app's configuration closes the old
	// recorder, which writes its counts.
	g.Reload(strings.Replace(usageCaddyfile, "{{.Extra.interval}}", "2h", 1))
	check("after a reload")

	g.Request(http.MethodGet, "/api/orders", WithKey(full))
	g.mu.Lock()
	cmd := g.cmd
	g.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-g.done
	g.Stop()
	g.Start()
	s := getUsage(t, g, "/apikeys/"+fk.ID+"/usage?since=2h")
	if ok, _ := s.totals(); ok != 4 {
		t.Errorf("after SIGTERM and a start: full key %d ok, want 4", ok)
	}
}

func TestUsageRefusesBadQueriesNamingTheParameter(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	_, k := g.CreateKey("Backend", "full", "never")
	for _, c := range []struct{ path, want string }{
		{"/apikeys/" + k.ID + "/usage?step=2h", "step: must be 1m, 1h or 1d"},
		{"/apikeys/" + k.ID + "/usage?since=400d&step=1h", "since: asks for"},
		{"/apikeys/" + k.ID + "/usage?since=3000d&step=1d", "at most 1000"},
		{"/apikeys/" + k.ID + "/usage?since=yesterday", "since: must be a duration"},
		{"/apikeys/" + k.ID + "/usage?from=1h", "unknown query parameter"},
		{"/apikeys/usage?owner=", "owner: is empty"},
		{"/apikeys/audit?action=key.deleted", "action: must be one of"},
		{"/apikeys/audit?limit=0", "limit: must be"},
		{"/apikeys/audit?cursor=abc", "cursor: is not a cursor"},
	} {
		resp, body := g.Admin(http.MethodGet, c.path, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), c.want) {
			t.Errorf("GET %s = %d %s, want 400 with %q", c.path, resp.StatusCode, body, c.want)
		}
	}
	resp, _ := g.Admin(http.MethodGet, "/apikeys/key_0000000000000000000000/usage", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("usage of an unknown key: %d, want 404", resp.StatusCode)
	}
	resp, _ = g.Admin(http.MethodPost, "/apikeys/usage", "{}")
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /apikeys/usage: %d, want 405", resp.StatusCode)
	}
}

// auditEvent is an event as GET /apikeys/audit shows it.
type auditEvent struct {
	ID        int64             `json:"id"`
	At        time.Time         `json:"at"`
	Action    string            `json:"action"`
	KeyID     string            `json:"key_id"`
	Owner     *string           `json:"owner"`
	Actor     Actor             `json:"actor"`
	RemoteIP  *string           `json:"remote_ip"`
	UserAgent *string           `json:"user_agent"`
	Changes   map[string][2]any `json:"changes"`
	Details   map[string]string `json:"details"`
}

type auditPage struct {
	Events     []auditEvent `json:"events"`
	NextCursor *string      `json:"next_cursor"`
}

func getAudit(t *testing.T, g *Gateway, query string) (auditPage, []byte) {
	t.Helper()
	resp, body := g.Admin(http.MethodGet, "/apikeys/audit"+query, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /apikeys/audit%s: %d %s", query, resp.StatusCode, body)
	}
	var p auditPage
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("GET /apikeys/audit%s: %v", query, err)
	}
	return p, body
}

func TestAuditLogRecordsEveryChangeWithWhoAndWhereAndNoSecret(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	out := cli(t, g, "create", "--name", "Audited", "--scope", "full", "--expires", "never", "--owner", "acme")
	secret := secretInText.FindString(out)
	id := keyIDInText.FindString(out)
	req, _ := http.NewRequest(http.MethodPatch, g.AdminURL+"/apikeys/"+id, strings.NewReader(`{"name": "Renamed", "metadata": {"plan": "pro"}}`))
	req.Header.Set("Keygate-Actor", "ops@example.com")
	req.Header.Set("User-Agent", "ops-script/2")
	if resp, body := g.Do(req); resp.StatusCode != http.StatusOK {
		t.Fatalf("PATCH: %d %s", resp.StatusCode, body)
	}
	rotated := cli(t, g, "rotate", id, "--grace", "1h")
	newSecret := secretInText.FindString(rotated)
	newID := ""
	for _, m := range keyIDInText.FindAllString(rotated, -1) {
		if m != id {
			newID = m
		}
	}
	cli(t, g, "revoke", newID, "--yes")

	page, body := getAudit(t, g, "")
	var got []string
	for _, e := range page.Events {
		got = append(got, e.Action+" "+e.KeyID)
	}
	want := []string{"key.revoked " + newID, "key.rotated " + id, "key.created " + newID, "key.updated " + id, "key.created " + id}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events, newest first:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	upd := page.Events[3]
	if upd.Actor != (Actor{"admin", "ops@example.com"}) || upd.RemoteIP == nil || *upd.RemoteIP != "127.0.0.1" ||
		upd.UserAgent == nil || *upd.UserAgent != "ops-script/2" || upd.Owner == nil || *upd.Owner != "acme" {
		t.Errorf("key.updated = %+v, want actor admin ops@example.com from 127.0.0.1 with ops-script/2, owner acme", upd)
	}
	if fmt.Sprint(upd.Changes["name"]) != "[Audited Renamed]" || fmt.Sprint(upd.Changes["metadata"]) != "[map[] map[plan:pro]]" {
		t.Errorf("key.updated changes = %v", upd.Changes)
	}
	if c := page.Events[4]; c.Actor.Type != "admin" || !strings.Contains(c.Actor.ID, "@") {
		t.Errorf("key.created by the CLI: actor %+v, want admin <user>@<host>", c.Actor)
	}
	if d := page.Events[1].Details; d["new_key_id"] != newID {
		t.Errorf("key.rotated details = %v, want new_key_id %s", d, newID)
	}
	for _, s := range []string{secret, newSecret} {
		if s == "" || strings.Contains(string(body), s) || strings.Contains(g.Output(), s) {
			t.Errorf("a secret is in the audit log or the gateway's logs (or was not printed)")
		}
	}
	if n := strings.Count(g.Output(), `"logger":"apikeys.audit"`); n != 5 {
		t.Errorf("apikeys.audit logged %d lines, want 5:\n%s", n, g.Output())
	}

	// Filters and pages.
	p, _ := getAudit(t, g, "?key_id="+id+"&action=key.updated")
	if len(p.Events) != 1 || p.Events[0].Action != "key.updated" {
		t.Errorf("key_id and action filter: %+v", p.Events)
	}
	var paged []string
	for cursor := ""; ; {
		q := "?limit=2"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		p, _ := getAudit(t, g, q)
		for _, e := range p.Events {
			paged = append(paged, e.Action+" "+e.KeyID)
		}
		if p.NextCursor == nil {
			break
		}
		cursor = *p.NextCursor
	}
	if strings.Join(paged, "\n") != strings.Join(want, "\n") {
		t.Errorf("pages of 2 hold\n%s\nwant\n%s", strings.Join(paged, "\n"), strings.Join(want, "\n"))
	}
	if p, _ := getAudit(t, g, "?owner=globex"); len(p.Events) != 0 {
		t.Errorf("owner globex sees %d events, want 0", len(p.Events))
	}

	// The CLI's table and JSON.
	table := cli(t, g, "audit", "--key", id)
	for _, w := range []string{"AT", "ACTION", "key.updated", "ops@example.com", `name: "Audited" → "Renamed"`, "new_key_id=" + newID} {
		if !strings.Contains(table, w) {
			t.Errorf("apikey audit --key lacks %q:\n%s", w, table)
		}
	}
	var cliPage auditPage
	if err := json.Unmarshal([]byte(cli(t, g, "audit", "--json", "--limit", "1")), &cliPage); err != nil || len(cliPage.Events) != 1 || cliPage.NextCursor == nil {
		t.Errorf("apikey audit --json --limit 1 = %+v, %v; want one event and a cursor", cliPage, err)
	}
}

func TestCLIUsagePrintsASparklineTableAndTheBusiestKeys(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	full, k := g.CreateKey("Backend", "full", "never")
	routine, rk := g.CreateKey("Cron", "routine", "never")
	for range 5 {
		g.Request(http.MethodGet, "/api/orders", WithKey(full))
	}
	g.Request(http.MethodGet, "/api/orders", WithKey(routine))
	out := cli(t, g, "usage", k.ID)
	for _, w := range []string{"Requests of " + k.ID + " per hour", "█  max 5 per hour", "Total: 5 requests, 5 ok, 0 refused", "START", "OK"} {
		if !strings.Contains(out, w) {
			t.Errorf("apikey usage ID lacks %q:\n%s", w, out)
		}
	}
	out = cli(t, g, "usage", rk.ID, "--since", "10m", "--step", "1m")
	if !strings.Contains(out, "per minute") || !strings.Contains(out, "1 refused (insufficient_scope 1)") {
		t.Errorf("apikey usage --step 1m:\n%s", out)
	}
	out = cli(t, g, "usage")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], k.ID) || !strings.Contains(lines[2], rk.ID) {
		t.Errorf("apikey usage (all keys) = \n%s\nwant a header, then %s, then %s", out, k.ID, rk.ID)
	}
	var series usageSeries
	if err := json.Unmarshal([]byte(cli(t, g, "usage", k.ID, "--json")), &series); err != nil || series.KeyID != k.ID || len(series.Points) != 25 {
		t.Errorf("apikey usage --json = %+v, %v", series, err)
	}
	if stderr := cliFails(t, g, "usage", k.ID, "--step", "5m"); !strings.Contains(stderr, "--step") {
		t.Errorf("a bad --step: %s", stderr)
	}
}
