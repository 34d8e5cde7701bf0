package test

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/sqlite"
)

// seedUsage writes a day of counts for key id into the gateway's own
// SQLite file, as its recorder would have over the last 24 hours: a
// daily curve of admitted requests, some rate limited at the peak and a
// few from a wrong IP.
func seedUsage(t *testing.T, g *Gateway, id string) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(g.Ports.Dir, "data", "caddy", "keygate", "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Hour)
	var counts []keystore.UsageCount
	for h := 1; h <= 23; h++ {
		at := now.Add(-time.Duration(h) * time.Hour)
		ok := int64(40 + 160*math.Pow(math.Sin(math.Pi*float64(at.Hour()+18)/24), 2))
		counts = append(counts, keystore.UsageCount{KeyID: id, Minute: at, Result: "ok", N: ok})
		if ok > 170 {
			counts = append(counts, keystore.UsageCount{KeyID: id, Minute: at, Result: "rate_limited", N: ok - 170})
		}
		if h%7 == 3 {
			counts = append(counts, keystore.UsageCount{KeyID: id, Minute: at, Result: "ip_not_allowed", N: 4})
		}
	}
	if err := s.RecordUsage(context.Background(), nil, counts); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserConsoleUsageChartActivityAndUnusedFilter drives the usage
// chart, the Activity view and the "not used in 30 days" filter in
// chromium, in the light and the dark scheme. With KEYGATE_SCREENSHOTS=1
// it writes docs/console-usage.png, docs/console-usage-dark.png and
// docs/console-activity.png.
func TestBrowserConsoleUsageChartActivityAndUnusedFilter(t *testing.T) {
	g := startConsoleGateway(t)
	prod, prodKey := g.CreateKey("Production Backend", "full", "1y")
	_, idle := g.CreateKey("Old import job", "routine", "never")
	routine, _ := g.CreateKey("Nightly report scheduler", "routine", "never")
	seedUsage(t, g.Gateway, prodKey.ID)
	for range 3 {
		if status, code := g.apiCode("/api/anything", prod); status != http.StatusOK {
			t.Fatalf("using a key: %d %s", status, code)
		}
	}
	g.apiCode("/api/routines/nightly", routine)
	// Changes made in the console, as its user.
	if resp, body := g.console(http.MethodPost, "/console/", url.Values{"op": {"update"}, "id": {prodKey.ID}, "name": {prodKey.Name},
		"metadata": {"plan=enterprise"}, "allowed_origins": {""}}, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("editing: %d %s", resp.StatusCode, body)
	}
	if resp, body := g.console(http.MethodPost, "/console/", url.Values{"op": {"rotate"}, "id": {routineKeyID(t, g, "Nightly report scheduler")}, "grace": {"1h"}}, nil); resp.StatusCode != http.StatusCreated {
		t.Fatalf("rotating: %d %s", resp.StatusCode, body)
	}

	write := os.Getenv("KEYGATE_SCREENSHOTS") == "1"
	shot := func(ctx context.Context, name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		if write {
			if err := os.WriteFile(filepath.Join("..", "docs", name), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	ctx := newBrowser(t, 1280, 900)
	browserSignIn(t, ctx)
	browserDo(t, ctx,
		chromedp.Navigate(g.SiteURL+"/console/?status=all"),
		chromedp.WaitVisible(chromedp.CSS(`table`)),
	)
	// Requests of the last 24 hours in the list: the seeded day and the 3
	// made now.
	want := browserJS[string](t, ctx, `document.querySelector('tr[data-key-id="`+prodKey.ID+`"] .cell-requests .requests').textContent.trim()`)
	if want == "0" || want == "" {
		t.Errorf("the list shows %q requests in 24 h for the busy key", want)
	}

	// The filter: one click shows the keys nothing used in 30 days.
	browserDo(t, ctx, chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById("filter-unused"); s.value = "30d"; s.dispatchEvent(new Event("change", {bubbles: true})); })()`))
	browserWait(t, ctx, `location.search.includes("unused=30d")`)
	browserDo(t, ctx, chromedp.WaitVisible(chromedp.CSS(`#filter-unused`)))
	ids := browserRowIDs(t, ctx)
	if !slices.Contains(ids, idle.ID) || slices.Contains(ids, prodKey.ID) {
		t.Errorf("not used in 30 days: rows %v, want %s and not %s", ids, idle.ID, prodKey.ID)
	}

	// The chart, from the list's link.
	browserDo(t, ctx, chromedp.Navigate(g.SiteURL+"/console/?status=all"), chromedp.WaitVisible(chromedp.CSS(`table`)),
		chromedp.Click(chromedp.CSS(`tr[data-key-id="`+prodKey.ID+`"] .cell-requests a`)),
		chromedp.WaitVisible(chromedp.CSS(`svg.chart`)))
	bars := browserJS[int](t, ctx, `document.querySelectorAll("svg.chart rect").length`)
	if bars < 24 {
		t.Errorf("the chart has %d bars, want one or more per hour with requests", bars)
	}
	title := browserJS[string](t, ctx, `document.getElementById("chart-title").textContent`)
	desc := browserJS[string](t, ctx, `document.getElementById("chart-desc").textContent`)
	if !strings.Contains(title, "Production Backend") || !strings.Contains(desc, "admitted") || !strings.Contains(desc, "Rate limited") {
		t.Errorf("chart title %q, description %q", title, desc)
	}
	// What a screen reader is told: the SVG is one image named by them.
	if got := browserJS[string](t, ctx, `document.querySelector("svg.chart").getAttribute("role")`); got != "img" {
		t.Errorf("the chart's role = %q, want img", got)
	}
	browserDo(t, ctx, chromedp.Click(chromedp.CSS(`details.numbers summary`)), chromedp.WaitVisible(chromedp.CSS(`.usage-table`)))
	if rows := browserJS[int](t, ctx, `document.querySelectorAll(".usage-table tbody tr").length`); rows < 23 {
		t.Errorf("the table has %d rows, want a row per hour with requests", rows)
	}
	browserDo(t, ctx, chromedp.Click(chromedp.CSS(`details.numbers summary`)))
	noSideways(t, ctx, "usage view")
	lightFill := browserJS[string](t, ctx, `getComputedStyle(document.querySelector("svg.chart rect.r0")).fill`)
	lightBg := browserJS[string](t, ctx, `getComputedStyle(document.body).backgroundColor`)
	shot(ctx, "console-usage.png")

	// The dark scheme: a dark page, lighter bars, and text that contrasts.
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}}); err != nil {
		t.Fatal(err)
	}
	darkFill := browserJS[string](t, ctx, `getComputedStyle(document.querySelector("svg.chart rect.r0")).fill`)
	darkBg := browserJS[string](t, ctx, `getComputedStyle(document.body).backgroundColor`)
	axis := browserJS[string](t, ctx, `getComputedStyle(document.querySelector("svg.chart text.axis")).fill`)
	if darkFill == lightFill || darkBg == lightBg || darkBg != "rgb(17, 19, 24)" || axis == "rgb(93, 103, 119)" {
		t.Errorf("dark scheme: bars %s (light %s), page %s (light %s), axis %s; want other colours", darkFill, lightFill, darkBg, lightBg, axis)
	}
	shot(ctx, "console-usage-dark.png")
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}}}); err != nil {
		t.Fatal(err)
	}

	// The Activity view, from the page head.
	browserDo(t, ctx, chromedp.Navigate(g.SiteURL+"/console/"), chromedp.WaitVisible(chromedp.CSS(`table`)),
		chromedp.Click(chromedp.CSS(`.head-actions a[href="./?view=activity"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.activity-table`)))
	text := browserJS[string](t, ctx, `document.querySelector(".activity-table").innerText`)
	for _, w := range []string{"Edited", "Rotated", "Created", consoleUser, "metadata", "plan=enterprise", "new_key_id"} {
		if !strings.Contains(text, w) {
			t.Errorf("the Activity view lacks %q:\n%s", w, text)
		}
	}
	noSideways(t, ctx, "activity view")
	shot(ctx, "console-activity.png")
}

// routineKeyID returns the ID of the key named name.
func routineKeyID(t *testing.T, g *consoleGateway, name string) string {
	t.Helper()
	resp, body := g.Admin(http.MethodGet, "/apikeys?q="+url.QueryEscape(name), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("listing: %d %s", resp.StatusCode, body)
	}
	i := strings.Index(string(body), `"id":"`)
	if i < 0 {
		t.Fatalf("no key named %s: %s", name, body)
	}
	return string(body[i+6 : i+6+26])
}

// noSideways fails the test if the page is wider than the window.
func noSideways(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	if over := browserJS[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); over > 0 {
		t.Errorf("%s: the page is %dpx wider than the window", what, over)
	}
}
