// Package console is the API Keys page: a management console for keygate's
// keys, served as one http.Handler with server-rendered HTML, one embedded
// stylesheet and one embedded script. It knows nothing of Caddy: the Caddy
// module in caddymodule/console.go mounts it and tells it who is signed in.
//
// The console has no login of its own. It serves a request only when an
// authentication handler before it established a user (Config.User), or,
// when Config.AllowUnauthenticated is set, when the request comes from a
// loopback address. Every change is logged with the user, the action and
// the key ID; a key's secret is shown once, in the response to the request
// that created it, and never appears in a URL, a cookie, a redirect or a log.
//
// With Config.Owner the console is one owner's (a customer organisation's):
// every call goes through keyservice.Service.ForOwner, so it lists,
// creates, edits, rotates and revokes only that owner's keys, a key of
// another owner is answered exactly like one that does not exist (404),
// and no owner is ever read from the request's form or query. A request
// for which the owner resolves to "" gets 403. Without it, the console is
// the operator's, over every key, with an owner column and filter.
//
// URLs are relative, so the console works under any path prefix as long as
// the prefix is stripped before it (Caddy's handle_path):
//
//	GET  /                 the page, 50 keys at a time; ?status=active|expired|revoked|all,
//	                       ?scope=, ?q= filter it, ?cursor= (older) or ?before= (newer)
//	                       page it, ?owner= (the operator's console) keeps one owner's keys,
//	                       ?dialog=create|edit|revoke|rotate[&id=] opens a dialog
//	POST /                 op=create|update|revoke|rotate: a change. With "Accept:
//	                       application/json" (the page's script) the answer is JSON;
//	                       otherwise the page is rendered with the outcome.
//	GET  /?view=usage&id=ID[&range=24h|7d|30d|90d]
//	                       a key's requests by result: a chart and a table
//	GET  /?view=activity[&key=ID][&cursor=C]
//	                       the audit log, newest first (the owner's, in an owner's console)
//	GET  /static/<name>    the stylesheet and the script, under content-hashed names
package console

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

// Security headers sent with every response. The policy allows no inline
// script or style: the page's behaviour and look come from the two embedded
// files only.
const (
	contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
	// maxFormBytes bounds a POST body: a name of 100 characters and a few
	// short fields fit many times over.
	maxFormBytes = 64 << 10
	// storeTimeout bounds the store calls of one request.
	storeTimeout = 10 * time.Second
)

// Config configures a Handler.
type Config struct {
	// Service manages the keys; the console has no other access to them.
	// Required.
	Service *keyservice.Service
	// User returns the user an authentication handler before the console
	// established for the request (Caddy's {http.auth.user.id}), or "" if
	// none did. Nil means no request has a user.
	User func(r *http.Request) string
	// AllowUnauthenticated serves requests without a user, but only from
	// loopback addresses (the direct peer of the connection); any other
	// address still gets 403. It is for a gateway whose console is reached
	// through an SSH tunnel or on the machine itself.
	AllowUnauthenticated bool
	// RequestPath returns the path the browser asked for, before a prefix
	// was stripped, so that a request for "/console" can be redirected to
	// "/console/" (the page's relative links need the trailing slash). Nil
	// means r.URL.Path.
	RequestPath func(r *http.Request) string
	// Owner, when set, makes the console one owner's: it returns the owner
	// for a request (Caddy's owner subdirective, placeholders resolved),
	// and the console then lists, creates, edits, rotates and revokes only
	// that owner's keys (keyservice.Service.ForOwner), answering a key of
	// another owner as not found. A request for which it returns "" or no
	// valid owner is refused with 403. Nil means the operator's console,
	// over every key.
	Owner func(r *http.Request) string
	// Logger receives one info entry per change (user, action, key ID) and
	// the errors of the store. Nil means no logging.
	Logger *zap.Logger
	// ClientIP returns the address of the client of a request, as the
	// audit log records it (Caddy's client IP, which honours
	// trusted_proxies). Nil means the connection's remote address.
	ClientIP func(r *http.Request) string
}

// Handler serves the console. It is safe for concurrent use.
type Handler struct {
	svc         *keyservice.Service
	user        func(*http.Request) string
	allowAnon   bool
	requestPath func(*http.Request) string
	owner       func(*http.Request) string
	logger      *zap.Logger
	clientIP    func(*http.Request) string
	cop         *http.CrossOriginProtection
	assets      *assetSet
}

// New returns a console handler.
func New(cfg Config) (*Handler, error) {
	if cfg.Service == nil {
		return nil, fmt.Errorf("console: a key service is required")
	}
	h := &Handler{
		svc:         cfg.Service,
		user:        cfg.User,
		allowAnon:   cfg.AllowUnauthenticated,
		requestPath: cfg.RequestPath,
		owner:       cfg.Owner,
		logger:      cfg.Logger,
		clientIP:    cfg.ClientIP,
		cop:         http.NewCrossOriginProtection(),
		assets:      defaultAssets,
	}
	if h.user == nil {
		h.user = func(*http.Request) string { return "" }
	}
	if h.requestPath == nil {
		h.requestPath = func(r *http.Request) string { return r.URL.Path }
	}
	if h.logger == nil {
		h.logger = zap.NewNop()
	}
	return h, nil
}

// ServeHTTP serves the page, its changes and its static files.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	p := r.URL.Path
	if name, ok := strings.CutPrefix(p, "/static/"); ok {
		h.serveAsset(w, r, name)
		return
	}
	if p != "/" && p != "" {
		h.renderMessage(w, r, http.StatusNotFound, messagePage{
			Title: "Not found",
			Lines: []string{
				"The API Keys console answers at the root of the path it is mounted on. Mount it with handle_path, which strips the prefix:",
			},
			Example: "handle_path /console/* {\n\tbasic_auth { ... }\n\tapikey_console\n}",
		})
		return
	}
	sess, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if rp := h.requestPath(r); rp != "" && !strings.HasSuffix(rp, "/") {
			// The page's links are relative to its directory.
			loc := path.Base(rp) + "/"
			if r.URL.RawQuery != "" {
				loc += "?" + r.URL.RawQuery
			}
			// Not http.Redirect: it would make loc absolute from the
			// stripped path, losing the prefix.
			w.Header().Set("Location", loc)
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		h.servePage(w, r, sess)
	case http.MethodPost:
		// Browsers say where a request comes from (Sec-Fetch-Site, Origin);
		// a change from another site is refused before anything is read.
		if err := h.cop.Check(r); err != nil {
			h.crossOrigin(w, r)
			return
		}
		h.serveChange(w, r, sess)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		h.renderMessage(w, r, http.StatusMethodNotAllowed, messagePage{
			Title: "Method not allowed",
			Lines: []string{"The console answers GET and POST only."},
		})
	}
}

// session is who makes a request, and what they may see.
type session struct {
	user  string // "" for an unauthenticated request from loopback
	owner string // the owner whose console this is; "" for the operator's
	// svc is the key service the request uses: bound to owner when the
	// console is an owner's.
	svc *keyservice.Service
}

// authenticate returns who is making the request and the keys they may
// manage, answering 403 itself when nobody is signed in and the request may
// not go without, or when the console is an owner's and the request names
// none.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (session, bool) {
	user, ok := h.authenticateUser(w, r)
	if !ok {
		return session{}, false
	}
	// Every change made through this request is audited as the
	// signed-in user's, from the request's address and browser.
	ip := r.RemoteAddr
	if h.clientIP != nil {
		ip = h.clientIP(r)
	} else if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	sess := session{user: user, svc: h.svc.As(keystore.Audit{
		Actor:     apikey.Actor{Type: apikey.ActorConsole, ID: apikey.FitActorID(user)},
		RemoteIP:  ip,
		UserAgent: r.UserAgent(),
	})}
	if h.owner == nil {
		return sess, true
	}
	sess.owner = h.owner(r)
	if sess.owner == "" || apikey.CheckOwner(sess.owner) != nil {
		// Fail closed: a session that names no organisation, or one no
		// key could belong to, sees no key at all.
		h.logger.Info("console refused a request that names no owner", zap.String("user", user))
		h.renderMessage(w, r, http.StatusForbidden, messagePage{
			Title: "No organisation",
			Lines: []string{
				"This API Keys console shows the keys of your organisation, and your session does not name one.",
				"Sign in with an account that belongs to an organisation, or ask your organisation's administrator for access.",
			},
		})
		return session{}, false
	}
	sess.svc = sess.svc.ForOwner(sess.owner)
	return sess, true
}

// authenticateUser returns who is making the request, answering 403
// itself when nobody is signed in and the request may not go without.
func (h *Handler) authenticateUser(w http.ResponseWriter, r *http.Request) (string, bool) {
	if user := h.user(r); user != "" {
		return user, true
	}
	if h.allowAnon {
		if isLoopback(r.RemoteAddr) {
			return "", true
		}
		h.renderMessage(w, r, http.StatusForbidden, messagePage{
			Title: "Only from this machine",
			Lines: []string{
				"This API Keys console is configured with allow_unauthenticated, so it answers only requests from a loopback address (127.0.0.1 or ::1).",
				"To use it from elsewhere, put an authentication handler such as basic_auth or forward_auth before apikey_console.",
			},
		})
		return "", false
	}
	h.renderMessage(w, r, http.StatusForbidden, messagePage{
		Title: "Sign-in required",
		Lines: []string{
			"The API Keys console has no login of its own: it relies on an authentication handler before it, such as basic_auth or forward_auth to your single sign-on, and none identified you.",
			"If you operate this gateway, add one to the route that serves the console, for example:",
		},
		Example: "handle_path /console/* {\n\tbasic_auth {\n\t\tadmin <hash from keygate hash-password>\n\t}\n\tapikey_console\n}",
	})
	return "", false
}

// crossOrigin answers a state-changing request sent from another origin.
func (h *Handler) crossOrigin(w http.ResponseWriter, r *http.Request) {
	h.logger.Info("console refused a cross-origin request",
		zap.String("origin", r.Header.Get("Origin")),
		zap.String("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")))
	if wantsJSON(r) {
		writeJSONError(w, http.StatusForbidden, "", "cross-origin requests cannot change keys")
		return
	}
	h.renderMessage(w, r, http.StatusForbidden, messagePage{
		Title: "Cross-origin request refused",
		Lines: []string{"Keys can only be changed from the console's own pages, not from another site."},
	})
}

func setSecurityHeaders(hd http.Header) {
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// isLoopback reports whether remoteAddr ("host:port") is a loopback address.
func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

// requestContext bounds the store calls one request makes.
func requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), storeTimeout)
}
