package caddymodule

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/console"
)

func init() {
	caddy.RegisterModule(Console{})
	httpcaddyfile.RegisterHandlerDirective("apikey_console", parseConsoleCaddyfile)
	// After every authentication handler (basic_auth, forward_auth) and
	// every routing directive, with the handlers that answer requests.
	httpcaddyfile.RegisterDirectiveOrder("apikey_console", httpcaddyfile.Before, "respond")
}

// Console serves the API Keys page: a management console to list, filter,
// create, revoke and rotate the keys of the apikeys app, for people in a
// browser. It answers every request itself and never calls the next
// handler.
//
// It has no login of its own. It serves a request only if an
// authentication handler before it set `{http.auth.user.id}` (basic_auth
// does; after forward_auth, set it with `vars http.auth.user.id
// {http.request.header.Remote-User}`); otherwise it answers 403 with a page
// that explains this. The apikey handler does not count: a request it let
// through is an application's, not a person's. Mount it with handle_path, which strips the prefix:
//
//	handle_path /console/* {
//	    basic_auth {
//	        admin <hash from keygate hash-password>
//	    }
//	    apikey_console
//	}
//
// With owner, the console is one customer's: its value, with placeholders
// resolved per request (a header that forward_auth copied from the
// application's session, or a `map` from {http.auth.user.id}), names the
// owner whose keys it lists, creates, edits, rotates and revokes; a key of
// another owner is answered as not found, and a request for which the
// value resolves to "" (or to no valid owner) gets 403. Without it, the
// console is the operator's, over every key:
//
//	handle_path /console/* {
//	    forward_auth localhost:3000 {
//	        uri /session
//	        copy_headers X-Org-Id X-User-Id X-Role
//	    }
//	    vars http.auth.user.id {http.request.header.X-User-Id}
//	    apikey_console {
//	        owner {http.request.header.X-Org-Id}
//	    }
//	}
//
// Every change is logged at info level with the user, the action and the
// key ID. A key's secret is shown once, in the body of the response that
// created it, and never appears in a URL, a cookie or a log. Changes from
// another origin are refused, and the pages carry a strict
// Content-Security-Policy.
type Console struct {
	// AllowUnauthenticated serves requests that no authentication handler
	// identified, but only when the connection comes from a loopback
	// address (127.0.0.1, ::1): any other peer still gets 403. It is for a
	// gateway whose console is reached on the machine itself or through an
	// SSH tunnel. Behind a proxy on the same machine every request comes
	// from loopback, so do not use it there. Default: false.
	AllowUnauthenticated bool `json:"allow_unauthenticated,omitempty"`

	// Owner makes the console one owner's (a customer organisation's): it
	// shows and changes only the keys of that owner, and the keys it
	// creates belong to it. Placeholders are resolved per request, unknown
	// ones to ""; a request for which the value resolves to "" or to
	// something that is not an owner (1-128 characters of A-Z a-z 0-9 . _
	// : @ -) is refused with 403, so a session that names no organisation
	// sees nothing. A value without placeholders must be a valid owner
	// when the config loads. The owner is taken from this value only,
	// never from the request's form. Default: none, the operator's console
	// over every key, with an owner column and filter.
	Owner string `json:"owner,omitempty"`

	handler *console.Handler
}

// CaddyModule returns the Caddy module information.
func (Console) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.apikey_console",
		New: func() caddy.Module { return new(Console) },
	}
}

// Provision gets the key service of the apikeys app and prepares the
// console.
func (c *Console) Provision(ctx caddy.Context) error {
	app, err := apikeysApp(ctx)
	if err != nil {
		return err
	}
	return c.provision(app, ctx.Logger())
}

// provision prepares the console over the key service of app.
func (c *Console) provision(app *App, logger *zap.Logger) error {
	svc := app.service()
	if svc == nil {
		return errors.New("the apikeys app is not provisioned")
	}
	// A value without placeholders is one owner, known now: a typo that
	// no key could have as owner is a config error, not a console that
	// refuses everyone.
	if c.Owner != "" && !strings.Contains(c.Owner, "{") {
		if err := apikey.CheckOwner(c.Owner); err != nil {
			return fmt.Errorf("apikey_console owner: %w", err)
		}
	}
	var err error
	c.handler, err = console.New(console.Config{
		Service:              svc,
		User:                 authUser,
		AllowUnauthenticated: c.AllowUnauthenticated,
		RequestPath:          originalPath,
		Owner:                c.ownerFunc(),
		Logger:               logger,
		ClientIP:             consoleClientIP,
	})
	return err
}

// consoleClientIP is the client address the audit log records for a
// console change: Caddy's client IP, which honours trusted_proxies, or
// the connection's address when Caddy set none.
func consoleClientIP(r *http.Request) string {
	if s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); s != "" {
		return s
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	c.handler.ServeHTTP(w, r)
	return nil
}

// UnmarshalCaddyfile sets up the console from Caddyfile tokens. Syntax:
//
//	apikey_console [<matcher>] {
//	    allow_unauthenticated
//	    owner <value>
//	}
func (c *Console) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "allow_unauthenticated":
			if d.NextArg() {
				return d.ArgErr()
			}
			if c.AllowUnauthenticated {
				return d.Err("allow_unauthenticated is given more than once")
			}
			c.AllowUnauthenticated = true
		case "owner":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if c.Owner != "" {
				return d.Err("owner is given more than once")
			}
			c.Owner = d.Val()
			if c.Owner == "" {
				return d.Err("owner must not be empty: leave it out for the operator's console")
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized subdirective %q", d.Val())
		}
	}
	return nil
}

func parseConsoleCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(Console)
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return c, err
}

// ownerFunc returns the function that resolves the console's owner for a
// request, or nil when the console is the operator's.
func (c *Console) ownerFunc() func(*http.Request) string {
	if c.Owner == "" {
		return nil
	}
	owner := c.Owner
	return func(r *http.Request) string {
		repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if !ok {
			return ""
		}
		// Unknown placeholders become "": a missing header is no owner,
		// and the console refuses the request.
		return repl.ReplaceAll(owner, "")
	}
}

// authUser returns the user an authentication handler established for r.
// A user set by the apikey handler is an API key, not a person: were it
// accepted, anyone holding a key (even a widget key shipped in a web page)
// could manage keys. The apikey handler alone sets http.auth.user.scope, so
// that tells it apart.
func authUser(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	if _, byKey := repl.Get("http.auth.user.scope"); byKey {
		return ""
	}
	user, _ := repl.GetString("http.auth.user.id")
	return user
}

// originalPath returns the path the client asked for, before handle_path
// or another rewrite changed it.
func originalPath(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		return orig.URL.Path
	}
	return r.URL.Path
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Console)(nil)
	_ caddyhttp.MiddlewareHandler = (*Console)(nil)
	_ caddyfile.Unmarshaler       = (*Console)(nil)
)
