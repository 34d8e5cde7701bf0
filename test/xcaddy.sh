#!/usr/bin/env bash
# Builds keygate into Caddy with xcaddy exactly as xcaddy.md says, and checks
# the result end to end: every module cmd/keygate has, named in xcaddy.md,
# the apikey CLI, and a key that authenticates a request and is refused once
# revoked. CI runs it; by hand: bash test/xcaddy.sh (a few minutes the first
# time: xcaddy builds with -trimpath and its own tags, so Go's build cache of
# a normal build does not serve it).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
caddy_pid=
trap '[ -n "$caddy_pid" ] && kill "$caddy_pid" 2>/dev/null; rm -rf "$work"' EXIT

# The build of xcaddy.md: install xcaddy, then build with keygate pinned to
# the version Go gives a replaced module, so that nothing asks a module proxy
# about github.com/docana/keygate.
GOFLAGS= go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
xcaddy="$(go env GOPATH)/bin/xcaddy"
ln -s "$repo" "$work/keygate"
(cd "$work" && "$xcaddy" build v2.11.9 \
	--with github.com/docana/keygate@v0.0.0-00010101000000-000000000000=./keygate) >"$work/build.log" 2>&1 ||
	{ tail -40 "$work/build.log"; echo "xcaddy build failed"; exit 1; }
caddy="$work/caddy"

# The same keygate modules as cmd/keygate, each named in xcaddy.md.
(cd "$repo" && go build -o "$work/keygate-bin" ./cmd/keygate)
want="$("$work/keygate-bin" list-modules --skip-standard | grep -E '^[a-z]' | sort)"
got="$("$caddy" list-modules --skip-standard | grep -E '^[a-z]' | sort)"
if [ "$want" != "$got" ]; then
	echo "xcaddy build has modules:"; echo "$got"; echo "cmd/keygate has:"; echo "$want"; exit 1
fi
for m in $want; do
	grep -qF "\`$m\`" "$repo/xcaddy.md" || { echo "xcaddy.md does not name the module $m"; exit 1; }
done
"$caddy" apikey --help >/dev/null

# End to end, with a Caddyfile like xcaddy.md's.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
admin="127.0.0.1:$(port)"
site="$(port)"
cat >"$work/Caddyfile" <<CADDYFILE
{
	admin $admin
	apikeys {
		store sqlite $work/keys.db
	}
}

http://127.0.0.1:$site {
	apikey
	respond "hello from behind keygate"
}
CADDYFILE
HOME="$work" XDG_DATA_HOME="$work/data" XDG_CONFIG_HOME="$work/config" \
	"$caddy" run --config "$work/Caddyfile" >"$work/caddy.log" 2>&1 &
caddy_pid=$!
for _ in $(seq 100); do curl -fs "http://$admin/config/" >/dev/null 2>&1 && break; sleep 0.2; done
created="$("$caddy" apikey create --address "$admin" --name "xcaddy smoke test" --scope full --expires 1d --json)"
secret="$(printf '%s' "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')"
id="$(printf '%s' "$created" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"]["id"])')"
body="$(curl -s -H "Authorization: ApiKey $secret" "http://127.0.0.1:$site/")"
[ "$body" = "hello from behind keygate" ] || { echo "a valid key got: $body"; cat "$work/caddy.log"; exit 1; }
"$caddy" apikey revoke --address "$admin" "$id" --yes >/dev/null
body="$(curl -s -H "Authorization: ApiKey $secret" "http://127.0.0.1:$site/")"
case "$body" in
*'"api_key_revoked"'*) ;;
*) echo "a revoked key got: $body"; exit 1 ;;
esac
echo "xcaddy build: ok ($(echo "$got" | wc -l) keygate modules, key authenticated, then refused once revoked)"
