package console

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

// recordUsage writes counts of the minute before the env's now.
func (e *env) recordUsage(id string, results map[string]int64) {
	e.t.Helper()
	var counts []keystore.UsageCount
	for r, n := range results {
		counts = append(counts, keystore.UsageCount{KeyID: id, Minute: e.clock.Now().Add(-time.Minute).Truncate(time.Minute), Result: r, N: n})
	}
	if err := e.store.RecordUsage(context.Background(), nil, counts); err != nil {
		e.t.Fatal(err)
	}
}

func TestUsageViewDrawsAnAccessibleChartAndTable(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.create("Backend <&>", "full", "never")
	e.recordUsage(k.ID, map[string]int64{"ok": 12, "rate_limited": 3, "ip_not_allowed": 1})
	resp, page := e.get("/?view=usage&id=" + k.ID)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d:\n%s", resp.StatusCode, page)
	}
	for _, want := range []string{
		`<svg class="chart"`, `role="img"`, `aria-labelledby="chart-title chart-desc"`,
		`<title id="chart-title">Requests of key Backend &lt;&amp;&gt; per hour, last 24 hours</title>`,
		`<desc id="chart-desc">16 requests: 12 admitted, 4 refused. Refused: Rate limited 3, IP not allowed 1.`,
		`class="r0"`, `class="r1"`, `class="r4"`,
		`<td class="num">12</td><td class="num">4</td><td>Rate limited 3, IP not allowed 1</td>`,
		`<body class="themed">`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("usage page lacks %s", want)
		}
	}
	if strings.Contains(page, "Backend <&>") {
		t.Error("the key's name is not escaped")
	}
	for _, rg := range []string{"7d", "30d", "90d", "bogus"} {
		if resp, _ := e.get("/?view=usage&range=" + rg + "&id=" + k.ID); resp.StatusCode != http.StatusOK {
			t.Errorf("range %s: status %d", rg, resp.StatusCode)
		}
	}
	if resp, _ := e.get("/?view=usage&id=key_0000000000000000000000"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("usage of an unknown key: %d, want 404", resp.StatusCode)
	}
}

func TestListShowsRequestsOf24HoursAndFiltersKeysNotUsedIn30Days(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, used := e.create("Used", "full", "never")
	_, idle := e.create("Idle", "full", "never")
	e.recordUsage(used.ID, map[string]int64{"ok": 7, "insufficient_scope": 2})
	if err := e.store.TouchLastUsed(context.Background(), map[string]time.Time{used.ID: e.clock.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_, page := e.get("/")
	if !strings.Contains(page, `title="Usage of key Used"><span class="requests">9</span> in 24 h</a>`) || !strings.Contains(page, `title="Usage of key Idle"><span class="requests">0</span> in 24 h</a>`) {
		t.Errorf("list does not show 9 and 0 requests in 24 h:\n%s", page)
	}
	_, page = e.get("/?unused=30d")
	if got := rowIDs(page); !slices.Equal(got, []string{idle.ID}) {
		t.Errorf("not used in 30 days = %v, want only %s", got, idle.ID)
	}
	if !strings.Contains(page, `<option value="30d" selected>Not used in 30 days</option>`) {
		t.Error("the filter does not show as selected")
	}
}

func TestActivityViewShowsWhoChangedWhatAsTheConsoleUser(t *testing.T) {
	e := newEnv(t, envOptions{})
	_, k := e.create("Backend", "full", "never")
	resp, _ := e.do(http.MethodPost, "/", url.Values{"op": {"update"}, "id": {k.ID}, "name": {"Renamed"}}, http.Header{"User-Agent": {"Firefox/1"}})
	if resp.StatusCode >= 400 {
		t.Fatalf("update: %d", resp.StatusCode)
	}
	p, err := e.svc.Audit(context.Background(), keyservice.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	upd := p.Events[0]
	if upd.Action != keystore.ActionUpdated || upd.Actor.Type != "console" || upd.Actor.ID != "alice" || upd.RemoteIP != "127.0.0.1" || upd.UserAgent != "Firefox/1" {
		t.Errorf("the console's change = %+v, want console alice from 127.0.0.1 with Firefox/1", upd)
	}
	_, page := e.get("/?view=activity")
	for _, want := range []string{"Edited", "alice", "(console)", `name: &#34;Backend&#34; → &#34;Renamed&#34;`, "Created", k.ID} {
		if !strings.Contains(page, want) {
			t.Errorf("activity page lacks %s", want)
		}
	}
}

func TestOwnerConsoleNeverShowsAnotherOwnersUsageOrEvents(t *testing.T) {
	e := newOwnersEnv(t)
	e.recordUsage(e.globex.ID, map[string]int64{"ok": 41})
	e.recordUsage(e.acme.ID, map[string]int64{"ok": 5})
	for _, target := range []string{
		"/?view=usage&id=" + e.globex.ID,
		"/?view=usage&id=" + e.operators.ID,
	} {
		resp, page := e.get(target)
		if resp.StatusCode != http.StatusNotFound || strings.Contains(page, "41") || strings.Contains(page, "Globex") {
			t.Errorf("%s: %d, want 404 without a trace of the key", target, resp.StatusCode)
		}
	}
	_, page := e.get("/?view=activity")
	if strings.Contains(page, e.globex.ID) || strings.Contains(page, e.operators.ID) || strings.Contains(page, "gina") || strings.Contains(page, "ops@gw1") {
		t.Error("acme's activity shows another owner's events")
	}
	for _, target := range []string{"/?view=activity&key=" + e.globex.ID, "/?view=activity&key=" + e.operators.ID} {
		// The page repeats the ID asked for, and nothing else of it.
		_, page := e.get(target)
		if !strings.Contains(page, "No activity yet") || strings.Contains(page, "gina") || strings.Contains(page, "ops@gw1") {
			t.Errorf("%s shows another owner's events", target)
		}
	}
	_, page = e.get("/?view=activity")
	if !strings.Contains(page, e.acme.ID) {
		t.Error("acme's activity lacks its own key")
	}
	_, page = e.get("/")
	if !strings.Contains(page, `title="Usage of key Acme backend"><span class="requests">5</span> in 24 h</a>`) || strings.Contains(page, ">41</span>") {
		t.Error("acme's list does not show its own 5 requests, or shows globex's 41")
	}
}
