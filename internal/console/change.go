package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/policy"
)

// serveChange answers POST: op=create (name, scope, expires_in, metadata,
// allowed_origins, allowed_ips), op=update (id, name, metadata,
// allowed_origins, allowed_ips), op=revoke (id) or op=rotate (id, grace).
// No operation reads an owner from the form: an owner's console takes it
// from its configuration only (session.svc is bound to it), and the
// operator's console creates keys without one. The page's script asks for JSON;
// a plain form post gets the page back with the outcome, and a secret only
// ever travels in the body of this one response, marked no-store.
func (h *Handler) serveChange(w http.ResponseWriter, r *http.Request, sess session) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.badRequest(w, r, "the form could not be read: "+err.Error())
		return
	}
	// Only the body counts: the query string holds the list's filter, so
	// that a page rendered after the change shows the same list.
	switch op := r.PostForm.Get("op"); op {
	case "create":
		h.create(w, r, sess)
	case "revoke":
		h.revoke(w, r, sess)
	case "rotate":
		h.rotate(w, r, sess)
	case "update":
		h.update(w, r, sess)
	default:
		h.badRequest(w, r, fmt.Sprintf("unknown operation %s: want create, update, revoke or rotate", apikey.QuoteInput(op)))
	}
}

// createdJSON is the answer to a create or a rotation.
type createdJSON struct {
	Secret   string              `json:"secret"`
	APIKey   keyservice.KeyJSON  `json:"api_key"`
	Previous *keyservice.KeyJSON `json:"previous,omitempty"`
	Display  map[string]string   `json:"display"`
	// Propagation says in words where the change is in force
	// (keyservice.Propagation.Describe); "" when unknown.
	Propagation string `json:"propagation_text"`
}

// confirm waits for the instances to apply the change just made and
// returns the key's view with its propagation, and the words for it. If
// the registry cannot be read, the change is answered without them.
func (h *Handler) confirm(ctx context.Context, sess session, k apikey.Key, done string) (keyservice.KeyJSON, string) {
	v := keyservice.View(k, sess.svc.Now())
	p, err := sess.svc.Confirm(ctx)
	if err != nil {
		h.logger.Warn("console could not confirm a change on every instance", zap.String("key_id", k.ID), zap.Error(err))
		return v, ""
	}
	v.Propagation = &p
	return v, p.Describe(done)
}

// withSentence appends sentence to notice, if any.
func withSentence(notice, sentence string) string {
	if sentence == "" {
		return notice
	}
	return notice + " " + sentence
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request, sess session) {
	ctx, cancel := requestContext(r)
	defer cancel()
	name, scope, expiresIn := r.PostForm.Get("name"), r.PostForm.Get("scope"), r.PostForm.Get("expires_in")
	metaText := r.PostForm.Get("metadata")
	originsText, ipsText := r.PostForm.Get("allowed_origins"), r.PostForm.Get("allowed_ips")
	limitsText := r.PostForm.Get("rate_limits")
	meta, err := parseMetadata(metaText)
	var origins, ips, limits []string
	if err == nil {
		origins, err = parseLines(originsText, "allowed_origins", policy.NormalizeOrigin)
	}
	if err == nil {
		ips, err = parseLines(ipsText, "allowed_ips", policy.NormalizeIP)
	}
	if err == nil {
		limits, err = parseLimits(limitsText)
	}
	var secret string
	var k apikey.Key
	if err == nil {
		nk := keyservice.NewKey{
			Name: name, Scope: scope, ExpiresIn: expiresIn,
			CreatedBy: apikey.Actor{Type: apikey.ActorConsole, ID: apikey.FitActorID(sess.user)},
		}
		if len(meta) > 0 {
			nk.Metadata = meta
		}
		if len(origins) > 0 {
			nk.AllowedOrigins = origins
		}
		if len(ips) > 0 {
			nk.AllowedIPs = ips
		}
		if len(limits) > 0 {
			nk.RateLimits = limits
		}
		// Owner stays "": an owner's service sets its own.
		secret, k, err = sess.svc.Create(ctx, nk)
	}
	if err != nil {
		if _, input := errors.AsType[*keyservice.InputError](err); !input {
			h.logger.Error("console could not create an api key", sess.who(r), zap.Error(err))
		}
		status, field, msg := serviceAnswer(err, "")
		if wantsJSON(r) {
			writeJSONError(w, status, field, msg)
			return
		}
		d, perr := h.buildPage(ctx, sess, sess.filter(r.URL.Query()))
		if perr != nil {
			h.storeFailed(w, r, "list", perr)
			return
		}
		d.Create = h.newCreateDialog(sess.svc.Now(), name, scope, expiresIn)
		d.Create.Metadata, d.Create.Origins, d.Create.IPs, d.Create.RateLimits = metaText, originsText, ipsText, limitsText
		d.Create.Open = true
		if field != "" {
			d.Create.Errors = map[string]string{field: msg}
		} else {
			d.Create.FormError = "The key could not be created. " + msg
		}
		h.render(w, r, status, "page.html", d)
		return
	}
	h.logger.Info("api key created",
		sess.who(r), zap.String("action", "create"), zap.String("key_id", k.ID),
		zap.String("scope", k.Scope.String()), zap.String("expires_in", string(k.Expiry)))
	now := sess.svc.Now()
	kj, words := h.confirm(ctx, sess, k, "Created")
	if wantsJSON(r) {
		v := newRow(k, now, filter{})
		v.KeyJSON.Propagation = kj.Propagation
		disp := display(v)
		disp["origins_warning"] = originsWarning(k)
		writeJSON(w, http.StatusCreated, createdJSON{Secret: secret, APIKey: v.KeyJSON, Display: disp, Propagation: words})
		return
	}
	h.renderSecret(w, r, sess, secret, k, nil, withSentence(fmt.Sprintf("Key %q created.", k.Name), words))
}

// update changes a key's name, metadata, allowed origins and allowed IPs.
// The edit dialog always sends every field, with their current values:
// the metadata and lists given replace the key's whole (an empty text
// clears one).
func (h *Handler) update(w http.ResponseWriter, r *http.Request, sess session) {
	ctx, cancel := requestContext(r)
	defer cancel()
	id, name, metaText := r.PostForm.Get("id"), r.PostForm.Get("name"), r.PostForm.Get("metadata")
	originsText, ipsText := r.PostForm.Get("allowed_origins"), r.PostForm.Get("allowed_ips")
	meta, err := parseMetadata(metaText)
	u := keyservice.KeyUpdate{Name: &name, Metadata: &meta}
	// A form without the lists' fields (one older than them) leaves the
	// lists as they are; the edit dialog always sends both.
	for _, l := range []struct {
		field string
		parse func(string) ([]string, error)
		to    **[]string
	}{
		{"allowed_origins", func(s string) ([]string, error) { return parseLines(s, "allowed_origins", policy.NormalizeOrigin) }, &u.AllowedOrigins},
		{"allowed_ips", func(s string) ([]string, error) { return parseLines(s, "allowed_ips", policy.NormalizeIP) }, &u.AllowedIPs},
		{"rate_limits", parseLimits, &u.RateLimits},
	} {
		if err != nil || !r.PostForm.Has(l.field) {
			continue
		}
		var list []string
		if list, err = l.parse(r.PostForm.Get(l.field)); err == nil {
			*l.to = &list
		}
	}
	var k apikey.Key
	if err == nil {
		k, err = sess.svc.Update(ctx, id, u)
	}
	if err != nil {
		status, field, msg := serviceAnswer(err, id)
		if status == http.StatusServiceUnavailable {
			h.logger.Error("console could not change an api key", sess.who(r), zap.String("action", "update"), zap.String("key_id", id), zap.Error(err))
		}
		if errors.Is(err, keystore.ErrRevoked) {
			// The service's message speaks of rotation.
			msg = "This key is revoked: a revoked key cannot be changed."
		}
		if wantsJSON(r) {
			writeJSONError(w, status, field, msg)
			return
		}
		d, perr := h.buildPage(ctx, sess, sess.filter(r.URL.Query()))
		if perr != nil {
			h.storeFailed(w, r, "list", perr)
			return
		}
		if status == http.StatusBadRequest && field != "id" {
			// Show the dialog again with what was typed, for the key as
			// the console may show it.
			if cur, gerr := sess.svc.Get(ctx, id); gerr == nil {
				d.Edit = editDialog{Open: true, Key: newRow(cur, sess.svc.Now(), d.Filter), Name: name, Metadata: metaText, Origins: originsText, IPs: ipsText,
					RateLimits: r.PostForm.Get("rate_limits")}
				if !r.PostForm.Has("allowed_origins") {
					d.Edit.Origins = d.Edit.Key.OriginsText
				}
				if !r.PostForm.Has("allowed_ips") {
					d.Edit.IPs = d.Edit.Key.IPsText
				}
				if !r.PostForm.Has("rate_limits") {
					d.Edit.RateLimits = d.Edit.Key.RateLimitsText
				}
				if field != "" {
					d.Edit.Errors = map[string]string{field: msg}
				} else {
					d.Edit.FormError = "The key could not be changed. " + msg
				}
				h.render(w, r, status, "page.html", d)
				return
			}
		}
		d.Notice = "The key could not be changed (update). " + msg
		h.render(w, r, status, "page.html", d)
		return
	}
	h.logger.Info("api key updated", sess.who(r), zap.String("action", "update"), zap.String("key_id", k.ID))
	h.answerChanged(ctx, w, r, sess, k, fmt.Sprintf("Key %q updated.", k.Name), "Updated")
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request, sess session) {
	ctx, cancel := requestContext(r)
	defer cancel()
	id := r.PostForm.Get("id")
	k, err := sess.svc.Revoke(ctx, id)
	if err != nil {
		h.changeFailed(w, r, sess, "revoke", id, err)
		return
	}
	h.logger.Info("api key revoked", sess.who(r), zap.String("action", "revoke"), zap.String("key_id", k.ID))
	h.answerChanged(ctx, w, r, sess, k, fmt.Sprintf("Key %q revoked. Requests with it now fail.", k.Name), "Revoked")
}

// answerChanged answers a change that leaves no secret to show: the key as
// JSON to the page's script, else the page with notice; both say where
// the change is in force, done being its verb ("Revoked").
func (h *Handler) answerChanged(ctx context.Context, w http.ResponseWriter, r *http.Request, sess session, k apikey.Key, notice, done string) {
	kj, words := h.confirm(ctx, sess, k, done)
	notice = withSentence(notice, words)
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, map[string]any{"api_key": kj, "propagation_text": words})
		return
	}
	d, err := h.buildPage(ctx, sess, sess.filter(r.URL.Query()))
	if err != nil {
		h.storeFailed(w, r, "list", err)
		return
	}
	d.Notice = notice
	h.render(w, r, http.StatusOK, "page.html", d)
}

func (h *Handler) rotate(w http.ResponseWriter, r *http.Request, sess session) {
	ctx, cancel := requestContext(r)
	defer cancel()
	id, grace := r.PostForm.Get("id"), r.PostForm.Get("grace")
	secret, next, prev, err := sess.svc.Rotate(ctx, id, grace)
	if err != nil {
		h.changeFailed(w, r, sess, "rotate", id, err)
		return
	}
	h.logger.Info("api key rotated",
		sess.who(r), zap.String("action", "rotate"), zap.String("key_id", next.ID),
		zap.String("previous_key_id", prev.ID), zap.String("grace", grace))
	now := sess.svc.Now()
	kj, words := h.confirm(ctx, sess, next, "Rotated")
	if wantsJSON(r) {
		v, pv := newRow(next, now, filter{}), newRow(prev, now, filter{})
		v.KeyJSON.Propagation = kj.Propagation
		disp := display(v)
		disp["previous_expires"] = pv.Expires.Absolute
		writeJSON(w, http.StatusCreated, createdJSON{Secret: secret, APIKey: v.KeyJSON, Previous: &pv.KeyJSON, Display: disp, Propagation: words})
		return
	}
	h.renderSecret(w, r, sess, secret, next, &prev, withSentence(fmt.Sprintf("Key %q rotated.", next.Name), words))
}

// renderSecret renders the page with the show-once dialog open.
func (h *Handler) renderSecret(w http.ResponseWriter, r *http.Request, sess session, secret string, k apikey.Key, prev *apikey.Key, notice string) {
	ctx, cancel := requestContext(r)
	defer cancel()
	f := sess.filter(r.URL.Query())
	d, err := h.buildPage(ctx, sess, f)
	if err != nil {
		// The key exists, but its secret would be lost with an error page;
		// show it with an empty list rather than not at all.
		d = &pageData{Assets: h.assets, Filter: f, Action: f.href(), ClearHref: "./?status=all", CreateHref: f.href("dialog", "create")}
		d.Create = h.newCreateDialog(sess.svc.Now(), "", defaultScope, string(defaultExpiry))
		d.Rotate = keyDialog{Graces: graceChoices}
		d.Notice = "The list could not be loaded: the key store did not answer."
	}
	now := sess.svc.Now()
	d.Secret = secretDialog{Open: true, Secret: secret, Key: newRow(k, now, f)}
	if prev == nil {
		d.Secret.Warning = originsWarning(k)
	}
	if prev != nil {
		p := newRow(*prev, now, f)
		d.Secret.Previous = &p
	}
	if d.Notice == "" {
		d.Notice = notice
	}
	h.render(w, r, http.StatusOK, "page.html", d)
}

// changeFailed answers a revoke or rotation the service refused.
func (h *Handler) changeFailed(w http.ResponseWriter, r *http.Request, sess session, action, id string, err error) {
	status, field, msg := serviceAnswer(err, id)
	if status == http.StatusServiceUnavailable {
		// The service checked the ID's shape, so it is safe to log.
		h.logger.Error("console could not change an api key", sess.who(r), zap.String("action", action), zap.String("key_id", id), zap.Error(err))
	}
	if wantsJSON(r) {
		writeJSONError(w, status, field, msg)
		return
	}
	ctx, cancel := requestContext(r)
	defer cancel()
	d, perr := h.buildPage(ctx, sess, sess.filter(r.URL.Query()))
	if perr != nil {
		h.storeFailed(w, r, "list", perr)
		return
	}
	d.Notice = "The key could not be changed (" + action + "). " + msg
	h.render(w, r, status, "page.html", d)
}

// serviceAnswer is keyservice.Answer phrased for people: the status, the
// field at fault and a sentence, the field's label first.
func serviceAnswer(err error, id string) (status int, field, text string) {
	status, field, msg := keyservice.Answer(err, id)
	switch {
	case field != "":
		return status, field, fieldMessage(field, msg)
	case status == http.StatusServiceUnavailable:
		// The cause is in the log, not for the page.
		return status, "", sentence(msg) + " Try again in a moment."
	}
	return status, "", sentence(msg)
}

// fieldMessage is an input error as shown under its field.
func fieldMessage(field, msg string) string {
	label := map[string]string{
		"name": "Name", "scope": "Scope", "expires_in": "Expiration", "grace": "Grace period", "id": "Key ID", "metadata": "Metadata",
		"allowed_origins": "Allowed origins", "allowed_ips": "Allowed IPs", "rate_limits": "Rate limits",
	}[field]
	if label == "" {
		label = field
	}
	if strings.HasPrefix(msg, "must ") || strings.HasPrefix(msg, "is ") {
		return label + " " + msg + "."
	}
	return label + ": " + msg + "."
}

// sentence makes a message a sentence: its first letter upper case, a
// full stop at the end.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	r, n := utf8.DecodeRuneInString(msg)
	return string(unicode.ToUpper(r)) + msg[n:] + "."
}

func (h *Handler) badRequest(w http.ResponseWriter, r *http.Request, msg string) {
	h.renderMessage(w, r, http.StatusBadRequest, messagePage{Title: "Bad request", Lines: []string{msg}})
}

func (h *Handler) storeFailed(w http.ResponseWriter, r *http.Request, op string, err error) {
	h.logger.Error("console could not reach the key store", zap.String("op", op), zap.Error(err))
	w.Header().Set("Retry-After", "5")
	h.renderMessage(w, r, http.StatusServiceUnavailable, messagePage{
		Title: "Key store unavailable",
		Lines: []string{"The keys could not be loaded: the key store did not answer. Try again in a moment."},
	})
}

// who names the user making a change, and the owner whose console it is,
// for the log.
func (sess session) who(r *http.Request) zap.Field {
	user := sess.user
	if user == "" {
		user = "unauthenticated loopback " + r.RemoteAddr
	}
	if sess.owner == "" {
		return zap.String("user", user)
	}
	return zap.Inline(zapcore.ObjectMarshalerFunc(func(enc zapcore.ObjectEncoder) error {
		enc.AddString("user", user)
		enc.AddString("owner", sess.owner)
		return nil
	}))
}

// widgetOriginsWarning is what the show-once dialog says of a widget key
// created without allowed origins.
const widgetOriginsWarning = "This widget key works from any website. Add allowed origins so that only your site can use it."

// originsWarning returns widgetOriginsWarning for a widget key without
// allowed origins, "" for any other key.
func originsWarning(k apikey.Key) string {
	if k.Scope == apikey.ScopeWidget && len(k.AllowedOrigins) == 0 {
		return widgetOriginsWarning
	}
	return ""
}

// display holds a new key's details as the show-once dialog prints them.
func display(v row) map[string]string {
	exp := "Never"
	if v.Expires.Set {
		exp = v.Expires.Absolute + " (" + v.Expires.Relative + ")"
	}
	return map[string]string{"scope": v.ScopeLabel, "expires": exp}
}

// wantsJSON reports whether the request is the page's script, which asks
// for JSON answers.
func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type jsonError struct {
	Error struct {
		Field   string `json:"field,omitempty"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSONError(w http.ResponseWriter, status int, field, msg string) {
	var e jsonError
	e.Error.Field, e.Error.Message = field, msg
	writeJSON(w, status, e)
}
