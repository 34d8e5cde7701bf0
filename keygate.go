// Package keygate is API-key authentication for Caddy. Importing it
// registers keygate's Caddy modules and its apikey command, which is all a
// custom build needs:
//
//	xcaddy build --with github.com/docana/keygate
//
// The modules themselves live in package caddymodule.
package keygate

import _ "github.com/docana/keygate/caddymodule" // registers the modules
