package console

import (
	"fmt"
	"html"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

// notUsedFor is the console's "not used in 30 days" filter: the seed's
// advice to look for keys that nothing uses any more.
const notUsedFor = 30 * 24 * time.Hour

// usageRange is a range the usage view offers: how far back, at which
// step.
type usageRange struct {
	Value, Label, Since, Step string
}

var usageRanges = []usageRange{
	{"24h", "Last 24 hours", "24h", "1h"},
	{"7d", "Last 7 days", "7d", "1h"},
	{"30d", "Last 30 days", "30d", "1d"},
	{"90d", "Last 90 days", "90d", "1d"},
}

// resultLabels name the results of usage as people read them, in the
// order of the chart's stack (admitted first).
var resultLabels = []struct{ Result, Label string }{
	{"ok", "Admitted"},
	{"rate_limited", "Rate limited"},
	{"insufficient_scope", "Wrong scope"},
	{"owner_mismatch", "Wrong owner"},
	{"ip_not_allowed", "IP not allowed"},
	{"origin_not_allowed", "Origin not allowed"},
	{"api_key_revoked", "Revoked"},
	{"api_key_expired", "Expired"},
}

// resultIndex returns the place of a result in resultLabels, the last
// one's for a result the console does not know.
func resultIndex(result string) int {
	for i, r := range resultLabels {
		if r.Result == result {
			return i
		}
	}
	return len(resultLabels) - 1
}

// usagePage is the usage view of one key.
type usagePage struct {
	Assets    *assetSet
	User      string
	Owner     string
	Key       row
	Ranges    []option
	Range     usageRange
	Chart     template.HTML
	Legend    []legendEntry
	Total     int64
	Admitted  int64
	Refused   int64
	Rows      []usageRow
	BackHref  string
	ActHref   string
	StepLabel string
}

type legendEntry struct {
	Class, Label string
	N            int64
}

// usageRow is a step of the table that repeats the chart in text.
type usageRow struct {
	Start   string
	OK      int64
	Refused int64
	Reasons string
}

// serveUsage answers GET ?view=usage&id=ID[&range=24h|7d|30d|90d]: a
// chart of the key's requests by result, with the same numbers as a
// table.
func (h *Handler) serveUsage(w http.ResponseWriter, r *http.Request, sess session) {
	ctx, cancel := requestContext(r)
	defer cancel()
	q := r.URL.Query()
	rg := usageRanges[0]
	for _, c := range usageRanges {
		if q.Get("range") == c.Value {
			rg = c
		}
	}
	id := q.Get("id")
	k, err := sess.svc.Get(ctx, id)
	if err == nil {
		var series keyservice.UsageSeries
		series, err = sess.svc.KeyUsage(ctx, id, rg.Since, rg.Step)
		if err == nil {
			h.render(w, r, http.StatusOK, "usage.html", h.newUsagePage(sess, k, rg, series))
			return
		}
	}
	if status, _, _ := serviceAnswer(err, ""); status == http.StatusServiceUnavailable {
		h.storeFailed(w, r, "usage", err)
		return
	}
	// In an owner's console, another owner's key is not found, exactly
	// like a key that does not exist.
	h.renderMessage(w, r, http.StatusNotFound, messagePage{
		Title: "No such key",
		Lines: []string{"There is no key with that ID."},
	})
}

func (h *Handler) newUsagePage(sess session, k apikey.Key, rg usageRange, s keyservice.UsageSeries) *usagePage {
	now := sess.svc.Now()
	p := &usagePage{
		Assets: h.assets, User: sess.user, Owner: sess.owner,
		Key: newRow(k, now, filter{Status: "active"}), Range: rg,
		BackHref: "./", ActHref: "./?" + url.Values{"view": {"activity"}, "key": {k.ID}}.Encode(),
		StepLabel: map[string]string{"1h": "hour", "1d": "day"}[rg.Step],
	}
	for _, c := range usageRanges {
		p.Ranges = append(p.Ranges, option{Value: "./?" + url.Values{"view": {"usage"}, "id": {k.ID}, "range": {c.Value}}.Encode(), Label: c.Label, Selected: c == rg})
	}
	byResult := map[string]int64{}
	layout := "Jan 2 15:04"
	if rg.Step == "1d" {
		layout = "Jan 2"
	}
	for i := len(s.Points) - 1; i >= 0; i-- {
		pt := s.Points[i]
		p.Admitted += pt.OK
		byResult["ok"] += pt.OK
		var refused int64
		for res, n := range pt.Refused {
			refused += n
			byResult[res] += n
		}
		p.Refused += refused
		if pt.OK+refused > 0 {
			p.Rows = append(p.Rows, usageRow{Start: pt.Start.UTC().Format(layout), OK: pt.OK, Refused: refused, Reasons: reasonText(pt.Refused)})
		}
	}
	p.Total = p.Admitted + p.Refused
	for i, rl := range resultLabels {
		if byResult[rl.Result] > 0 || i == 0 {
			p.Legend = append(p.Legend, legendEntry{Class: fmt.Sprintf("r%d", i), Label: rl.Label, N: byResult[rl.Result]})
		}
	}
	p.Chart = usageChart(k, rg, s, p, layout)
	return p
}

// reasonText words refusals by reason, most first: "Rate limited 3, IP
// not allowed 1".
func reasonText(refused map[string]int64) string {
	names := slices.Collect(maps.Keys(refused))
	slices.SortFunc(names, func(a, b string) int {
		if refused[a] != refused[b] {
			return int(refused[b] - refused[a])
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, len(names))
	for _, n := range names {
		if refused[n] > 0 {
			parts = append(parts, resultLabels[resultIndex(n)].Label+" "+strconv.FormatInt(refused[n], 10))
		}
	}
	return strings.Join(parts, ", ")
}

// Chart geometry, in SVG user units; the SVG scales to its box.
const (
	chartW, chartH = 960, 280
	padL, padR     = 56, 44
	padT, padB     = 12, 40
)

// usageChart draws the series as stacked bars, one per step, one colour
// per result (classes r0..r7, coloured by the stylesheet for light and
// dark schemes), with a <title> and a <desc> that say in words what the
// chart shows. Every value it writes is a number or escaped text.
func usageChart(k apikey.Key, rg usageRange, s keyservice.UsageSeries, p *usagePage, layout string) template.HTML {
	var most int64
	for _, pt := range s.Points {
		most = max(most, pt.Total())
	}
	top := niceCeil(most)
	var b strings.Builder
	title := fmt.Sprintf("Requests of key %s per %s, %s", k.Name, p.StepLabel, strings.ToLower(rg.Label))
	desc := fmt.Sprintf("%d requests: %d admitted, %d refused.", p.Total, p.Admitted, p.Refused)
	if p.Refused > 0 {
		all := map[string]int64{}
		for _, pt := range s.Points {
			for r, n := range pt.Refused {
				all[r] += n
			}
		}
		desc += " Refused: " + reasonText(all) + "."
	}
	if most > 0 {
		for _, pt := range s.Points {
			if pt.Total() == most {
				desc += fmt.Sprintf(" Busiest %s: %s UTC, %d requests.", p.StepLabel, pt.Start.UTC().Format(layout), most)
				break
			}
		}
	}
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title chart-desc" preserveAspectRatio="none">`, chartW, chartH)
	fmt.Fprintf(&b, `<title id="chart-title">%s</title><desc id="chart-desc">%s</desc>`, html.EscapeString(title), html.EscapeString(desc))
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	// Grid lines and y labels: 0, half, top.
	for _, f := range []float64{0, .5, 1} {
		y := float64(padT) + plotH*(1-f)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padL, chartW-padR, y, y)
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%.1f" text-anchor="end">%d</text>`, padL-8, y+4, int64(f*float64(top)))
	}
	n := len(s.Points)
	if n == 0 {
		b.WriteString(`</svg>`)
		return template.HTML(b.String())
	}
	slot := plotW / float64(n)
	barW := max(slot*0.78, 1)
	labelEvery := max(1, (n+7)/8)
	for i, pt := range s.Points {
		x := float64(padL) + slot*float64(i) + (slot-barW)/2
		y := float64(padT) + plotH
		for ri, rl := range resultLabels {
			v := pt.Refused[rl.Result]
			if rl.Result == "ok" {
				v = pt.OK
			}
			if v <= 0 || top == 0 {
				continue
			}
			hgt := plotH * float64(v) / float64(top)
			y -= hgt
			fmt.Fprintf(&b, `<rect class="r%d" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s UTC: %s %d</title></rect>`,
				ri, x, y, barW, hgt, html.EscapeString(pt.Start.UTC().Format(layout)), html.EscapeString(rl.Label), v)
		}
		if i%labelEvery == 0 {
			fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="middle">%s</text>`, x+barW/2, chartH-padB+18, html.EscapeString(pt.Start.UTC().Format(layout)))
		}
	}
	fmt.Fprintf(&b, `<line class="baseline" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padL, chartW-padR, float64(padT)+plotH, float64(padT)+plotH)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten (at least 1), so
// that the axis labels read easily.
func niceCeil(n int64) int64 {
	if n <= 1 {
		return 1
	}
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
	}
}

// activityPage is the Activity view: the audit log, scoped to the
// console's owner.
type activityPage struct {
	Assets    *assetSet
	User      string
	Owner     string
	KeyID     string
	Events    []eventRow
	OlderHref string
	BackHref  string
	AllHref   string
}

// eventRow is an event as a line of the Activity view.
type eventRow struct {
	At        timeView
	Action    string
	KeyID     string
	UsageHref string
	Actor     string
	ActorType string
	From      string
	Changes   []string
}

var actionLabels = map[string]string{
	keystore.ActionCreated:      "Created",
	keystore.ActionUpdated:      "Edited",
	keystore.ActionRotated:      "Rotated",
	keystore.ActionRevoked:      "Revoked",
	keystore.ActionLeakReported: "Leak reported",
}

// serveActivity answers GET ?view=activity[&key=ID][&cursor=C]: the audit
// log, newest first, 50 events a page.
func (h *Handler) serveActivity(w http.ResponseWriter, r *http.Request, sess session) {
	ctx, cancel := requestContext(r)
	defer cancel()
	q := r.URL.Query()
	opts := keyservice.AuditOptions{Limit: pageSize, Cursor: q.Get("cursor")}
	if id := q.Get("key"); apikey.ValidID(id) {
		opts.KeyID = id
	}
	page, err := sess.svc.Audit(ctx, opts)
	if err != nil {
		if status, _, _ := serviceAnswer(err, ""); status == http.StatusServiceUnavailable {
			h.storeFailed(w, r, "audit", err)
			return
		}
		// A cursor that does not read: start at the newest event.
		opts.Cursor = ""
		if page, err = sess.svc.Audit(ctx, opts); err != nil {
			h.storeFailed(w, r, "audit", err)
			return
		}
	}
	now := sess.svc.Now()
	d := &activityPage{Assets: h.assets, User: sess.user, Owner: sess.owner, KeyID: opts.KeyID, BackHref: "./", AllHref: "./?view=activity"}
	for _, e := range page.Events {
		at := e.At
		row := eventRow{
			At:        viewTime(&at, now),
			Action:    actionLabels[e.Action],
			KeyID:     e.KeyID,
			UsageHref: "./?" + url.Values{"view": {"usage"}, "id": {e.KeyID}}.Encode(),
			Actor:     e.Actor.ID,
			ActorType: e.Actor.Type,
			From:      e.RemoteIP,
		}
		if row.Action == "" {
			row.Action = e.Action
		}
		if row.Actor == "" {
			row.Actor = map[string]string{"system": "keygate", "admin": "admin API", "console": "console"}[e.Actor.Type]
		}
		for _, name := range slices.Sorted(maps.Keys(e.Changes)) {
			if e.Action == keystore.ActionCreated {
				break
			}
			c := e.Changes[name]
			row.Changes = append(row.Changes, fmt.Sprintf("%s: %s → %s", name, changeValue(c[0]), changeValue(c[1])))
		}
		for _, name := range slices.Sorted(maps.Keys(e.Details)) {
			row.Changes = append(row.Changes, name+": "+e.Details[name])
		}
		d.Events = append(d.Events, row)
	}
	if page.Next != "" {
		v := url.Values{"view": {"activity"}, "cursor": {page.Next}}
		if opts.KeyID != "" {
			v.Set("key", opts.KeyID)
		}
		d.OlderHref = "./?" + v.Encode()
	}
	h.render(w, r, http.StatusOK, "activity.html", d)
}

// changeValue words a value of a change for the Activity view.
func changeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "none"
	case string:
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return absolute(t)
		}
		return strconv.Quote(v)
	case []any:
		if len(v) == 0 {
			return "none"
		}
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = fmt.Sprint(e)
		}
		return strings.Join(parts, ", ")
	case map[string]any:
		if len(v) == 0 {
			return "none"
		}
		parts := make([]string, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			parts = append(parts, fmt.Sprintf("%s=%v", k, v[k]))
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprint(v)
}
