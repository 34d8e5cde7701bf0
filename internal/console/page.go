package console

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/humantime"
	"github.com/docana/keygate/internal/keyservice"
)

//go:embed templates
var templateFS embed.FS

var templates = template.Must(template.New("").ParseFS(templateFS, "templates/*.html"))

// expiresSoon is how close to its expiry an active key is flagged.
const expiresSoon = 7 * 24 * time.Hour

// maxQuery bounds the search text taken from a URL.
const maxQuery = 200

// filter is what the list shows, as given in the page's query string.
type filter struct {
	Status string // "active" (the default), "expired", "revoked" or "all"
	Scope  string // "" for every scope, or a scope's name
	Query  string // text searched in names and IDs; "" for none
}

func parseFilter(q url.Values) filter {
	f := filter{Status: "active"}
	switch s := q.Get("status"); s {
	case "active", "expired", "revoked", "all":
		f.Status = s
	}
	if _, err := apikey.ParseScope(q.Get("scope")); err == nil {
		f.Scope = q.Get("scope")
	}
	f.Query = strings.TrimSpace(q.Get("q"))
	if len(f.Query) > maxQuery {
		f.Query = strings.ToValidUTF8(f.Query[:maxQuery], "")
	}
	return f
}

// values returns the filter's non-default settings as a query.
func (f filter) values() url.Values {
	v := url.Values{}
	if f.Status != "active" {
		v.Set("status", f.Status)
	}
	if f.Scope != "" {
		v.Set("scope", f.Scope)
	}
	if f.Query != "" {
		v.Set("q", f.Query)
	}
	return v
}

// href returns the page's URL, relative to the page, with the filter and
// the extra parameters (name, value pairs).
func (f filter) href(extra ...string) string {
	v := f.values()
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	if len(v) == 0 {
		return "./"
	}
	return "./?" + v.Encode()
}

// Active reports whether the filter hides anything beyond the default.
func (f filter) Active() bool { return f.Status != "active" || f.Scope != "" || f.Query != "" }

// matches reports whether k, shown as v, passes the filter.
func (f filter) matches(v keyservice.KeyJSON) bool {
	if f.Status != "all" && v.Status != f.Status {
		return false
	}
	if f.Scope != "" && v.Scope != f.Scope {
		return false
	}
	if f.Query != "" {
		q := strings.ToLower(f.Query)
		if !strings.Contains(strings.ToLower(v.Name), q) && !strings.Contains(strings.ToLower(v.ID), q) {
			return false
		}
	}
	return true
}

// option is an entry of a filter's select.
type option struct {
	Value, Label string
	Count        int
	Selected     bool
}

// timeView is a time as the page shows it: relative, with the absolute UTC
// time in a tooltip and a machine-readable datetime.
type timeView struct {
	Set      bool
	Relative string // "2 hours ago", "in 3 days"
	Absolute string // "2026-11-25 19:52 UTC"
	ISO      string // RFC 3339
}

func viewTime(t *time.Time, now time.Time) timeView {
	if t == nil {
		return timeView{}
	}
	return timeView{
		Set:      true,
		Relative: humantime.Relative(*t, now),
		Absolute: absolute(*t),
		ISO:      t.UTC().Format(time.RFC3339),
	}
}

func absolute(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// row is a key as a line of the table.
type row struct {
	keyservice.KeyJSON
	ScopeLabel  string
	StatusLabel string
	ExpiresSoon bool
	Created     timeView
	LastUsed    timeView
	Expires     timeView
	Revoked     timeView
	CanRevoke   bool
	CanRotate   bool
	RevokeHref  string
	RotateHref  string
}

func newRow(k apikey.Key, now time.Time, f filter) row {
	v := keyservice.View(k, now)
	r := row{
		KeyJSON:     v,
		ScopeLabel:  scopeLabels[v.Scope],
		StatusLabel: statusLabels[v.Status],
		Created:     viewTime(&v.CreatedAt, now),
		LastUsed:    viewTime(v.LastUsedAt, now),
		Expires:     viewTime(v.ExpiresAt, now),
		Revoked:     viewTime(v.RevokedAt, now),
		CanRevoke:   v.Status != "revoked",
		CanRotate:   v.Status != "revoked",
		RevokeHref:  f.href("dialog", "revoke", "id", v.ID),
		RotateHref:  f.href("dialog", "rotate", "id", v.ID),
	}
	r.ExpiresSoon = v.Status == "active" && v.ExpiresAt != nil && v.ExpiresAt.Sub(now) < expiresSoon
	return r
}

var scopeLabels = map[string]string{"full": "Full", "widget": "Widget", "routine": "Routine"}

var statusLabels = map[string]string{"active": "Active", "expired": "Expired", "revoked": "Revoked"}

// scopeChoice is a scope in the create dialog.
type scopeChoice struct {
	Value, Label, Help string
	Checked            bool
}

var scopeHelp = map[string]string{
	"full":    "All endpoints. For your own servers and back-end jobs.",
	"widget":  "Widget chat, history and archive only. For a web widget running in browsers.",
	"routine": "Triggering routines only. For schedulers such as cron or CI.",
}

// expiryChoice is an expiration preset in the create dialog, with the date
// a key created now would expire.
type expiryChoice struct {
	Value, Label string
	Expires      string // "Expires 2026-12-25 19:52 UTC (in 1 month)"
	Never        bool
	Checked      bool
}

var expiryLabels = map[apikey.Expiry]string{
	apikey.ExpiryHour:  "1 hour",
	apikey.ExpiryDay:   "1 day",
	apikey.ExpiryWeek:  "1 week",
	apikey.ExpiryMonth: "1 month",
	apikey.ExpiryYear:  "1 year",
	apikey.ExpiryNever: "Never",
}

// graceChoice is a grace period in the rotate dialog.
type graceChoice struct {
	Value, Label, Help string
	Checked            bool
}

var graceChoices = []graceChoice{
	{Value: "0s", Label: "Now", Help: "The current key stops working at once."},
	{Value: "1h", Label: "1 hour", Help: "The current key keeps working for 1 hour."},
	{Value: "24h", Label: "24 hours", Help: "The current key keeps working for 24 hours.", Checked: true},
	{Value: "168h", Label: "7 days", Help: "The current key keeps working for 7 days."},
}

// Defaults of the create dialog.
const (
	defaultScope  = "full"
	defaultExpiry = apikey.ExpiryYear
)

// createDialog is the state of the create dialog.
type createDialog struct {
	Open      bool
	Name      string
	Errors    map[string]string // by field: name, scope, expires_in
	FormError string            // an error of no field, such as the store failing
	Scopes    []scopeChoice
	Expiries  []expiryChoice
}

// secretDialog shows a new key's secret, once.
type secretDialog struct {
	Open     bool
	Secret   string
	Key      row
	Previous *row // set after a rotation
}

// keyDialog is the revoke or rotate dialog, for one key.
type keyDialog struct {
	Open   bool
	Key    row
	Error  string
	Graces []graceChoice
}

// pageData is everything the page template shows.
type pageData struct {
	Assets        *assetSet
	User          string
	Filter        filter
	StatusOptions []option
	ScopeOptions  []option
	Rows          []row
	TotalKeys     int
	Action        string // where the dialogs' forms post: the page with its filter
	ClearHref     string
	CreateHref    string
	Notice        string
	Create        createDialog
	Secret        secretDialog
	Revoke        keyDialog
	Rotate        keyDialog

	byID map[string]row
}

// buildPage lists the keys and fills everything the page needs but the
// state of its dialogs.
func (h *Handler) buildPage(ctx context.Context, user string, f filter) (*pageData, error) {
	keys, err := h.svc.List(ctx, "")
	if err != nil {
		return nil, err
	}
	now := h.svc.Now()
	d := &pageData{
		Assets:     h.assets,
		User:       user,
		Filter:     f,
		TotalKeys:  len(keys),
		Action:     f.href(),
		ClearHref:  "./?status=all",
		CreateHref: f.href("dialog", "create"),
		byID:       make(map[string]row, len(keys)),
	}
	counts := map[string]int{}
	for _, k := range keys {
		r := newRow(k, now, f)
		d.byID[r.ID] = r
		counts[r.Status]++
		if f.matches(r.KeyJSON) {
			d.Rows = append(d.Rows, r)
		}
	}
	counts["all"] = len(keys)
	for _, s := range []string{"active", "expired", "revoked", "all"} {
		label := statusLabels[s]
		if s == "all" {
			label = "All statuses"
		}
		d.StatusOptions = append(d.StatusOptions, option{Value: s, Label: label, Count: counts[s], Selected: f.Status == s})
	}
	d.ScopeOptions = append(d.ScopeOptions, option{Value: "", Label: "All scopes", Selected: f.Scope == ""})
	for _, s := range apikey.Scopes {
		d.ScopeOptions = append(d.ScopeOptions, option{Value: s.String(), Label: scopeLabels[s.String()], Selected: f.Scope == s.String()})
	}
	d.Create = h.newCreateDialog(now, "", defaultScope, string(defaultExpiry))
	d.Revoke = keyDialog{}
	d.Rotate = keyDialog{Graces: graceChoices}
	return d, nil
}

func (h *Handler) newCreateDialog(now time.Time, name, scope, expiresIn string) createDialog {
	c := createDialog{Name: name}
	for _, s := range apikey.Scopes {
		v := s.String()
		c.Scopes = append(c.Scopes, scopeChoice{Value: v, Label: scopeLabels[v], Help: scopeHelp[v], Checked: v == scope})
	}
	for _, e := range apikey.Expiries {
		ch := expiryChoice{Value: string(e), Label: expiryLabels[e], Checked: string(e) == expiresIn}
		if e == apikey.ExpiryNever {
			ch.Never = true
			ch.Expires = "Never expires"
		} else {
			at := e.ExpiresAt(now)
			ch.Expires = "Expires " + absolute(at) + " (" + humantime.Relative(at, now) + ")"
		}
		c.Expiries = append(c.Expiries, ch)
	}
	return c
}

// servePage answers GET: the list, with a dialog open if ?dialog= asks.
// Nothing a GET asks for changes a key.
func (h *Handler) servePage(w http.ResponseWriter, r *http.Request, user string) {
	ctx, cancel := requestContext(r)
	defer cancel()
	q := r.URL.Query()
	d, err := h.buildPage(ctx, user, parseFilter(q))
	if err != nil {
		h.storeFailed(w, r, "list", err)
		return
	}
	switch q.Get("dialog") {
	case "create":
		d.Create.Open = true
	case "revoke", "rotate":
		k, ok := d.byID[q.Get("id")]
		switch {
		case !ok:
			d.Notice = "There is no key with that ID."
		case q.Get("dialog") == "revoke" && k.CanRevoke:
			d.Revoke.Open, d.Revoke.Key = true, k
		case q.Get("dialog") == "rotate" && k.CanRotate:
			d.Rotate.Open, d.Rotate.Key = true, k
		default:
			d.Notice = fmt.Sprintf("Key %q is revoked: it cannot be changed any more.", k.Name)
		}
	}
	h.render(w, r, http.StatusOK, "page.html", d)
}

// messagePage is a page with a title and a few paragraphs: 403, 404 and
// other refusals.
type messagePage struct {
	Assets  *assetSet
	Title   string
	Lines   []string
	Example string // a Caddyfile snippet, shown as code
}

func (h *Handler) renderMessage(w http.ResponseWriter, r *http.Request, status int, m messagePage) {
	if wantsJSON(r) {
		writeJSONError(w, status, "", strings.Join(m.Lines, " "))
		return
	}
	m.Assets = h.assets
	h.render(w, r, status, "message.html", m)
}

// render executes a template into a buffer first, so that a template error
// becomes a 500 instead of half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := templates.ExecuteTemplate(&buf, name, data); err != nil {
		h.logger.Error("rendering console page", zap.String("template", name), zap.Error(err))
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	// Pages show key metadata and, once, a secret: never kept by a cache.
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}
