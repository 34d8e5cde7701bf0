// Command keygate is Caddy with the standard modules and keygate compiled
// in: run it as you would run caddy (keygate run --config Caddyfile), and
// manage keys with keygate apikey.
//
// Its version is keygate's (internal/version): set it for a release with
//
//	go build -ldflags "-X github.com/docana/keygate/internal/version.override=v1.4.0" ./cmd/keygate
package main

import (
	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/docana/keygate/caddymodule"
	"github.com/docana/keygate/internal/version"
)

func main() {
	v := version.String()
	// Caddy's CLI names itself after these: the help's usage lines and
	// header, and `keygate version` ("keygate v1.4.0 on Caddy v2.11.9 h1:…").
	caddy.CustomBinaryName = "keygate"
	caddy.CustomVersion = "keygate " + v + " on Caddy"
	caddy.CustomLongDescription = `keygate ` + v + ` is API-key authentication for HTTP APIs, built on Caddy.

It checks "Authorization: ApiKey <key>" on every request against a key store,
enforces each key's scope per route, and proxies what it allows with Caddy's
reverse_proxy. Everything Caddy does, keygate does: run it with a Caddyfile.

To run keygate, use:

	- 'keygate run --config Caddyfile' in the foreground (recommended);
	- 'keygate apikey create|list|show|update|revoke|rotate' to manage keys
	  on a running gateway (through its admin endpoint).

See https://github.com/docana/keygate for the README, and
https://caddyserver.com/docs/ for everything Caddy.`
	caddycmd.Main()
}
