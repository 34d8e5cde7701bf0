// Command keygate is Caddy with the standard modules and keygate compiled
// in: run it as you would run caddy (keygate run --config Caddyfile), and
// manage keys with keygate apikey.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/docana/keygate/caddymodule"
)

func main() {
	caddycmd.Main()
}
