package caddymodule

import (
	"errors"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/policy"
	"github.com/docana/keygate/internal/ratelimit"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("apikeys", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("apikey", parseCaddyfile)
	// Before basic_auth, and so before every handler that answers or
	// proxies (reverse_proxy, respond, file_server...), without an order
	// option.
	httpcaddyfile.RegisterDirectiveOrder("apikey", httpcaddyfile.Before, "basic_auth")
}

// parseGlobalOption sets up the apikeys app from the global option of the
// same name. It returns the value type httpcaddyfile.App, which the
// Caddyfile adapter turns into the app's config.
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		d.Next() // the option's name, for the error's line
		return nil, d.Err("the apikeys global option is given more than once")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{
		Name:  "apikeys",
		Value: caddyconfig.JSON(app, nil),
	}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens. Syntax:
//
//	apikeys {
//	    store sqlite [<path>]
//	    store postgres <dsn>
//	    key_prefix <prefix>
//	    cache_size <n>
//	    cache_ttl <duration>
//	    negative_cache_ttl <duration>
//	    last_used_interval <duration>
//	    sync_interval <duration>
//	    confirm_timeout <duration>
//	    rate_limit <scope> <N/WINDOW>...
//	    rate_limit_store local|redis <url>
//	    rate_limit_on_error allow|deny
//	    audit_retention <duration>
//	}
//
// Every subdirective is optional and may be given once, but rate_limit,
// given once per scope.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] && sub != "rate_limit" {
			return d.Errf("%s is given more than once", sub)
		}
		seen[sub] = true
		switch sub {
		case "rate_limit":
			if err := a.parseRateLimit(d); err != nil {
				return err
			}
		case "rate_limit_store":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch backend := d.Val(); backend {
			case RateLimitLocal:
				a.RateLimitStore = &RateLimitStoreConfig{Backend: RateLimitLocal}
			case RateLimitRedis:
				if !d.NextArg() {
					return d.Err("rate_limit_store redis needs a URL, such as redis://127.0.0.1:6379/0 or {env.KEYGATE_REDIS}")
				}
				a.RateLimitStore = &RateLimitStoreConfig{Backend: RateLimitRedis, URL: d.Val()}
			default:
				return d.Errf("unknown rate_limit_store %q: want local or redis <url>", backend)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "rate_limit_on_error":
			var val string
			if !d.AllArgs(&val) {
				return d.ArgErr()
			}
			if val != RateLimitAllow && val != RateLimitDeny {
				return d.Errf("rate_limit_on_error %q: want allow or deny", val)
			}
			a.RateLimitOnError = val
		case "store":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch backend := d.Val(); backend {
			case BackendSQLite:
				a.Store = &StoreConfig{Backend: BackendSQLite}
				if d.NextArg() {
					a.Store.Path = d.Val()
				}
			case BackendPostgres:
				a.Store = &StoreConfig{Backend: BackendPostgres}
				if !d.NextArg() {
					return d.Err("store postgres needs a DSN, such as {env.KEYGATE_DSN}")
				}
				a.Store.DSN = d.Val()
			default:
				return d.Errf("unknown store backend %q: want sqlite or postgres", backend)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "key_prefix":
			var prefix string
			if !d.AllArgs(&prefix) {
				return d.ArgErr()
			}
			if _, err := apikey.NewFormat(prefix); err != nil {
				return d.Err(err.Error())
			}
			a.KeyPrefix = prefix
		case "cache_size":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				return d.Errf("cache_size %q: want a positive whole number", s)
			}
			a.CacheSize = n
		case "cache_ttl":
			if err := parseDuration(d, &a.CacheTTL); err != nil {
				return err
			}
		case "negative_cache_ttl":
			if err := parseDuration(d, &a.NegativeCacheTTL); err != nil {
				return err
			}
		case "last_used_interval":
			if err := parseDuration(d, &a.LastUsedInterval); err != nil {
				return err
			}
		case "sync_interval":
			if err := parseDuration(d, &a.SyncInterval); err != nil {
				return err
			}
		case "confirm_timeout":
			// 0s is a value of its own here (answer at once), not "unset".
			var arg string
			if !d.AllArgs(&arg) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(arg)
			if err != nil {
				return d.Errf("confirm_timeout %q: %v", arg, err)
			}
			if dur < 0 {
				return d.Errf("confirm_timeout %q: must not be negative", arg)
			}
			cd := caddy.Duration(dur)
			a.ConfirmTimeout = &cd
		case "audit_retention":
			if err := parseDuration(d, &a.AuditRetention); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective %q", sub)
		}
	}
	return nil
}

// parseRateLimit reads `rate_limit <scope> <N/WINDOW>...`: the default
// limits of the keys of one scope.
func (a *App) parseRateLimit(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("rate_limit needs a scope and its limits, such as rate_limit widget 10/1s 1000/1d")
	}
	scope := d.Val()
	if _, err := apikey.ParseScope(scope); err != nil {
		return d.Errf("rate_limit: %v", err)
	}
	if _, ok := a.RateLimits[scope]; ok {
		return d.Errf("rate_limit %s is given more than once: give all its limits on one line", scope)
	}
	list := d.RemainingArgs()
	if len(list) == 0 {
		return d.Errf("rate_limit %s needs at least one limit N/WINDOW, such as 100/1m", scope)
	}
	norm, err := ratelimit.CheckLimits(list)
	if err != nil {
		if ee, ok := errors.AsType[*policy.EntryError](err); ok {
			return d.Errf("rate_limit %s: %v", scope, ee.Err)
		}
		return d.Errf("rate_limit %s: %v", scope, err)
	}
	if a.RateLimits == nil {
		a.RateLimits = make(map[string][]string)
	}
	a.RateLimits[scope] = norm
	return nil
}

// parseDuration reads the one argument of the current subdirective, a
// positive duration such as 30s, 5m or 1d.
func parseDuration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	name := d.Val()
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s %q: %v", name, s, err)
	}
	if dur <= 0 {
		return d.Errf("%s %q: must be positive", name, s)
	}
	*dst = caddy.Duration(dur)
	return nil
}

// parseCaddyfile sets up the handler from the apikey directive.
func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return handler, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	apikey [<matcher>] [<scope>...] {
//	    realm <name>
//	    keep_credentials
//	    forward_identity off
//	    preflight authenticate
//	    strict_paths
//	    owner <value>
//	    cors
//	    rate_limit_headers off
//	}
//
// The scopes are those the route accepts besides full: widget, routine.
// With none, the route accepts full keys only. Every subdirective is
// optional and may be given once.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	for d.NextArg() {
		if _, err := apikey.ParseScope(d.Val()); err != nil {
			return d.Err(err.Error())
		}
		h.Scopes = append(h.Scopes, d.Val())
	}
	seen := make(map[string]bool)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return d.Errf("%s is given more than once", sub)
		}
		seen[sub] = true
		switch sub {
		case "realm":
			var realm string
			if !d.AllArgs(&realm) || realm == "" {
				return d.ArgErr()
			}
			for _, c := range realm {
				if c < 0x20 || c == 0x7f || c == '"' || c == '\\' {
					return d.Errf("realm %q: must not hold quotes, backslashes or control characters", realm)
				}
			}
			h.Realm = realm
		case "keep_credentials":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.KeepCredentials = true
		case "strict_paths":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.StrictPaths = true
		case "cors":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.CORS = true
		case "forward_identity":
			var val string
			if !d.AllArgs(&val) {
				return d.ArgErr()
			}
			switch val {
			case "off":
				off := false
				h.ForwardIdentity = &off
			case "on":
				h.ForwardIdentity = nil // the default
			default:
				return d.Errf("forward_identity %q: want off (or on, the default)", val)
			}
		case "preflight":
			var val string
			if !d.AllArgs(&val) {
				return d.ArgErr()
			}
			if val != PreflightAuthenticate {
				return d.Errf("preflight %q: want %s", val, PreflightAuthenticate)
			}
			h.Preflight = val
		case "rate_limit_headers":
			var val string
			if !d.AllArgs(&val) {
				return d.ArgErr()
			}
			switch val {
			case "off":
				off := false
				h.RateLimitHeaders = &off
			case "on":
				h.RateLimitHeaders = nil // the default
			default:
				return d.Errf("rate_limit_headers %q: want off (or on, the default)", val)
			}
		case "owner":
			var val string
			if !d.AllArgs(&val) {
				return d.ArgErr()
			}
			if val == "" {
				return d.Err("owner needs a value, such as {http.request.host.labels.2}: an empty one would refuse every key")
			}
			h.Owner = val
		default:
			return d.Errf("unrecognized subdirective %q", sub)
		}
	}
	if h.CORS && h.Preflight != "" {
		return d.Err("cors and preflight authenticate cannot be combined: browsers send no key on a preflight, so every one would be refused")
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
