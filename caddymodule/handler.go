package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/identity"
	"github.com/docana/keygate/internal/lastused"
	"github.com/docana/keygate/internal/pathcheck"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Identity headers set for the upstream on success. A client's own copies
// are removed on every request, whatever the outcome.
const (
	HeaderKeyID    = identity.HeaderID
	HeaderKeyName  = identity.HeaderName
	HeaderKeyScope = identity.HeaderScope
	HeaderKeyOwner = identity.HeaderOwner
)

// DefaultRealm is the realm named in WWW-Authenticate unless configured.
const DefaultRealm = "keygate"

// PreflightAuthenticate is the value of Handler.Preflight that requires a
// key on CORS preflight requests too.
const PreflightAuthenticate = "authenticate"

// retryAfter is the Retry-After of a 503 key_store_unavailable answer, in
// seconds: long enough not to hammer a store that is down, short enough
// that clients recover soon after it is back.
const retryAfter = "5"

// Handler authenticates requests by API key and enforces the route's
// scopes. It accepts exactly one `Authorization: ApiKey <key>` header;
// a key of scope full is accepted on every route, other keys only where
// their scope is listed. A rejected request is answered with a JSON error
// (`{"error": {"code": "...", "message": "..."}}`) and goes no further.
//
// On success, it sets these placeholders:
//
// Placeholder | Description
// ------------|-------------
// `{http.auth.user.id}` | the key's ID (also the `user_id` of the access log)
// `{http.auth.user.name}` | the key's name
// `{http.auth.user.scope}` | the key's scope: full, widget or routine
// `{http.auth.user.owner}` | the key's owner, empty if it has none
// `{http.auth.user.metadata.<name>}` | the key's metadata entry <name>, empty if it has none (resolved only when used)
//
// and, unless forward_identity is false, the request headers
// X-Api-Key-Id, X-Api-Key-Name and X-Api-Key-Scope for the upstream, and
// X-Api-Key-Owner if the key has an owner.
type Handler struct {
	// Scopes are the key scopes this route accepts besides full: "widget",
	// "routine". Empty: full keys only.
	Scopes []string `json:"scopes,omitempty"`

	// Realm is named in the WWW-Authenticate challenge of 401 answers.
	// Default: `keygate`.
	Realm string `json:"realm,omitempty"`

	// KeepCredentials passes the Authorization header, and so the key
	// itself, to the upstream. By default it is removed, so that an
	// upstream, its logs and whatever it calls never see keys. Enable it
	// only for an upstream that verifies keys itself.
	KeepCredentials bool `json:"keep_credentials,omitempty"`

	// ForwardIdentity sets the X-Api-Key-Id, X-Api-Key-Name and
	// X-Api-Key-Scope request headers for the upstream. Copies sent by the
	// client are removed either way, so an upstream can trust them.
	// Default: true.
	ForwardIdentity *bool `json:"forward_identity,omitempty"`

	// Preflight is "authenticate" to require a key on CORS preflight
	// requests (OPTIONS with Origin and Access-Control-Request-Method).
	// By default they pass without one, because browsers never send
	// credentials on a preflight; the actual request is authenticated.
	Preflight string `json:"preflight,omitempty"`

	// Owner, if set, accepts only keys of this owner: others, and keys
	// without an owner, get 403 owner_mismatch. It may hold placeholders,
	// resolved on every request, such as `{http.request.host.labels.2}`
	// for per-customer hostnames or `{http.request.header.X-Tenant}`; if
	// it resolves to nothing (an unknown placeholder or a missing header
	// count as empty), every key is refused.
	Owner string `json:"owner,omitempty"`

	// StrictPaths refuses, with 400 ambiguous_path and whatever the key,
	// requests whose path a server behind the gateway may resolve to
	// another route than the one this handler guards: ';' path
	// parameters (/api/..;/admin), backslashes, encoded slashes (%2F),
	// encoded percent signs (%252e), dot segments in any spelling (%2e%2e),
	// empty segments (//) and control characters. Enable it in front of
	// Tomcat, Jetty, Spring and other servers that decode, strip or merge
	// these before routing. Default: off (paths are passed on unchanged).
	StrictPaths bool `json:"strict_paths,omitempty"`

	// CORS makes the route usable from web pages of other origins: the
	// handler answers CORS preflights itself (204, allowing the method and
	// headers asked for, always Authorization and Content-Type, for 600
	// seconds; the upstream never sees them, and they need no key), and
	// adds Access-Control-Allow-Origin (the request's Origin),
	// Access-Control-Expose-Headers and Vary: Origin to every answer, its
	// own and the upstream's, except origin_not_allowed. It never sends
	// Access-Control-Allow-Credentials: keys travel in a header, not in
	// cookies. Which origins may use a key is the key's allowed_origins.
	// It cannot be combined with preflight authenticate.
	CORS bool `json:"cors,omitempty"`

	// RateLimitHeaders adds the RateLimit field (the key's limit closest
	// to exhaustion: what remains and when more comes back) to the
	// answers of admitted requests of keys with rate limits. A 429 always
	// carries it, with RateLimit-Policy and Retry-After. Default: true.
	RateLimitHeaders *bool `json:"rate_limit_headers,omitempty"`

	verifier      keyVerifier
	recorder      useRecorder
	logger        *zap.Logger
	accepted      apikey.ScopeSet
	challenge     string
	forward       bool
	authPreflight bool
	// ownerResolved: Owner holds placeholders to resolve per request.
	ownerResolved bool
	// ownerBody and noOwnerBody are the owner_mismatch answers, for a key
	// of another owner (or none) and for an Owner that resolved to "".
	ownerBody, noOwnerBody []byte
	// ipBody is the ip_not_allowed answer; originBody and noOriginBody the
	// origin_not_allowed answers, for an origin not allowed and for a
	// request that names none.
	ipBody, originBody, noOriginBody []byte
	// scopeBodies are the insufficient_scope answers, by the key's scope.
	scopeBodies [scopeSlots][]byte
	// ambiguousBody is the ambiguous_credentials answer.
	ambiguousBody []byte
	// pathBodies are the ambiguous_path answers, by pathcheck.Problem.
	pathBodies [pathcheck.BadEscape + 1][]byte
	// unavailableLog spaces out the error lines of 503 answers: during an
	// outage every request for an uncached key fails, and a line per
	// request would flood the log (the access log has them all anyway).
	unavailableLog *logLimiter
	// limits enforces rate limits; nil enforces none (handler tests).
	limits *rateLimits
	// limitHeaders: RateLimitHeaders is not off.
	limitHeaders bool
	// limitedBody and limitUnavailableBody are the rate_limited and
	// rate_limit_unavailable answers.
	limitedBody, limitUnavailableBody []byte
}

// keyVerifier is what the handler needs of verifier.Verifier. The
// attachment is a *keyValues when the verifier was made with attachValues,
// else nil (the handler then makes them per request).
type keyVerifier interface {
	VerifyAttached(ctx context.Context, authorization string, now time.Time) (*apikey.Key, any, error)
}

// useRecorder is what the handler needs of lastused.Recorder: Use counts
// a request of a found key by result and, for an admitted one, notes its
// last use.
type useRecorder interface {
	Use(id string, t time.Time, res lastused.Result)
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.apikey",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision connects the handler to the apikeys app (run with its defaults
// if the config has none) and prepares every answer.
func (h *Handler) Provision(ctx caddy.Context) error {
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	app, err := apikeysApp(ctx)
	if err != nil {
		return err
	}
	if app.res == nil {
		return errors.New("the apikeys app is not provisioned")
	}
	if err := h.provision(app.res.verifier, app.res.recorder, ctx.Logger()); err != nil {
		return err
	}
	h.limits = app.limits
	return nil
}

// provision checks the configuration and prepares the handler to serve
// with verifier v and recorder rec.
func (h *Handler) provision(v keyVerifier, rec useRecorder, logger *zap.Logger) error {
	h.verifier, h.recorder, h.logger = v, rec, logger
	h.unavailableLog = new(logLimiter)
	scopes := make([]apikey.Scope, 0, len(h.Scopes))
	for _, name := range h.Scopes {
		s, err := apikey.ParseScope(name)
		if err != nil {
			return err
		}
		scopes = append(scopes, s)
	}
	h.accepted = apikey.NewScopeSet(scopes...)

	realm := h.Realm
	if realm == "" {
		realm = DefaultRealm
	}
	// The realm is sent as a quoted-string; refusing what would need
	// escaping keeps the header plain and unambiguous.
	for _, c := range realm {
		if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
			return fmt.Errorf("realm %q: must not hold quotes, backslashes or control characters", realm)
		}
	}
	h.challenge = apikey.Scheme + ` realm="` + realm + `"`

	h.forward = h.ForwardIdentity == nil || *h.ForwardIdentity
	h.limitHeaders = h.RateLimitHeaders == nil || *h.RateLimitHeaders
	switch h.Preflight {
	case "":
	case PreflightAuthenticate:
		h.authPreflight = true
	default:
		return fmt.Errorf("preflight %q: want %q or nothing", h.Preflight, PreflightAuthenticate)
	}
	if h.CORS && h.authPreflight {
		return errors.New("cors and preflight authenticate cannot be combined: browsers send no key on a preflight, so every one would be refused")
	}

	h.scopeBodies[0] = errorBody(apikey.CodeScope, fmt.Sprintf(
		"this API key's scope is not accepted here: this route accepts only keys of scope %s", h.accepted))
	for _, s := range apikey.Scopes {
		h.scopeBodies[s] = errorBody(apikey.CodeScope, fmt.Sprintf(
			"this API key has scope %s, and this route accepts only keys of scope %s", s, h.accepted))
	}
	h.ownerResolved = strings.ContainsAny(h.Owner, "{}")
	h.ownerBody = errorBody(apikey.CodeOwner,
		"this API key belongs to another owner: this route accepts only the keys of its owner")
	h.noOwnerBody = errorBody(apikey.CodeOwner,
		"this route's owner is not known for this request, so no API key is accepted here")
	h.ipBody = errorBody(apikey.CodeIP,
		"this API key is not accepted from this client's IP address: it is restricted to its allowed IPs")
	h.originBody = errorBody(apikey.CodeOrigin,
		"this API key is not accepted from this origin: it is restricted to the web pages of its allowed origins")
	h.noOriginBody = errorBody(apikey.CodeOrigin,
		"this API key is accepted only from the web pages of its allowed origins, and the request has no Origin or Referer header")
	h.ambiguousBody = errorBody(apikey.CodeAmbiguous,
		"the request holds more than one Authorization header: send exactly one, Authorization: ApiKey <key>")
	h.limitedBody = errorBody(apikey.CodeRateLimited,
		"this API key has made all the requests its rate limit allows for now: retry after the seconds that Retry-After gives")
	h.limitUnavailableBody = errorBody(apikey.CodeRateLimitUnavailable,
		"the rate-limit store cannot be reached to count this API key's request: retry later")
	for _, p := range pathcheck.Problems {
		h.pathBodies[p] = errorBody(apikey.CodeAmbiguousPath,
			"the request path holds "+p.String()+": send the path in its plain form")
	}
	return nil
}

// ServeHTTP authenticates r and, if its key is accepted here, passes it to
// next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	identity.RemoveHeaders(r.Header)
	if r.Trailer != nil || r.TransferEncoding != nil {
		identity.RemoveTrailers(r)
	}

	if h.CORS {
		setCORSHeaders(w.Header(), r)
	}

	// Before the key: an ambiguous path is refused whatever the key, and
	// the answer says nothing about it.
	if h.StrictPaths {
		// The path forwarded is RawPath if it is set and valid, else Path
		// escaped: both must be plain. (EscapedPath would allocate.)
		p := pathcheck.CheckDecoded(r.URL.Path)
		if p == pathcheck.OK && r.URL.RawPath != "" {
			p = pathcheck.Check(r.URL.RawPath)
		}
		if p != pathcheck.OK {
			return h.reject(w, apikey.CodeAmbiguousPath, nil, h.pathBodies[p], nil)
		}
	}

	if h.CORS && isPreflight(r) {
		answerPreflight(w, r)
		return nil
	}
	if !h.authPreflight && isPreflight(r) {
		// Passed on without a key, so without one: a key sent anyway
		// would otherwise reach the upstream.
		if !h.KeepCredentials {
			delete(r.Header, "Authorization")
		}
		return next.ServeHTTP(w, r)
	}

	values := r.Header["Authorization"]
	if len(values) > 1 {
		return h.reject(w, apikey.CodeAmbiguous, nil, h.ambiguousBody, nil)
	}
	var authorization string
	if len(values) == 1 {
		authorization = values[0]
	}
	now := time.Now()
	k, attached, err := h.verifier.VerifyAttached(r.Context(), authorization, now)
	processMetrics.VerifyDuration.Observe(time.Since(now).Seconds())
	if err != nil {
		if errors.Is(err, apikey.ErrMissingKey) {
			if e := misplacedKey(r); e != nil {
				err = e
			}
		}
		return h.rejectVerify(w, k, err)
	}
	if !h.accepted.Allows(k.Scope) {
		return h.reject(w, apikey.CodeScope, k, h.scopeBodies[scopeIndex(k.Scope)], nil)
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if h.Owner != "" {
		owner := h.Owner
		if h.ownerResolved {
			owner = ""
			if repl != nil {
				// Unknown placeholders become "", refused below.
				owner = repl.ReplaceAll(h.Owner, "")
			}
		}
		if owner == "" {
			return h.reject(w, apikey.CodeOwner, k, h.noOwnerBody, nil)
		}
		if k.Owner != owner {
			return h.reject(w, apikey.CodeOwner, k, h.ownerBody, nil)
		}
	}

	kv, _ := attached.(*keyValues)
	if kv == nil {
		kv = valuesOf(k)
	}
	if kv.ips != nil || kv.badIPs {
		if kv.badIPs || !kv.ips.Allows(clientIP(r)) {
			return h.reject(w, apikey.CodeIP, k, h.ipBody, nil)
		}
	}
	if kv.origins != nil || kv.badOrigins {
		origin, ok := requestOrigin(r)
		if !ok {
			return h.reject(w, apikey.CodeOrigin, k, h.noOriginBody, nil)
		}
		if kv.badOrigins || !kv.origins.Allows(origin) {
			return h.reject(w, apikey.CodeOrigin, k, h.originBody, nil)
		}
	}
	// Rate limits last: a request refused by any step above never counts.
	if h.limits != nil {
		if kv.badLimits {
			return h.reject(w, apikey.CodeRateLimitUnavailable, k, h.limitUnavailableBody, nil)
		}
		pol := kv.limits
		if pol == nil {
			pol = h.limits.defaults[scopeIndex(k.Scope)]
		}
		if pol != nil {
			d, err := h.limits.limiter.Allow(k.ID, pol, now)
			switch {
			case err != nil:
				if h.limits.deny {
					return h.reject(w, apikey.CodeRateLimitUnavailable, k, h.limitUnavailableBody, nil)
				}
				// rate_limit_on_error allow: admitted, uncounted, and
				// without a RateLimit field that would be a guess.
			case !d.Allowed:
				setRateLimited(w.Header(), pol, d)
				return h.reject(w, apikey.CodeRateLimited, k, h.limitedBody, nil)
			case h.limitHeaders:
				w.Header()["Ratelimit"] = pol.RateLimitValue(d)
			}
		}
	}

	if repl != nil {
		repl.Set("http.auth.user.id", k.ID)
		repl.Set("http.auth.user.name", k.Name)
		repl.Set("http.auth.user.scope", scopeNames[scopeIndex(k.Scope)])
		repl.Set(placeholderOwner, kv.owner)
		// A provider, not values: nothing is looked up unless a
		// placeholder asks. On Caddy's fresh per-request replacer this
		// appends to spare capacity and allocates nothing.
		repl.Map(kv.metadata)
	}
	if !h.KeepCredentials {
		delete(r.Header, "Authorization")
	}
	if h.forward {
		// One allocation for the header values.
		n := 3
		if k.Owner != "" {
			n = 4
		}
		vals := make([]string, n)
		vals[0], vals[1], vals[2] = k.ID, k.Name, k.Scope.String()
		r.Header[HeaderKeyID] = vals[0:1:1]
		r.Header[HeaderKeyName] = vals[1:2:2]
		r.Header[HeaderKeyScope] = vals[2:3:3]
		if n == 4 {
			vals[3] = k.Owner
			r.Header[HeaderKeyOwner] = vals[3:4:4]
		}
	}
	h.recorder.Use(k.ID, now, lastused.ResultOK)
	processRequests.inc(processMetrics.Requests, resultOK, k.Scope)
	return next.ServeHTTP(w, r)
}

// rejectVerify answers a request whose key the verifier refused.
func (h *Handler) rejectVerify(w http.ResponseWriter, k *apikey.Key, err error) error {
	ae, ok := err.(*apikey.Error)
	if !ok {
		// A variable of its own: errors.As takes its address, which would
		// put ae on the heap on every refusal.
		var wrapped *apikey.Error
		if !errors.As(err, &wrapped) {
			// Not one of the verifier's answers: count it as the store
			// failing, the one outcome that tells the client to retry.
			h.logger.Error("verifying api key", zap.Error(err))
			return h.reject(w, apikey.CodeUnavailable, k, bodyOf(unavailableError), nil)
		}
		ae = wrapped
	}
	return h.reject(w, ae.Code(), k, bodyOf(ae), ae)
}

// unavailableError answers verifier failures that are not *apikey.Error.
var unavailableError = apikey.NewError(apikey.CodeUnavailable,
	"the key store cannot be reached to verify this API key: retry later")

// reject answers a refused request with body, counts it and logs it. ae,
// if set, is the verifier's error.
func (h *Handler) reject(w http.ResponseWriter, code apikey.Code, k *apikey.Key, body []byte, ae *apikey.Error) error {
	var scope apikey.Scope
	if k != nil {
		scope = k.Scope
		// The one place that knows the result of every refused request
		// of a found key: usage counts it here, as the metric does.
		if res, ok := lastused.ResultOf(string(code)); ok {
			h.recorder.Use(k.ID, time.Now(), res)
		}
	}
	processRequests.inc(processMetrics.Requests, code, scope)

	status := http.StatusUnauthorized
	switch code {
	case apikey.CodeScope, apikey.CodeOwner, apikey.CodeIP:
		status = http.StatusForbidden
	case apikey.CodeOrigin:
		status = http.StatusForbidden
		// A page of another origin must not read why: without these
		// the browser hands it a network error.
		delete(w.Header(), headerAllowOrigin)
		delete(w.Header(), headerExposeHeaders)
	case apikey.CodeAmbiguous, apikey.CodeAmbiguousPath:
		status = http.StatusBadRequest
	case apikey.CodeUnavailable, apikey.CodeRateLimitUnavailable:
		status = http.StatusServiceUnavailable
	case apikey.CodeRateLimited:
		status = http.StatusTooManyRequests
	}
	if status == http.StatusServiceUnavailable {
		if n, ok := h.unavailableLog.allow(time.Now()); ok {
			msg := "api key not verified: key store unavailable"
			if code == apikey.CodeRateLimitUnavailable {
				msg = "api key request refused: rate-limit store unavailable (rate_limit_on_error deny)"
			}
			if c := h.logger.Check(zapcore.ErrorLevel, msg); c != nil {
				c.Write(zap.String("code", string(code)), zap.Int64("also_refused_since_last_log", n))
			}
		}
	} else if c := h.logger.Check(zapcore.DebugLevel, "api key rejected"); c != nil {
		// Never the header's value: it may be a real key with a typo.
		fields := []zap.Field{zap.String("code", string(code))}
		if k != nil {
			fields = append(fields, zap.String("key_id", k.ID), zap.String("hint", k.Hint))
		}
		if ae != nil {
			fields = append(fields, zap.String("reason", ae.Error()))
		}
		c.Write(fields...)
	}

	hdr := w.Header()
	hdr["Content-Type"] = []string{"application/json"}
	switch status {
	case http.StatusUnauthorized:
		hdr["Www-Authenticate"] = []string{h.challenge}
	case http.StatusServiceUnavailable:
		if code == apikey.CodeRateLimitUnavailable {
			hdr["Retry-After"] = []string{rateLimitRetryAfter}
		} else {
			hdr["Retry-After"] = []string{retryAfter}
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// logLimiter allows one log line per second, counting those it holds back.
type logLimiter struct {
	last       atomic.Int64 // unix nanoseconds of the last line allowed
	suppressed atomic.Int64
}

// allow reports whether a line may be written at now and, if so, how many
// were held back since the last one.
func (l *logLimiter) allow(now time.Time) (int64, bool) {
	last := l.last.Load()
	if now.UnixNano()-last < int64(time.Second) || !l.last.CompareAndSwap(last, now.UnixNano()) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}

// isPreflight reports whether r is a CORS preflight request.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions &&
		r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// Answers to a request without a key in Authorization that sent one where
// keygate does not read it: they say where the key belongs, and never
// repeat it.
var (
	errKeyInHeader = apikey.NewError(apikey.CodeMissing,
		"no API key in the Authorization header, and a key in the X-Api-Key header is not read: send Authorization: ApiKey <key>")
	errKeyInQuery = apikey.NewError(apikey.CodeMissing,
		"no API key in the Authorization header, and a key in the api_key query parameter is not read (URLs are logged): send Authorization: ApiKey <key>")
)

// misplacedKey returns the answer to r, sent without a key in
// Authorization, if it holds an X-Api-Key header or an api_key query
// parameter (the names Caddyfile.example's access log removes), else nil.
func misplacedKey(r *http.Request) *apikey.Error {
	if _, ok := r.Header["X-Api-Key"]; ok {
		return errKeyInHeader
	}
	if hasQueryParam(r.URL.RawQuery, "api_key") {
		return errKeyInQuery
	}
	return nil
}

// hasQueryParam reports whether the raw query holds a parameter named
// name, decoded as url.ParseQuery (and so Caddy's log filter) decodes
// names. It allocates only for names with escapes.
func hasQueryParam(rawQuery, name string) bool {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		key, _, _ := strings.Cut(pair, "=")
		if key == name {
			return true
		}
		if strings.ContainsAny(key, "%+") {
			if k, err := url.QueryUnescape(key); err == nil && k == name {
				return true
			}
		}
	}
	return false
}

// scopeIndex returns s as an index of tables by scope, 0 if invalid.
func scopeIndex(s apikey.Scope) int {
	if !s.Valid() {
		return 0
	}
	return int(s)
}

// scopeNames are the scopes' names boxed once, by scopeIndex, so setting
// the scope placeholder allocates nothing.
var scopeNames = func() (names [scopeSlots]any) {
	names[0] = ""
	for _, s := range apikey.Scopes {
		names[s] = s.String()
	}
	return names
}()

// errorJSON is the body of every failure answer.
type errorJSON struct {
	Error struct {
		Code    apikey.Code `json:"code"`
		Message string      `json:"message"`
	} `json:"error"`
}

// errorBody returns the JSON answer for code and msg, ending with a newline
// for terminals. It does not escape <, > and & as HTML: the body is JSON,
// and messages show "ApiKey <key>".
func errorBody(code apikey.Code, msg string) []byte {
	var e errorJSON
	e.Error.Code, e.Error.Message = code, msg
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		panic("encoding an error body: " + err.Error()) // a struct of two strings always encodes
	}
	return b.Bytes()
}

// The verifier's errors are fixed values (a handful per key format), so
// their JSON answers are encoded once and kept, up to maxErrorBodies of
// them in case some verifier made errors per request.
var (
	errorBodies     sync.Map // *apikey.Error → []byte
	errorBodiesSize atomic.Int32
)

const maxErrorBodies = 256

// bodyOf returns the JSON answer for e.
func bodyOf(e *apikey.Error) []byte {
	if b, ok := errorBodies.Load(e); ok {
		return b.([]byte)
	}
	b := errorBody(e.Code(), e.Error())
	if errorBodiesSize.Load() < maxErrorBodies {
		if _, loaded := errorBodies.LoadOrStore(e, b); !loaded {
			errorBodiesSize.Add(1)
		}
	}
	return b
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
