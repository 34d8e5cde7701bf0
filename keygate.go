// Package keygate is API-key authentication for Caddy. Importing it
// registers keygate's Caddy modules and its apikey command, so that the
// module path itself names a package a custom build can import. The
// modules live in package caddymodule; xcaddy.md shows the build that is
// tested.
package keygate

import _ "github.com/docana/keygate/caddymodule" // registers the modules
