package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI manages API keys on Caddy's admin endpoint:
//
//	POST   /apikeys                 {"name", "scope", "expires_in"} → 201 {"secret", "api_key"}
//	GET    /apikeys[?status=active|revoked|expired][&q=TEXT][&limit=N][&cursor=C]
//	                                → 200 {"api_keys": [...], "next_cursor": "..." | null}, newest first;
//	                                  q is a key ID or part of a name; limit 1-1000, default 100
//	GET    /apikeys/{id}            → 200 the key
//	DELETE /apikeys/{id}            → 200 the key, revoked (revoking again changes nothing)
//	POST   /apikeys/{id}/rotate     {"grace"} (optional) → 201 {"secret", "api_key", "previous"}
//
// It looks up the apikeys app of the running config on every request
// rather than at provision time: admin routers are provisioned once per
// admin endpoint, with whatever config was loading then, which may since
// have failed or been replaced.
//
// Errors have Caddy's admin error body, {"error": "..."}: 400 for bad input
// (the message names the field), 404 for an unknown key, 405 for a method
// the resource does not have (with Allow), 409 for rotating a revoked key,
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
	Now() time.Time
}

// createRequest is the body of POST /apikeys.
type createRequest struct {
	Name      string `json:"name"`
	Scope     string `json:"scope"`
	ExpiresIn string `json:"expires_in"`
}

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
	if rest == "" || rest == "/" {
		switch r.Method {
		case http.MethodGet:
			return withService(w, r, lookup, listKeys)
		case http.MethodPost:
			return withService(w, r, lookup, createKey)
		}
		return methodNotAllowed(w, r, http.MethodGet, http.MethodPost)
	}

	id, action, hasAction := strings.Cut(rest[1:], "/")
	var serve func(http.ResponseWriter, *http.Request, keyManager, string) error
	switch {
	case !hasAction:
		switch r.Method {
		case http.MethodGet:
			serve = getKey
		case http.MethodDelete:
			serve = revokeKey
		default:
			return methodNotAllowed(w, r, http.MethodGet, http.MethodDelete)
		}
	case action == "rotate":
		if r.Method != http.MethodPost {
			return methodNotAllowed(w, r, http.MethodPost)
		}
		serve = rotateKey
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

// errNoSuchResource answers a path under /apikeys that is none of the
// API's. It does not echo the path, which may hold anything.
var errNoSuchResource = caddy.APIError{
	HTTPStatus: http.StatusNotFound,
	Err:        errors.New("resource not found: the key API has /apikeys, /apikeys/{id} and /apikeys/{id}/rotate"),
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
	ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
	defer cancel()
	return serve(w, r.WithContext(ctx), svc)
}

// listParams are the query parameters of GET /apikeys.
var listParams = []string{"status", "q", "limit", "cursor"}

// listKeys serves GET /apikeys[?status=...][&q=...][&limit=N][&cursor=C]:
// one page of keys, newest first, and the cursor of the next.
func listKeys(w http.ResponseWriter, r *http.Request, svc keyManager) error {
	query := r.URL.Query()
	for name, values := range query {
		if !slices.Contains(listParams, name) {
			return badRequest(fmt.Errorf("unknown query parameter %s: the parameters are status, q, limit and cursor", apikey.QuoteInput(name)))
		}
		if len(values) > 1 {
			return badRequest(fmt.Errorf("%s: give it once", name))
		}
	}
	opts := keyservice.ListOptions{Status: query.Get("status"), Query: query.Get("q"), Cursor: query.Get("cursor")}
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

// createKey serves POST /apikeys.
func createKey(w http.ResponseWriter, r *http.Request, svc keyManager) error {
	var req createRequest
	err := decodeObject(w, r, false, map[string]*string{
		"name":       &req.Name,
		"scope":      &req.Scope,
		"expires_in": &req.ExpiresIn,
	})
	if err != nil {
		return err
	}
	secret, k, err := svc.Create(r.Context(), keyservice.NewKey{Name: req.Name, Scope: req.Scope, ExpiresIn: req.ExpiresIn, CreatedBy: apikey.Actor{Type: apikey.ActorAdmin}})
	if err != nil {
		return serviceError(w, err, "")
	}
	w.Header().Set("Location", adminAPIKeysPath+"/"+k.ID)
	return writeJSON(w, http.StatusCreated, secretResponse{
		Secret: secret,
		APIKey: keyservice.View(k, svc.Now()),
	})
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
	return writeJSON(w, http.StatusOK, keyservice.View(k, svc.Now()))
}

// rotateKey serves POST /apikeys/{id}/rotate. The body is optional: the
// grace period defaults to the service's (24h).
func rotateKey(w http.ResponseWriter, r *http.Request, svc keyManager, id string) error {
	var req rotateRequest
	if err := decodeObject(w, r, true, map[string]*string{"grace": &req.Grace}); err != nil {
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
		APIKey:   keyservice.View(next, now),
		Previous: &prev,
	})
}

// decodeObject reads a request body holding one JSON object whose members
// are all strings and all named in fields, and stores them there. Member
// names must match exactly (encoding/json alone would accept "Name" for
// "name"); a null member counts as absent. An empty body is an error
// unless optional.
func decodeObject(w http.ResponseWriter, r *http.Request, optional bool, fields map[string]*string) error {
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
	for name, raw := range members {
		dst, ok := fields[name]
		if !ok {
			return badRequest(fmt.Errorf("unknown field %s: the fields are %s", apikey.QuoteInput(name), fieldList(fields)))
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return badRequest(fmt.Errorf("%s: must be a string", name))
		}
	}
	return nil
}

// describeJSONError explains why a body is not one JSON object.
func describeJSONError(err error, fields map[string]*string) error {
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

// fieldList names the fields of a body, in a stable order: "a, b and c".
func fieldList(fields map[string]*string) string {
	var names []string
	for _, name := range []string{"name", "scope", "expires_in", "grace"} {
		if _, ok := fields[name]; ok {
			names = append(names, name)
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
