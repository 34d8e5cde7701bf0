package console

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/humantime"
	"github.com/docana/keygate/internal/keyservice"
)

//go:embed templates
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	// join lists a key's allowed origins or IPs in a line.
	"join": func(list []string) string { return strings.Join(list, ", ") },
}).ParseFS(templateFS, "templates/*.html"))

// expiresSoon is how close to its expiry an active key is flagged.
const expiresSoon = 7 * 24 * time.Hour

// pageSize is how many keys a page of the list shows.
const pageSize = 50

// filter is what the list shows, as given in the page's query string: the
// filters, and where in the listing the page is.
type filter struct {
	Status string // "active" (the default), "expired", "revoked" or "all"
	Scope  string // "" for every scope, or a scope's name
	Query  string // a key ID, or text searched in names; "" for none
	// Owner keeps the keys of one owner (?owner=), in the operator's
	// console only: an owner's console shows its own keys whatever the
	// query string says. "" for every owner.
	Owner string
	// Unused (?unused=30d) keeps the keys not used in 30 days.
	Unused bool
	// Cursor (?cursor=) starts the page after a key: the older keys.
	// Before (?before=) ends it before one: the newer keys. At most one is
	// set, and only to a cursor that decodes (keyservice.DecodeCursor).
	Cursor, Before string
	// BadCursor is set when the query string held a cursor that does not
	// decode; the page then starts at the newest key.
	BadCursor bool
}

// parseFilter reads the filter from a page's query string. It never fails:
// an unknown status or scope falls back to the default, search text is
// cut to what the key service accepts (keyservice.MaxQueryLength
// characters of UTF-8 without control characters), and a cursor that does
// not decode is dropped, with BadCursor set.
func parseFilter(q url.Values) filter {
	f := filter{Status: "active"}
	switch s := q.Get("status"); s {
	case "active", "expired", "revoked", "all":
		f.Status = s
	}
	if _, err := apikey.ParseScope(q.Get("scope")); err == nil {
		f.Scope = q.Get("scope")
	}
	f.Query = cleanQuery(q.Get("q"))
	if o := strings.TrimSpace(q.Get("owner")); apikey.CheckOwner(o) == nil {
		f.Owner = o
	}
	f.Unused = q.Get("unused") == "30d"
	for _, c := range []struct {
		name string
		to   *string
	}{{"cursor", &f.Cursor}, {"before", &f.Before}} {
		v := q.Get(c.name)
		if v == "" || f.Cursor != "" {
			continue
		}
		if _, err := keyservice.DecodeCursor(v); err != nil {
			f.BadCursor = true
			continue
		}
		*c.to = v
	}
	return f
}

// cleanQuery makes search text from a URL acceptable to the key service:
// valid UTF-8, no control characters, no space around it, at most
// keyservice.MaxQueryLength characters.
func cleanQuery(q string) string {
	q = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, strings.ToValidUTF8(q, ""))
	q = strings.TrimSpace(q)
	if utf8.RuneCountInString(q) > keyservice.MaxQueryLength {
		q = strings.TrimSpace(string([]rune(q)[:keyservice.MaxQueryLength]))
	}
	return q
}

// values returns the filter's non-default settings as a query, with the
// page's position.
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
	if f.Owner != "" {
		v.Set("owner", f.Owner)
	}
	if f.Unused {
		v.Set("unused", "30d")
	}
	if f.Cursor != "" {
		v.Set("cursor", f.Cursor)
	}
	if f.Before != "" {
		v.Set("before", f.Before)
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

// at returns the filter at another position: after cursor, or before
// before; both empty is the first page.
func (f filter) at(cursor, before string) filter {
	f.Cursor, f.Before, f.BadCursor = cursor, before, false
	return f
}

// Active reports whether the filter hides anything beyond the default.
func (f filter) Active() bool {
	return f.Status != "active" || f.Scope != "" || f.Query != "" || f.Owner != "" || f.Unused
}

// options returns the key service's options for the filter's page.
func (f filter) options() keyservice.ListOptions {
	o := keyservice.ListOptions{Scope: f.Scope, Query: f.Query, Owner: f.Owner, Limit: pageSize, Cursor: f.Cursor, Before: f.Before}
	if f.Unused {
		o.NotUsedFor = notUsedFor
	}
	if f.Status != "all" {
		o.Status = f.Status
	}
	return o
}

// option is an entry of a filter's select.
type option struct {
	Value, Label string
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
	CanEdit     bool
	RevokeHref  string
	RotateHref  string
	EditHref    string
	// UsageHref links to the key's usage chart, ActivityHref to its
	// events; Requests24h is its requests of the last 24 hours.
	UsageHref, ActivityHref string
	Requests24h             int64
	// CreatedByLabel names who created the key: created_by's ID, or its
	// type when the ID is empty ("admin", "console", "system").
	CreatedByLabel string
	// MetadataText is the metadata as the edit dialog shows it: a
	// name=value line per entry, sorted by name.
	MetadataText string
	// MetadataList is the metadata sorted by name, for the table.
	MetadataList []metadataEntry
	// OriginsText and IPsText are the allowed origins and IPs as the edit
	// dialog shows them: one entry per line.
	OriginsText, IPsText string
	// RateLimitsText is the key's rate limits as the edit dialog shows
	// them: one per line.
	RateLimitsText string
}

// metadataEntry is an entry of a key's metadata.
type metadataEntry struct{ Name, Value string }

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
		// Only an active key that no rotation replaced yet can be
		// rotated: the store refuses the others (409).
		CanRotate:  v.Status == "active" && v.ReplacedBy == nil,
		RevokeHref: f.href("dialog", "revoke", "id", v.ID),
		RotateHref: f.href("dialog", "rotate", "id", v.ID),
		// A revoked key is done with: nothing about it changes any more.
		CanEdit:        v.Status != "revoked",
		EditHref:       f.href("dialog", "edit", "id", v.ID),
		CreatedByLabel: createdByLabel(k.CreatedBy),
		UsageHref:      "./?" + url.Values{"view": {"usage"}, "id": {v.ID}}.Encode(),
		ActivityHref:   "./?" + url.Values{"view": {"activity"}, "key": {v.ID}}.Encode(),
	}
	r.MetadataList = sortedMetadata(k.Metadata)
	r.MetadataText = formatMetadata(r.MetadataList)
	r.OriginsText, r.IPsText = formatLines(k.AllowedOrigins), formatLines(k.AllowedIPs)
	r.RateLimitsText = formatLines(k.RateLimits)
	r.ExpiresSoon = v.Status == "active" && v.ExpiresAt != nil && v.ExpiresAt.Sub(now) < expiresSoon
	return r
}

// createdByLabel is who created a key, as the list shows it.
func createdByLabel(a apikey.Actor) string {
	if a.ID != "" {
		return a.ID
	}
	return a.Type
}

func sortedMetadata(m map[string]string) []metadataEntry {
	list := make([]metadataEntry, 0, len(m))
	for name, value := range m {
		list = append(list, metadataEntry{name, value})
	}
	slices.SortFunc(list, func(a, b metadataEntry) int { return strings.Compare(a.Name, b.Name) })
	return list
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
	Open     bool
	Name     string
	Metadata string // name=value lines
	Origins  string // allowed origins, one per line
	IPs      string // allowed IPs, one per line
	// RateLimits are the key's rate limits, N/WINDOW, one per line.
	RateLimits string
	Errors     map[string]string // by field: name, scope, expires_in, metadata, allowed_origins, allowed_ips, rate_limits
	FormError  string            // an error of no field, such as the store failing
	Scopes     []scopeChoice
	Expiries   []expiryChoice
}

// secretDialog shows a new key's secret, once.
type secretDialog struct {
	Open     bool
	Secret   string
	Key      row
	Previous *row // set after a rotation
	// Warning is widgetOriginsWarning after creating a widget key
	// without allowed origins, else "".
	Warning string
}

// editDialog is the edit dialog, for one key: its name, metadata, allowed
// origins and allowed IPs.
type editDialog struct {
	Open     bool
	Key      row
	Name     string
	Metadata string // name=value lines
	Origins  string // allowed origins, one per line
	IPs      string // allowed IPs, one per line
	// RateLimits are the key's rate limits, N/WINDOW, one per line.
	RateLimits string
	Errors     map[string]string // by field: name, metadata, allowed_origins, allowed_ips, rate_limits
	FormError  string
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
	Assets *assetSet
	User   string
	// Owner is the owner whose console this is; "" for the operator's,
	// which shows an owner column and filter.
	Owner         string
	Filter        filter
	StatusOptions []option
	ScopeOptions  []option
	Rows          []row
	// NoKeys is set when the store holds no key at all, which the page
	// says differently from "no key matches".
	NoKeys bool
	// NewerHref and OlderHref link to the pages before and after this
	// one, with the same filter; "" when there is none.
	NewerHref, OlderHref string
	Action               string // where the dialogs' forms post: the page with its filter
	ClearHref            string
	CreateHref           string
	Notice               string
	Create               createDialog
	Secret               secretDialog
	Revoke               keyDialog
	Rotate               keyDialog
	Edit                 editDialog
}

// buildPage lists one page of keys, filtered in the store, and fills
// everything the page needs but the state of its dialogs. It reads at most
// pageSize+1 keys, and one more when the page is empty, to tell an empty
// store from a filter that matches nothing: no count of every key is
// made, so the filter options show none.
func (h *Handler) buildPage(ctx context.Context, sess session, f filter) (*pageData, error) {
	page, err := sess.svc.List(ctx, f.options())
	if err != nil {
		return nil, err
	}
	now := sess.svc.Now()
	d := &pageData{
		Assets:     h.assets,
		User:       sess.user,
		Owner:      sess.owner,
		Filter:     f,
		Action:     f.href(),
		ClearHref:  "./?status=all",
		CreateHref: f.href("dialog", "create"),
	}
	if page.Prev != "" {
		d.NewerHref = f.at("", page.Prev).href()
	}
	if page.Next != "" {
		d.OlderHref = f.at(page.Next, "").href()
	}
	for _, k := range page.Keys {
		d.Rows = append(d.Rows, newRow(k, now, f))
	}
	if len(d.Rows) > 0 {
		// One query for the whole page: every key's last 24 hours.
		usage, err := sess.svc.Usage(ctx, "", "24h")
		if err != nil {
			return nil, err
		}
		byKey := make(map[string]int64, len(usage))
		for _, u := range usage {
			byKey[u.KeyID] = u.OK + u.Refused
		}
		for i := range d.Rows {
			d.Rows[i].Requests24h = byKey[d.Rows[i].ID]
		}
	}
	if len(d.Rows) == 0 {
		if f.Cursor != "" || f.Before != "" {
			// A page past the end, say after the keys on it were
			// revoked while filtering active ones: offer the first.
			d.NewerHref = f.at("", "").href()
		}
		newest, err := sess.svc.List(ctx, keyservice.ListOptions{Limit: 1})
		if err != nil {
			return nil, err
		}
		d.NoKeys = len(newest.Keys) == 0
	}
	if f.BadCursor {
		d.Notice = "That page link is not valid any more: showing the newest keys."
	}
	for _, s := range []string{"active", "expired", "revoked", "all"} {
		label := statusLabels[s]
		if s == "all" {
			label = "All statuses"
		}
		d.StatusOptions = append(d.StatusOptions, option{Value: s, Label: label, Selected: f.Status == s})
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
func (h *Handler) servePage(w http.ResponseWriter, r *http.Request, sess session) {
	ctx, cancel := requestContext(r)
	defer cancel()
	q := r.URL.Query()
	switch q.Get("view") {
	case "usage":
		h.serveUsage(w, r, sess)
		return
	case "activity":
		h.serveActivity(w, r, sess)
		return
	}
	d, err := h.buildPage(ctx, sess, sess.filter(q))
	if err != nil {
		h.storeFailed(w, r, "list", err)
		return
	}
	status := http.StatusOK
	switch dialog := q.Get("dialog"); dialog {
	case "create":
		d.Create.Open = true
	case "revoke", "rotate", "edit":
		// The key need not be on this page: a link may be shared. In an
		// owner's console, another owner's key is not found, exactly like
		// a key that does not exist.
		key, err := sess.svc.Get(ctx, q.Get("id"))
		if status, _, _ := serviceAnswer(err, ""); err != nil && status == http.StatusServiceUnavailable {
			h.storeFailed(w, r, "get", err)
			return
		}
		k := newRow(key, sess.svc.Now(), d.Filter)
		switch {
		case err != nil:
			status = http.StatusNotFound
			d.Notice = "There is no key with that ID."
		case dialog == "revoke" && k.CanRevoke:
			d.Revoke.Open, d.Revoke.Key = true, k
		case dialog == "rotate" && k.CanRotate:
			d.Rotate.Open, d.Rotate.Key = true, k
		case dialog == "edit" && k.CanEdit:
			d.Edit = editDialog{Open: true, Key: k, Name: k.Name, Metadata: k.MetadataText, Origins: k.OriginsText, IPs: k.IPsText, RateLimits: k.RateLimitsText}
		case k.Status == "revoked":
			d.Notice = fmt.Sprintf("Key %q is revoked: it cannot be changed any more.", k.Name)
		case k.ReplacedBy != nil:
			d.Notice = fmt.Sprintf("Key %q was already replaced by %s: rotate that key instead.", k.Name, *k.ReplacedBy)
		default:
			d.Notice = fmt.Sprintf("Key %q has expired: it cannot be rotated. Create a new key instead.", k.Name)
		}
	}
	h.render(w, r, status, "page.html", d)
}

// filter reads the list's filter from a query string. An owner's console
// drops an owner filter: it lists its owner's keys only, and the key
// service it uses is bound to them anyway.
func (sess session) filter(q url.Values) filter {
	f := parseFilter(q)
	if sess.owner != "" {
		f.Owner = ""
	}
	return f
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
