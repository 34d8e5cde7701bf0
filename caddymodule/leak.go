package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/leakreport"
)

func init() {
	caddy.RegisterModule(LeakReport{})
	httpcaddyfile.RegisterHandlerDirective("apikey_leak_report", parseLeakReportCaddyfile)
	// With the handlers that answer requests, as apikey_console: it must
	// not sit behind the apikey handler (GitHub sends no API key).
	httpcaddyfile.RegisterDirectiveOrder("apikey_leak_report", httpcaddyfile.Before, "respond")
}

// Leak report actions.
const (
	LeakActionRevoke = "revoke"
	LeakActionReport = "report"
)

// LeakReport is the endpoint of GitHub's secret scanning partner program:
// GitHub POSTs every string of the key format it finds in a public
// repository, gist, issue or npm package, signed with ECDSA P-256, and the
// handler answers each token with a label and, for a key of this gateway,
// records the leak and (action revoke) revokes the key at once on every
// instance. It answers every request itself and never calls the next
// handler.
//
//	handle /leaks/github {
//	    apikey_leak_report
//	}
//
// A report is accepted only if its Github-Public-Key-Signature header (a
// base64 ASN.1 ECDSA signature of the SHA-256 of the raw body) verifies
// with the key named by its Github-Public-Key-Identifier header in the
// document at public_keys_url, fetched on first use, kept, fetched again
// (with its ETag) after an hour, and fetched again at most once a minute
// when a report names a key it lacks. A request that is not POST, not
// application/json, larger than 1 MiB, unsigned or badly signed, not a
// JSON array of tokens or of more than 1000 tokens gets a 4xx JSON error
// and changes nothing.
//
// The answer is GitHub's feedback format, in the report's order:
// [{"token_hash": "<hex SHA-256 of the token>", "token_type": "<type>",
// "label": "true_positive"|"false_positive"}]. A token that is not a
// well-formed key of the configured prefix, or that no key has, is a
// false positive. A token is never logged: logs name keys by ID and
// hint, and other tokens by their hash.
type LeakReport struct {
	// PublicKeysURL is where the keys that sign reports are published.
	// It must be https, or http to a loopback host (localhost, 127.0.0.0/8,
	// ::1) for a local mirror: over plain http elsewhere, whoever is on the
	// path could sign reports and revoke keys. Placeholders such as
	// {env.X} are replaced at provision. Default:
	// https://api.github.com/meta/public_keys/secret_scanning.
	PublicKeysURL string `json:"public_keys_url,omitempty"`

	// Action is what a report of an active key of this gateway does:
	// "revoke" revokes it (GitHub treats every reported token as public
	// and compromised), except a widget key with allowed origins, which is
	// public by design and useless elsewhere; "report" records the leak and
	// changes nothing. Either way the key is a true positive. Default:
	// revoke.
	Action string `json:"action,omitempty"`

	handler *leakreport.Handler
}

// CaddyModule returns the Caddy module information.
func (LeakReport) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.apikey_leak_report",
		New: func() caddy.Module { return new(LeakReport) },
	}
}

// Provision gets the key service of the apikeys app and prepares the
// verification of reports. It fetches nothing: the public keys are
// fetched when the first report arrives, so a config loads while GitHub
// cannot be reached.
func (l *LeakReport) Provision(ctx caddy.Context) error {
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	app, err := apikeysApp(ctx)
	if err != nil {
		return err
	}
	return l.provision(app, ctx.Logger())
}

// provision prepares the handler over the key service of app.
func (l *LeakReport) provision(app *App, logger *zap.Logger) error {
	svc := app.service()
	if svc == nil {
		return errors.New("the apikeys app is not provisioned")
	}
	revoke, err := leakAction(l.Action)
	if err != nil {
		return err
	}
	rawURL := l.PublicKeysURL
	if rawURL == "" {
		rawURL = leakreport.DefaultPublicKeysURL
	}
	rawURL, err = caddy.NewReplacer().ReplaceOrErr(rawURL, true, true)
	if err != nil {
		return fmt.Errorf("apikey_leak_report: public_keys_url: %w", err)
	}
	keys, err := leakreport.NewKeySet(leakreport.KeySetConfig{URL: rawURL, Logger: logger})
	if err != nil {
		return fmt.Errorf("apikey_leak_report: %w", err)
	}
	// The app's prefix after its default; the app checked it already.
	prefix := app.KeyPrefix
	if prefix == "" {
		prefix = apikey.DefaultPrefix
	}
	format, err := apikey.NewFormat(prefix)
	if err != nil {
		return fmt.Errorf("apikey_leak_report: %w", err)
	}
	l.handler, err = leakreport.New(leakreport.Config{
		Keys:    keys,
		Format:  format,
		Service: svc,
		Revoke:  revoke,
		Labels:  processMetrics.LeakReports,
		Logger:  logger,
	})
	return err
}

// ServeHTTP answers a leak report.
func (l *LeakReport) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	l.handler.ServeHTTP(w, r)
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	apikey_leak_report [<matcher>] {
//	    public_keys_url <url>
//	    action revoke|report
//	}
func (l *LeakReport) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "public_keys_url":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if l.PublicKeysURL != "" {
				return d.Err("public_keys_url is given more than once")
			}
			l.PublicKeysURL = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			// A URL with placeholders is checked when they are replaced.
			if !strings.Contains(l.PublicKeysURL, "{") {
				if _, err := leakreport.CheckPublicKeysURL(l.PublicKeysURL); err != nil {
					return d.Err(err.Error())
				}
			}
		case "action":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if l.Action != "" {
				return d.Err("action is given more than once")
			}
			l.Action = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			if _, err := leakAction(l.Action); err != nil {
				return d.Err(err.Error())
			}
		default:
			return d.Errf("unrecognized subdirective %q", d.Val())
		}
	}
	return nil
}

func parseLeakReportCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	l := new(LeakReport)
	err := l.UnmarshalCaddyfile(h.Dispenser)
	return l, err
}

// leakAction reports whether action, "" meaning the default, revokes.
func leakAction(action string) (revoke bool, err error) {
	switch action {
	case "", LeakActionRevoke:
		return true, nil
	case LeakActionReport:
		return false, nil
	}
	return false, fmt.Errorf("apikey_leak_report: unknown action %s: want revoke or report", apikey.QuoteInput(action))
}

// Interface guards
var (
	_ caddy.Provisioner           = (*LeakReport)(nil)
	_ caddyhttp.MiddlewareHandler = (*LeakReport)(nil)
	_ caddyfile.Unmarshaler       = (*LeakReport)(nil)
)
