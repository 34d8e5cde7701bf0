package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI manages API keys on Caddy's admin endpoint:
//
//	POST   /apikeys                 {"name", "scope", "expires_in", "owner"?, "metadata"?,
//	                                 "allowed_origins"?, "allowed_ips"?, "rate_limits"?} → 201 {"secret", "api_key"}
//	                                  created_by is {"type": "admin", "id": the Keygate-Actor header or ""}
//	GET    /apikeys[?status=active|revoked|expired][&owner=O][&q=TEXT][&limit=N][&cursor=C]
//	                                → 200 {"api_keys": [...], "next_cursor": "..." | null}, newest first;
//	                                  q is a key ID or part of a name; limit 1-1000, default 100
//	GET    /apikeys/{id}            → 200 the key
//	PATCH  /apikeys/{id}            {"name"?, "metadata"?, "allowed_origins"?, "allowed_ips"?, "rate_limits"?} → 200 the key, changed
//	DELETE /apikeys/{id}            → 200 the key, revoked (revoking again changes nothing)
//	POST   /apikeys/{id}/rotate     {"grace"} (optional) → 201 {"secret", "api_key", "previous"}
//	GET    /apikeys/instances       → 200 {"instances": [...], "seq": N}: the gateway instances on the store
//	GET    /apikeys/backup          → 200 a copy of the sqlite store (backup.go)
//	GET    /apikeys/{id}/usage[?since=DURATION|RFC3339][&step=1m|1h|1d]
//	                                → 200 {"key_id", "step", "points": [{"start", "ok", "refused": {...}}]}
//	GET    /apikeys/usage[?owner=O][&since=...] → 200 {"keys": [{"key_id", "ok", "refused"}]}, busiest first
//	GET    /apikeys/audit[?owner=O][&key_id=ID][&action=A][&since=...][&limit=N][&cursor=C]
//	                                → 200 {"events": [...], "next_cursor": "..." | null}, newest first
//
// A change (create, update, revoke, rotate) answers once every live
// instance applied it, or after confirm_timeout; the key in the answer
// ("api_key" for create and rotate) then holds "propagation":
// {"confirmed": [instance IDs], "pending": [instance IDs]}.
//
// Every change is written to the audit log with who made it: {"type":
// "admin", "id": the Keygate-Actor header or ""}, the request's remote
// address and its User-Agent.
//
// It looks up the apikeys app of the running config on every request
// rather than at provision time: admin routers are provisioned once per
// admin endpoint, with whatever config was loading then, which may since
// have failed or been replaced.
//
// Errors have Caddy's admin error body, {"error": "..."}: 400 for bad input
// (the message names the field), 404 for an unknown key, 405 for a method
// the resource does not have (with Allow), 409 for rotating or changing a
// revoked key,
// 413 for an oversized body, and 503 when the key store cannot be reached
// or the running config does not use keygate. The secret of a new key is
// in the body of the one answer that creates it, never in a URI, a log or
// an error.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.apikeys",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes returns the routes of the key API: the collection and the keys
// under it.
func (a adminAPI) Routes() []caddy.AdminRoute {
	handler := caddy.AdminHandlerFunc(a.handleAPIKeys)
	return []caddy.AdminRoute{
		{Pattern: adminAPIKeysPath, Handler: handler},
		{Pattern: adminAPIKeysPath + "/", Handler: handler},
		// The backup of the sqlite store (backup.go).
		{Pattern: adminBackupPath, Handler: caddy.AdminHandlerFunc(a.handleBackup)},
	}
}

// handleAPIKeys serves every request under /apikeys.
func (adminAPI) handleAPIKeys(w http.ResponseWriter, r *http.Request) error {
	return serveAPIKeys(w, r, runningKeyService)
}

// adminAPIKeysPath is the root of the key API on the admin endpoint.
const adminAPIKeysPath = "/apikeys"

// maxAdminBody bounds a request body. The largest valid one, a create
// with a 100-character name, is a few hundred bytes.
const maxAdminBody = 16 << 10

// adminTimeout bounds the store work of one admin request.
const adminTimeout = 10 * time.Second

// keyManager is what the admin API needs of keyservice.Service.
type keyManager interface {
	Create(ctx context.Context, nk keyservice.NewKey) (string, apikey.Key, error)
	List(ctx context.Context, opts keyservice.ListOptions) (keyservice.Page, error)
	Get(ctx context.Context, id string) (apikey.Key, error)
	Revoke(ctx context.Context, id string) (apikey.Key, error)
	Rotate(ctx context.Context, id, grace string) (string, apikey.Key, apikey.Key, error)
	Update(ctx context.Context, id string, u keyservice.KeyUpdate) (apikey.Key, error)
	KeyUsage(ctx context.Context, id, since, step string) (keyservice.UsageSeries, error)
	Usage(ctx context.Context, owner, since string) ([]keyservice.KeyUsageJSON, error)
	Audit(ctx context.Context, opts keyservice.AuditOptions) (keyservice.AuditPage, error)
	Now() time.Time
	Confirm(ctx context.Context) (keyservice.Propagation, error)
	Instances(ctx context.Context) (keyservice.InstancesJSON, error)
}

// createRequest is the body of POST /apikeys.
type createRequest struct {
	Name           string            `json:"name"`
	Scope          string            `json:"scope"`
	ExpiresIn      string            `json:"expires_in"`
	Owner          string            `json:"owner,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	AllowedOrigins []string          `json:"allowed_origins,omitempty"`
	AllowedIPs     []string          `json:"allowed_ips,omitempty"`
	RateLimits     []string          `json:"rate_limits,omitempty"`
}

// updateRequest is the body of PATCH /apikeys/{id}: the fields to change.
type updateRequest struct {
	Name     *string            `json:"name,omitempty"`
	Metadata *map[string]string `json:"metadata,omitempty"`
	// AllowedOrigins and AllowedIPs replace the key's lists; a pointer to
	// an empty list sends [] and clears one.
	AllowedOrigins *[]string `json:"allowed_origins,omitempty"`
	AllowedIPs     *[]string `json:"allowed_ips,omitempty"`
	// RateLimits replaces the key's rate limits; [] clears them.
	RateLimits *[]string `json:"rate_limits,omitempty"`
}

// actorHeader names who makes an admin request: the admin API records it
// in the created_by of the keys it creates. The CLI sends
// "<os user>@<hostname>".
const actorHeader = "Keygate-Actor"

// rotateRequest is the body of POST /apikeys/{id}/rotate.
type rotateRequest struct {
	Grace string `json:"grace"`
}

// secretResponse answers a create or a rotate: the only answers that hold
// a secret.
type secretResponse struct {
	Secret   string              `json:"secret"`
	APIKey   keyservice.KeyJSON  `json:"api_key"`
	Previous *keyservice.KeyJSON `json:"previous,omitempty"`
}

// listResponse answers GET /apikeys.
type listResponse struct {
	APIKeys []keyservice.KeyJSON `json:"api_keys"`
	// NextCursor is the cursor of the next page, null on the last.
	NextCursor *string `json:"next_cursor"`
}

// runningKeyService returns the key service of the running config's
// apikeys app.
func runningKeyService() (keyManager, error) {
	return keyServiceOf(caddy.ActiveContext().AppIfConfigured("apikeys"))
}

// keyServiceOf returns the key service of app, the running config's
// apikeys app as AppIfConfigured returned it with err.
func keyServiceOf(app any, err error) (keyManager, error) {
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, caddy.APIError{
			HTTPStatus: http.StatusServiceUnavailable,
			Err:        errors.New("keygate is not configured in the running config: it needs an apikeys global option or an apikey directive"),
		}
	}
	if err != nil {
		return nil, caddy.APIError{
			HTTPStatus: http.StatusServiceUnavailable,
			Err:        fmt.Errorf("keygate is not running: %v", err),
		}
	}
	keys, ok := app.(*App)
	if !ok {
		return nil, caddy.APIError{
			HTTPStatus: http.StatusInternalServerError,
			Err:        fmt.Errorf("the apikeys app is a %T, not keygate's", app),
		}
	}
	svc := keys.service()
	if svc == nil {
		return nil, caddy.APIError{
			HTTPStatus: http.StatusServiceUnavailable,
			Err:        errors.New("keygate's key store is not open"),
		}
	}
	return svc, nil
}

// serveAPIKeys serves a request of the key API. Every 503 answer, whether
// keygate is not running or its store failed, carries Retry-After: 1, as
// a retry may succeed.
func serveAPIKeys(w http.ResponseWriter, r *http.Request, lookup func() (keyManager, error)) error {
	err := routeAPIKeys(w, r, lookup)
	if apiErr, ok := errors.AsType[caddy.APIError](err); ok && apiErr.HTTPStatus == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	return err
}

// routeAPIKeys routes a request of the key API. The route, method and key
// ID are checked before the service is looked up, so that a malformed
// request gets the same answer whether keygate runs or not.
func routeAPIKeys(w http.ResponseWriter, r *http.Request, lookup func() (keyManager, error)) error {
	// Every answer names keys, and two of them hold a secret: keep all of
	// them out of caches.
	w.Header().Set("Cache-Control", "no-store")

	rest, ok := strings.CutPrefix(r.URL.Path, adminAPIKeysPath)
	if !ok {
		return errNoSuchResource
	}
	// Usage and the audit log.
	switch rest {
	case "/usage":
		if r.Method != http.MethodGet {
			return methodNotAllowed(w, r, http.MethodGet)
		}
		return withService(w, r, lookup, allUsage)
	case "/audit":
		if r.Method != http.MethodGet {
			return methodNotAllowed(w, r, http.MethodGet)
		}
		return withService(w, r, lookup, auditLog)
	}

	if rest == "" || rest == "/" {
		switch r.Method {
		case http.MethodGet:
			return withService(w, r, lookup, listKeys)
		case http.MethodPost:
			return withService(w, r, lookup, createKey)
		}
		return methodNotAllowed(w, r, http.MethodGet, http.MethodPost)
	}
	// Instances (issue 14): not a key ID, so routed before IDs.
	if rest == instancesPath {
		if r.Method != http.MethodGet {
			return methodNotAllowed(w, r, http.MethodGet)
		}
		return withService(w, r, lookup, listInstances)
	}

	id, action, hasAction := strings.Cut(rest[1:], "/")
	var serve func(http.ResponseWriter, *http.Request, keyManager, string) error
	switch {
	case !hasAction:
		switch r.Method {
		case http.MethodGet:
			serve = getKey
		case http.MethodPatch:
			serve = updateKey
		case http.MethodDelete:
			serve = revokeKey
		default:
			return methodNotAllowed(w, r, http.MethodGet, http.MethodPatch, http.MethodDelete)
		}
	case action == "rotate":
		if r.Method != http.MethodPost {
			return methodNotAllowed(w, r, http.MethodPost)
		}
		serve = rotateKey
	case action == "usage":
		if r.Method != http.MethodGet {
			return methodNotAllowed(w, r, http.MethodGet)
		}
		serve = keyUsage
	default:
		return errNoSuchResource
	}
	// The ID is checked before it reaches the store, and never echoed: a
	// mistaken path may hold anything, a secret included.
	if !apikey.ValidID(id) {
		return caddy.APIError{
			HTTPStatus: http.StatusBadRequest,
			Err:        errors.New(`malformed key ID in the path: IDs are "key_" followed by 22 letters and digits`),
		}
	}
	return withService(w, r, lookup, func(w http.ResponseWriter, r *http.Request, svc keyManager) error {
		return serve(w, r, svc, id)
	})
}

// instancesPath is the instance list, under /apikeys.
const instancesPath = "/instances"

// listInstances serves GET /apikeys/instances.
func listInstances(w http.ResponseWriter, r *http.Request, svc keyManager) error {
	if len(r.URL.Query()) > 0 {
		return badRequest(errors.New("GET /apikeys/instances takes no query parameters"))
	}
	list, err := svc.Instances(r.Context())
	if err != nil {
		return serviceError(w, err, "")
	}
	return writeJSON(w, http.StatusOK, list)
}

// confirmed returns view with the propagation of the change just made
// (keyservice.Service.Confirm). If the registry cannot be read, the change
// is answered without it: it is stored, and saying so matters more.
func confirmed(ctx context.Context, svc keyManager, view keyservice.KeyJSON) keyservice.KeyJSON {
	p, err := svc.Confirm(ctx)
	if err == nil {
		view.Propagation = &p
	}
	return view
}

// errNoSuchResource answers a path under /apikeys that is none of the
// API's. It does not echo the path, which may hold anything.
var errNoSuchResource = caddy.APIError{
	HTTPStatus: http.StatusNotFound,
	Err:        errors.New("resource not found: the key API has /apikeys, /apikeys/{id}, /apikeys/{id}/rotate, /apikeys/{id}/usage, /apikeys/usage and /apikeys/audit"),
}

// withService looks up the key service and runs serve with it, bounding
// the store work by adminTimeout.
func withService(w http.ResponseWriter, r *http.Request, lookup func() (keyManager, error),
	serve func(http.ResponseWriter, *http.Request, keyManager) error,
) error {
	svc, err := lookup()
	if err != nil {
		return err
	}
	if s, ok := svc.(*keyservice.Service); ok && r.Method != http.MethodGet {
		a, err := requestAudit(r)
		if err != nil {
			return err
		}
		svc = s.As(a)
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	return serve(w, r.WithContext(ctx), svc)
}

// listParams are the query parameters of GET /apikeys.
var listParams = []string{"status", "owner", "q", "limit", "cursor"}

// listKeys serves GET /apikeys[?status=...][&owner=O][&q=...][&limit=N][&cursor=C]:
// one page of keys, newest first, and the cursor of the next.
func listKeys(w http.ResponseWriter, r *http.Request, svc keyManager) error {
	query := r.URL.Query()
	for name, values := range query {
		if !slices.Contains(listParams, name) {
			return badRequest(fmt.Errorf("unknown query parameter %s: the parameters are status, owner, q, limit and cursor", apikey.QuoteInput(name)))
		}
		if len(values) > 1 {
			return badRequest(fmt.Errorf("%s: give it once", name))
		}
	}
	opts := keyservice.ListOptions{Status: query.Get("status"), Owner: query.Get("owner"), Query: query.Get("q"), Cursor: query.Get("cursor")}
	if query.Has("owner") {
		if opts.Owner == "" {
			return badRequest(errors.New("owner: is empty: leave it out to list the keys of every owner"))
		}
		if err := apikey.CheckOwner(opts.Owner); err != nil {
			return badRequest(fmt.Errorf("owner: %v", err))
		}
	}
	if opts.Status != "" {
		if _, err := apikey.ParseStatus(opts.Status); err != nil {
			return badRequest(fmt.Errorf("status: unknown status %s: want active, revoked or expired", apikey.QuoteInput(opts.Status)))
		}
	}
	if query.Has("limit") {
		n, err := strconv.Atoi(query.Get("limit"))
		if err != nil || n < 1 || n > keyservice.MaxLimit {
			return badRequest(fmt.Errorf("limit: must be a whole number from 1 to %d, not %s", keyservice.MaxLimit, apikey.QuoteInput(query.Get("limit"))))
		}
		opts.Limit = n
	}
	if query.Has("cursor") && opts.Cursor == "" {
		return badRequest(errors.New("cursor: is empty: leave it out to start at the newest key"))
	}
	page, err := svc.List(r.Context(), opts)
	if err != nil {
		return serviceError(w, err, "")
	}
	now := svc.Now()
	resp := listResponse{APIKeys: make([]keyservice.KeyJSON, 0, len(page.Keys))}
	for _, k := range page.Keys {
		resp.APIKeys = append(resp.APIKeys, keyservice.View(k, now))
	}
	if page.Next != "" {
		resp.NextCursor = &page.Next
	}
	return writeJSON(w, http.StatusOK, resp)
}

// createKey serves POST /apikeys. The key records who created it:
// {"type": "admin", "id": the Keygate-Actor header, or ""}.
func createKey(w http.ResponseWriter, r *http.Request, svc keyManager) error {
	actor, err := requestActor(r)
	if err != nil {
		return err
	}
	var (
		req      createRequest
		ownerSet bool
	)
	err = decodeObject(w, r, false, []bodyField{
		{name: "name", dst: &req.Name},
		{name: "scope", dst: &req.Scope},
		{name: "expires_in", dst: &req.ExpiresIn},
		{name: "owner", dst: &req.Owner, set: &ownerSet},
		{name: "metadata", dst: &req.Metadata},
		{name: "allowed_origins", dst: &req.AllowedOrigins},
		{name: "allowed_ips", dst: &req.AllowedIPs},
		{name: "rate_limits", dst: &req.RateLimits},
	})
	if err != nil {
		return err
	}
	if ownerSet {
		// The service takes "" for "no owner"; a request that names an
		// owner must name one.
		if err := apikey.CheckOwner(req.Owner); err != nil {
			return badRequest(fmt.Errorf("owner: %v", err))
		}
	}
	secret, k, err := svc.Create(r.Context(), keyservice.NewKey{
		Name: req.Name, Scope: req.Scope, ExpiresIn: req.ExpiresIn,
		Owner: req.Owner, Metadata: req.Metadata, CreatedBy: actor,
		AllowedOrigins: req.AllowedOrigins, AllowedIPs: req.AllowedIPs,
		RateLimits: req.RateLimits,
	})
	if err != nil {
		return serviceError(w, err, "")
	}
	w.Header().Set("Location", adminAPIKeysPath+"/"+k.ID)
	return writeJSON(w, http.StatusCreated, secretResponse{
		Secret: secret,
		APIKey: confirmed(r.Context(), svc, keyservice.View(k, svc.Now())),
	})
}

// requestActor returns who makes the request r, from its Keygate-Actor
// header: at most apikey.MaxActorIDLength bytes of UTF-8 without control
// or format characters, given at most once; no header is "". The header
// is never echoed.
func requestActor(r *http.Request) (apikey.Actor, error) {
	actor := apikey.Actor{Type: apikey.ActorAdmin}
	values := r.Header.Values(actorHeader)
	switch len(values) {
	case 0:
		return actor, nil
	case 1:
		actor.ID = values[0]
	default:
		return apikey.Actor{}, badRequest(fmt.Errorf("%s header: give it once", actorHeader))
	}
	if err := apikey.CheckActor(actor); err != nil {
		// CheckActor says "id must …".
		_, msg, _ := strings.Cut(err.Error(), "id ")
		return apikey.Actor{}, badRequest(fmt.Errorf("%s header: %s", actorHeader, msg))
	}
	return actor, nil
}

// requestAudit returns who makes the request r and from where, for the
// audit log: the Keygate-Actor header (requestActor), the remote address
// of the connection (the admin endpoint has no trusted proxies) and the
// User-Agent.
func requestAudit(r *http.Request) (keystore.Audit, error) {
	actor, err := requestActor(r)
	if err != nil {
		return keystore.Audit{}, err
	}
	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	return keystore.Audit{Actor: actor, RemoteIP: ip, UserAgent: r.UserAgent()}, nil
}

// checkQuery refuses a query parameter not in allowed, or given twice.
func checkQuery(query url.Values, allowed ...string) error {
	for name, values := range query {
		if !slices.Contains(allowed, name) {
			return badRequest(fmt.Errorf("unknown query parameter %s: the parameters are %s", apikey.QuoteInput(name), strings.Join(allowed, ", ")))
		}
		if len(values) > 1 {
			return badRequest(fmt.Errorf("%s: give it once", name))
		}
	}
	return nil
}

// keyUsage serves GET /apikeys/{id}/usage[?since=...][&step=...]: the
// key's requests per step by result, zeros included, counts not yet
// written included.
func keyUsage(w http.ResponseWriter, r *http.Request, svc keyManager, id string) error {
	query := r.URL.Query()
	if err := checkQuery(query, "since", "step"); err != nil {
		return err
	}
	series, err := svc.KeyUsage(r.Context(), id, query.Get("since"), query.Get("step"))
	if err != nil {
		return serviceError(w, err, id)
	}
	return writeJSON(w, http.StatusOK, series)
}

// usageResponse answers GET /apikeys/usage.
type usageResponse struct {
	Keys []keyservice.KeyUsageJSON `json:"keys"`
}

// allUsage serves GET /apikeys/usage[?owner=O][&since=...]: the keys with
// requests in the range, busiest first.
func allUsage(w http.ResponseWriter, r *http.Request, svc keyManager) error {
	query := r.URL.Query()
	if err := checkQuery(query, "owner", "since"); err != nil {
		return err
	}
	if query.Has("owner") && query.Get("owner") == "" {
		return badRequest(errors.New("owner: is empty: leave it out for the keys of every owner"))
	}
	keys, err := svc.Usage(r.Context(), query.Get("owner"), query.Get("since"))
	if err != nil {
		return serviceError(w, err, "")
	}
	if keys == nil {
		keys = []keyservice.KeyUsageJSON{}
	}
	return writeJSON(w, http.StatusOK, usageResponse{Keys: keys})
}

// auditResponse answers GET /apikeys/audit.
type auditResponse struct {
	Events []keyservice.EventJSON `json:"events"`
	// NextCursor is the cursor of the next (older) page, null on the last.
	NextCursor *string `json:"next_cursor"`
}

// auditLog serves GET /apikeys/audit: a page of audit events, newest
// first.
func auditLog(w http.ResponseWriter, r *http.Request, svc keyManager) error {
	query := r.URL.Query()
	if err := checkQuery(query, "owner", "key_id", "action", "since", "limit", "cursor"); err != nil {
		return err
	}
	opts := keyservice.AuditOptions{Owner: query.Get("owner"), KeyID: query.Get("key_id"), Action: query.Get("action"),
		Since: query.Get("since"), Cursor: query.Get("cursor")}
	for _, name := range []string{"owner", "key_id", "action", "since", "cursor"} {
		if query.Has(name) && query.Get(name) == "" {
			return badRequest(fmt.Errorf("%s: is empty: leave it out", name))
		}
	}
	if query.Has("limit") {
		n, err := strconv.Atoi(query.Get("limit"))
		if err != nil || n < 1 || n > keyservice.MaxLimit {
			return badRequest(fmt.Errorf("limit: must be a whole number from 1 to %d, not %s", keyservice.MaxLimit, apikey.QuoteInput(query.Get("limit"))))
		}
		opts.Limit = n
	}
	page, err := svc.Audit(r.Context(), opts)
	if err != nil {
		return serviceError(w, err, "")
	}
	resp := auditResponse{Events: make([]keyservice.EventJSON, 0, len(page.Events))}
	for _, e := range page.Events {
		resp.Events = append(resp.Events, keyservice.EventView(e))
	}
	if page.Next != "" {
		resp.NextCursor = &page.Next
	}
	return writeJSON(w, http.StatusOK, resp)
}

// updateKey serves PATCH /apikeys/{id}: it changes the key's name,
// metadata, allowed origins, allowed IPs or rate limits, each given replacing the old
// value whole ("metadata": {} or "allowed_ips": [] clears it), and answers the key as it is afterwards. The change is in
// force on this instance when the answer is sent. Scope, owner and expiry
// never change: the answer says to rotate or create instead.
func updateKey(w http.ResponseWriter, r *http.Request, svc keyManager, id string) error {
	var (
		name               string
		metadata           map[string]string
		origins, ips       []string
		limits             []string
		nameSet, metaSet   bool
		originsSet, ipsSet bool
		limitsSet          bool
	)
	const newKey = "cannot be changed: create a new key with the one you want, then revoke this one"
	err := decodeObject(w, r, false, []bodyField{
		{name: "name", dst: &name, set: &nameSet},
		{name: "metadata", dst: &metadata, set: &metaSet},
		{name: "allowed_origins", dst: &origins, set: &originsSet},
		{name: "allowed_ips", dst: &ips, set: &ipsSet},
		{name: "rate_limits", dst: &limits, set: &limitsSet},
		{name: "scope", refused: newKey},
		{name: "owner", refused: newKey},
		{name: "expires_in", refused: "cannot be changed: rotate the key for a new one with the same lifetime counted from now, or create a new key"},
		{name: "expires_at", refused: "cannot be changed: rotate the key for a new one with the same lifetime counted from now, or create a new key"},
	})
	if err != nil {
		return err
	}
	var u keyservice.KeyUpdate
	if nameSet {
		u.Name = &name
	}
	if metaSet {
		u.Metadata = &metadata
	}
	if originsSet {
		u.AllowedOrigins = &origins
	}
	if ipsSet {
		u.AllowedIPs = &ips
	}
	if limitsSet {
		u.RateLimits = &limits
	}
	k, err := svc.Update(r.Context(), id, u)
	if err != nil {
		return serviceError(w, err, id)
	}
	return writeJSON(w, http.StatusOK, confirmed(r.Context(), svc, keyservice.View(k, svc.Now())))
}

// getKey serves GET /apikeys/{id}.
func getKey(w http.ResponseWriter, r *http.Request, svc keyManager, id string) error {
	k, err := svc.Get(r.Context(), id)
	if err != nil {
		return serviceError(w, err, id)
	}
	return writeJSON(w, http.StatusOK, keyservice.View(k, svc.Now()))
}

// revokeKey serves DELETE /apikeys/{id}. Revoking a revoked key answers
// the key as it is, so that a retried request succeeds.
func revokeKey(w http.ResponseWriter, r *http.Request, svc keyManager, id string) error {
	k, err := svc.Revoke(r.Context(), id)
	if err != nil {
		return serviceError(w, err, id)
	}
	return writeJSON(w, http.StatusOK, confirmed(r.Context(), svc, keyservice.View(k, svc.Now())))
}

// rotateKey serves POST /apikeys/{id}/rotate. The body is optional: the
// grace period defaults to the service's (24h).
func rotateKey(w http.ResponseWriter, r *http.Request, svc keyManager, id string) error {
	var req rotateRequest
	if err := decodeObject(w, r, true, []bodyField{{name: "grace", dst: &req.Grace}}); err != nil {
		return err
	}
	secret, next, previous, err := svc.Rotate(r.Context(), id, req.Grace)
	if err != nil {
		return serviceError(w, err, id)
	}
	now := svc.Now()
	prev := keyservice.View(previous, now)
	w.Header().Set("Location", adminAPIKeysPath+"/"+next.ID)
	return writeJSON(w, http.StatusCreated, secretResponse{
		Secret:   secret,
		APIKey:   confirmed(r.Context(), svc, keyservice.View(next, now)),
		Previous: &prev,
	})
}

// bodyField is a member a request body may hold, and where it goes.
type bodyField struct {
	name string
	// dst receives the member's value: a *string for a JSON string, a
	// *map[string]string for a JSON object of strings, a *[]string for a
	// JSON array of strings.
	dst any
	// set, if not nil, is set when the member is present and not null,
	// for fields where "" (or {}) differs from absent.
	set *bool
	// refused, if not "", refuses the member with this message: a field
	// of the key that this request may not change.
	refused string
}

// decodeObject reads a request body holding one JSON object whose members
// are all named in fields, and stores them there. Member names must match
// exactly (encoding/json alone would accept "Name" for "name"); a null
// member counts as absent. A member of the wrong type is refused with its
// name and the type it must have. An empty body is an error unless
// optional.
func decodeObject(w http.ResponseWriter, r *http.Request, optional bool, fields []bodyField) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return caddy.APIError{
				HTTPStatus: http.StatusRequestEntityTooLarge,
				Err:        fmt.Errorf("request body is larger than %d bytes", maxAdminBody),
			}
		}
		return badRequest(fmt.Errorf("reading request body: %v", err))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return badRequest(fmt.Errorf("request body is empty: send a JSON object with %s", fieldList(fields)))
	}

	var members map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&members); err != nil {
		return badRequest(describeJSONError(err, fields))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest(errors.New("request body must hold one JSON object and nothing after it"))
	}
	// Members are judged in the order of fields, unknown ones last, so
	// that a body with several faults always gets the same answer.
	for _, f := range fields {
		raw, ok := members[f.name]
		if !ok {
			continue
		}
		delete(members, f.name)
		if f.refused != "" {
			return badRequest(fmt.Errorf("%s: %s", f.name, f.refused))
		}
		if string(bytes.TrimSpace(raw)) == "null" {
			continue
		}
		if err := decodeMember(f.name, raw, f.dst); err != nil {
			return badRequest(err)
		}
		if f.set != nil {
			*f.set = true
		}
	}
	if len(members) > 0 {
		name := slices.Min(slices.Collect(maps.Keys(members)))
		return badRequest(fmt.Errorf("unknown field %s: the fields are %s", apikey.QuoteInput(name), fieldList(fields)))
	}
	return nil
}

// decodeMember stores the member name's raw value in dst, a *string, a
// *map[string]string or a *[]string. An entry of an array that is not a
// string is named by its index from 0, as "name[i]".
func decodeMember(name string, raw json.RawMessage, dst any) error {
	switch dst := dst.(type) {
	case *string:
		if err := json.Unmarshal(raw, dst); err != nil {
			return fmt.Errorf("%s: must be a string", name)
		}
	case *map[string]string:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return fmt.Errorf("%s: must be a JSON object of strings, such as {\"plan\": \"pro\"}", name)
		}
		m := make(map[string]string, len(obj))
		for k, v := range obj {
			var s string
			// Unmarshal leaves a string as it is for null.
			if err := json.Unmarshal(v, &s); err != nil || string(bytes.TrimSpace(v)) == "null" {
				return fmt.Errorf("%s: the value of %s must be a string", name, apikey.QuoteInput(k))
			}
			m[k] = s
		}
		*dst = m
	case *[]string:
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return fmt.Errorf("%s: must be a JSON array of strings, such as [\"a\", \"b\"]", name)
		}
		l := make([]string, len(arr))
		for i, v := range arr {
			// Unmarshal leaves a string as it is for null.
			if err := json.Unmarshal(v, &l[i]); err != nil || string(bytes.TrimSpace(v)) == "null" {
				return fmt.Errorf("%s[%d]: must be a string", name, i)
			}
		}
		*dst = l
	default:
		panic(fmt.Sprintf("decodeMember: unsupported destination %T", dst))
	}
	return nil
}

// describeJSONError explains why a body is not one JSON object.
func describeJSONError(err error, fields []bodyField) error {
	if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return fmt.Errorf("request body must be a JSON object with %s", fieldList(fields))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("request body is not valid JSON: it ends too early")
	}
	if syntax, ok := errors.AsType[*json.SyntaxError](err); ok {
		return fmt.Errorf("request body is not valid JSON at byte %d", syntax.Offset)
	}
	return fmt.Errorf("request body is not valid JSON: %v", err)
}

// fieldList names the fields a body may set, in their order: "a, b and c".
func fieldList(fields []bodyField) string {
	var names []string
	for _, f := range fields {
		if f.refused == "" {
			names = append(names, f.name)
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// serviceError turns an error of the key service, called for key id, into
// the admin answer that keyservice.Answer gives it: "<field>: <message>"
// for bad input, and for a failed store the cause after the message, for
// the operator (serveAPIKeys adds Retry-After).
func serviceError(_ http.ResponseWriter, err error, id string) error {
	status, field, msg := keyservice.Answer(err, id)
	switch {
	case field != "":
		msg = field + ": " + msg
	case status == http.StatusServiceUnavailable:
		msg += ": " + err.Error()
	}
	return caddy.APIError{HTTPStatus: status, Err: errors.New(msg)}
}

// methodNotAllowed answers 405 with the methods the resource has.
func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed ...string) error {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	return caddy.APIError{
		HTTPStatus: http.StatusMethodNotAllowed,
		Err:        fmt.Errorf("method %s not allowed: use %s", apikey.QuoteInput(r.Method), strings.Join(allowed, " or ")),
	}
}

// badRequest answers 400 with err's message.
func badRequest(err error) error {
	return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("encoding answer: %v", err)}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	return nil
}

// Interface guards
var (
	_ caddy.Module      = (*adminAPI)(nil)
	_ caddy.AdminRouter = (*adminAPI)(nil)
)
