package test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// secretInText finds keys of the default prefix in command output.
var secretInText = regexp.MustCompile(`dk_[0-9A-Za-z]{38}`)

// keyIDInText finds key IDs in command output.
var keyIDInText = regexp.MustCompile(`key_[0-9A-Za-z]{22}`)

// cli runs "keygate apikey <args> --address <admin>" and fails the test
// unless it exits 0 with nothing on stderr.
func cli(t *testing.T, g *Gateway, args ...string) string {
	t.Helper()
	stdout, stderr, code := g.Run(append(append([]string{"apikey"}, args...), "--address", g.Ports.Admin)...)
	if code != 0 || stderr != "" {
		t.Fatalf("keygate apikey %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// cliFails runs "keygate apikey <args> --address <admin>" and fails the
// test unless it exits non-zero with nothing on stdout; it returns stderr.
func cliFails(t *testing.T, g *Gateway, args ...string) string {
	t.Helper()
	stdout, stderr, code := g.Run(append(append([]string{"apikey"}, args...), "--address", g.Ports.Admin)...)
	if code == 0 || stdout != "" {
		t.Fatalf("keygate apikey %s: exit %d, want non-zero and no output\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stderr
}

func TestCLICreatePrintsTheSecretOnceWithAWarning(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	out := cli(t, g, "create", "--name", "CI/CD Pipeline", "--scope", "routine", "--expires", "1w")

	secrets := secretInText.FindAllString(out, -1)
	if len(secrets) != 1 {
		t.Fatalf("found %d secrets in the output, want exactly 1:\n%s", len(secrets), out)
	}
	for _, want := range []string{"will not be shown again", "Name:       CI/CD Pipeline", "Scope:      routine", "Status:     active", "Last used:  never", "Revoked:    no"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	id := keyIDInText.FindString(out)
	if id == "" {
		t.Fatalf("no key ID in the output:\n%s", out)
	}
	if k := g.GetKey(id); k.Name != "CI/CD Pipeline" || k.Scope != "routine" || k.Hint != "dk_…"+secrets[0][len(secrets[0])-4:] {
		t.Errorf("the admin API shows %+v, not the key printed", k)
	}
	resp, body := g.Request(http.MethodPost, "/api/routines/nightly", WithKey(secrets[0]))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the printed key on a routine route: %d %s, want 200", resp.StatusCode, body)
	}

	// show never prints it again.
	if shown := cli(t, g, "show", id); secretInText.MatchString(shown) {
		t.Errorf("show printed a secret:\n%s", shown)
	}
}

func TestCLIListPrintsAnAlignedTable(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	if out := cli(t, g, "list"); out != "No API keys.\n" {
		t.Errorf("empty list printed %q, want \"No API keys.\\n\"", out)
	}
	_, a := g.CreateKey("Production Backend", "full", "never")
	_, b := g.CreateKey("Widget", "widget", "1d")
	if resp, body := g.Admin(http.MethodDelete, "/apikeys/"+b.ID, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
	}

	out := cli(t, g, "list")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want a header and 2 rows:\n%s", len(lines), out)
	}
	header := lines[0]
	columns := []string{"ID", "NAME", "SCOPE", "STATUS", "CREATED", "LAST USED", "EXPIRES"}
	for _, col := range columns {
		if !strings.Contains(header, col) {
			t.Errorf("header %q lacks %s", header, col)
		}
	}
	// Every column starts at the same offset on every line (the names
	// and values here are ASCII, one byte per column of text).
	for i, row := range []struct {
		line   string
		values []string
	}{
		{lines[1], []string{b.ID, "Widget", "widget", "revoked", b.CreatedAt.Format("2006-01-02 15:04 UTC"), "never", b.ExpiresAt.Format("2006-01-02 15:04 UTC")}},
		{lines[2], []string{a.ID, "Production Backend", "full", "active", a.CreatedAt.Format("2006-01-02 15:04 UTC"), "never", "never"}},
	} {
		for j, v := range row.values {
			at := strings.Index(header, columns[j])
			if got := row.line[at:min(len(row.line), at+len(v))]; got != v {
				t.Errorf("row %d, column %s: got %q at offset %d, want %q\n%s", i+1, columns[j], got, at, v, out)
			}
		}
	}

	// --status filters.
	if out := cli(t, g, "list", "--status", "active"); !strings.Contains(out, a.ID) || strings.Contains(out, b.ID) {
		t.Errorf("list --status active:\n%s", out)
	}
	if out := cli(t, g, "list", "--status", "expired"); out != "No expired API keys.\n" {
		t.Errorf("list --status expired printed %q", out)
	}
}

func TestCLIListLimitAndAll(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	var ids []string
	for _, name := range []string{"One", "Two", "Three"} {
		_, k := g.CreateKey(name, "full", "1d")
		ids = append(ids, k.ID)
	}
	rows := func(out string) []string { return keyIDInText.FindAllString(out, -1) }

	stdout, stderr, code := g.Run("apikey", "list", "--limit", "2", "--address", g.Ports.Admin)
	if code != 0 || len(rows(stdout)) != 2 {
		t.Errorf("list --limit 2: exit %d, %d rows, want 0 and 2:\n%s%s", code, len(rows(stdout)), stdout, stderr)
	}
	if want := "Showing the newest 2 keys; there are more. Use --all to list every key, or --limit N for up to 1000.\n"; stderr != want {
		t.Errorf("list --limit 2: stderr %q, want %q", stderr, want)
	}
	if got := rows(cli(t, g, "list", "--all")); len(got) != 3 {
		t.Errorf("list --all: %d rows, want 3", len(got))
	}
	if got := rows(cli(t, g, "list", "--limit", "3")); len(got) != 3 {
		t.Errorf("list --limit 3: %d rows, want 3 and no note on stderr", len(got))
	}

	var all struct {
		APIKeys    []APIKey `json:"api_keys"`
		NextCursor *string  `json:"next_cursor"`
	}
	decodeAnswer(t, []byte(cli(t, g, "list", "--all", "--json")), &all)
	if len(all.APIKeys) != 3 || all.NextCursor != nil {
		t.Errorf("list --all --json: %d keys, next %v; want 3, null", len(all.APIKeys), all.NextCursor)
	}
	if stderr := cliFails(t, g, "list", "--limit", "1001"); !strings.Contains(stderr, "--limit must be from 1 to 1000") {
		t.Errorf("list --limit 1001: stderr %q", stderr)
	}
}

func TestCLIShow(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	_, k := g.CreateKey("Production Backend", "full", "1y")
	out := cli(t, g, "show", k.ID)
	want := []string{
		"ID:         " + k.ID + "\n",
		"Name:       Production Backend\n",
		"Scope:      full\n",
		"Status:     active\n",
		"Hint:       " + k.Hint + "\n",
		"Created:    " + k.CreatedAt.Format("2006-01-02 15:04:05 UTC") + " (",
		"Last used:  never\n",
		"Expires:    " + k.ExpiresAt.Format("2006-01-02 15:04:05 UTC") + " (in ",
		"Revoked:    no\n",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("show output lacks %q:\n%s", w, out)
		}
	}
}

func TestCLIRevoke(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	secret, k := g.CreateKey("CI/CD Pipeline", "full", "never")
	expectGateway(t, g, secret, http.StatusOK, "")

	// Without --yes, on stdin that is not a terminal (even one saying
	// yes), nothing is revoked.
	_, stderr, code := g.RunInput("y\n", "apikey", "revoke", k.ID, "--address", g.Ports.Admin)
	if code == 0 || !strings.Contains(stderr, "pass --yes") {
		t.Errorf("revoke without --yes: exit %d, stderr %q; want non-zero and a hint at --yes", code, stderr)
	}
	if got := g.GetKey(k.ID); got.Status != "active" {
		t.Fatalf("revoke without --yes revoked the key: %+v", got)
	}
	expectGateway(t, g, secret, http.StatusOK, "")

	out := cli(t, g, "revoke", k.ID, "--yes")
	if !strings.Contains(out, "Revoked API key "+k.ID+" (CI/CD Pipeline)") || !strings.Contains(out, "Status:     revoked") {
		t.Errorf("revoke --yes printed:\n%s", out)
	}
	expectGateway(t, g, secret, http.StatusUnauthorized, "api_key_revoked")
}

func TestCLIRotate(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	oldSecret, old := g.CreateKey("Backend", "full", "1d")

	out := cli(t, g, "rotate", old.ID, "--grace", "0s")
	secrets := secretInText.FindAllString(out, -1)
	if len(secrets) != 1 || secrets[0] == oldSecret {
		t.Fatalf("rotate printed secrets %q, want one new one:\n%s", secrets, out)
	}
	for _, want := range []string{"will not be shown again", "Rotated API key " + old.ID + " (Backend)", "The previous key is expired"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	expectGateway(t, g, oldSecret, http.StatusUnauthorized, "api_key_expired")
	expectGateway(t, g, secrets[0], http.StatusOK, "")

	// The default grace leaves the old key working.
	newID := keyIDInText.FindAllString(out, -1)
	var next string
	for _, id := range newID {
		if id != old.ID {
			next = id
		}
	}
	out = cli(t, g, "rotate", next)
	if !strings.Contains(out, "The previous key keeps working until ") || !strings.Contains(out, "(in 1 day)") {
		t.Errorf("rotate with the default grace printed:\n%s", out)
	}
	expectGateway(t, g, secrets[0], http.StatusOK, "")
	// The replaced keys name their successors, and cannot be rotated again.
	if out := cli(t, g, "show", old.ID); !regexp.MustCompile(`Replaced by:\s+` + next + `\n`).MatchString(out) {
		t.Errorf("show of the replaced key lacks \"Replaced by: %s\":\n%s", next, out)
	}
	if out := cli(t, g, "list"); !strings.Contains(out, "active, replaced by key_") || !strings.Contains(out, "expired, replaced by "+next) {
		t.Errorf("list does not name the keys' successors:\n%s", out)
	}
	if out := cliFails(t, g, "rotate", next); !strings.Contains(out, "was already replaced") {
		t.Errorf("rotating a replaced key again printed:\n%s", out)
	}
}

func TestCLIJSONIsTheAdminAPIsAnswer(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})

	out := cli(t, g, "create", "--name", "CI", "--scope", "widget", "--expires", "1h", "--origin", "https://shop.example.com", "--json")
	var created secretAnswer
	decodeAnswer(t, []byte(out), &created)
	if !secretPattern.MatchString(created.Secret) || created.APIKey.Name != "CI" || created.APIKey.Scope != "widget" {
		t.Errorf("create --json printed %s", out)
	}
	id := created.APIKey.ID

	_, body := g.Admin(http.MethodGet, "/apikeys/"+id, nil)
	if out := cli(t, g, "show", id, "--json"); out != string(body) {
		t.Errorf("show --json printed %q, want the admin API's body %q", out, body)
	}
	_, body = g.Admin(http.MethodGet, "/apikeys?status=active", nil)
	if out := cli(t, g, "list", "--status", "active", "--json"); out != string(body) {
		t.Errorf("list --json printed %q, want the admin API's body %q", out, body)
	}

	out = cli(t, g, "rotate", id, "--grace", "1h", "--json")
	var rotated secretAnswer
	decodeAnswer(t, []byte(out), &rotated)
	if rotated.Previous == nil || rotated.Previous.ID != id || rotated.APIKey.ID == id {
		t.Errorf("rotate --json printed %s", out)
	}

	out = cli(t, g, "revoke", rotated.APIKey.ID, "--yes", "--json")
	var revoked APIKey
	decodeAnswer(t, []byte(out), &revoked)
	if revoked.ID != rotated.APIKey.ID || revoked.Status != "revoked" {
		t.Errorf("revoke --json printed %s", out)
	}
	if !json.Valid([]byte(out)) || !strings.HasSuffix(out, "}\n") {
		t.Errorf("revoke --json printed %q", out)
	}
}

func TestCLIErrorsGoToStderrWithANonZeroExit(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	_, revoked := g.CreateKey("Gone", "full", "1d")
	cli(t, g, "revoke", revoked.ID, "--yes")
	unknown := "key_0000000000000000000000"

	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown key", []string{"show", unknown}, "no API key has ID " + unknown},
		{"unknown key with --json", []string{"show", unknown, "--json"}, "no API key has ID " + unknown},
		{"rotating a revoked key", []string{"rotate", revoked.ID}, "is revoked"},
		{"name too long, refused by the admin API", []string{"create", "--name", strings.Repeat("n", 101), "--scope", "full", "--expires", "1d"}, "name: must be at most 100 characters"},
		{"unknown scope", []string{"create", "--name", "x", "--scope", "admin", "--expires", "1d"}, "--scope"},
		{"missing expires", []string{"create", "--name", "x", "--scope", "full"}, "--expires is required"},
		{"malformed ID", []string{"show", "key_nope"}, "not a key ID"},
		{"bad grace", []string{"rotate", revoked.ID, "--grace", "2d"}, "--grace"},
		{"unknown status", []string{"list", "--status", "old"}, "--status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stderr := cliFails(t, g, tt.args...)
			if !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stderr %q, want it to hold %q", stderr, tt.wantErr)
			}
		})
	}

	// A secret given in place of an ID is neither sent nor echoed.
	secret, _ := g.CreateKey("Pasted", "full", "1d")
	stderr := cliFails(t, g, "show", secret)
	if strings.Contains(stderr, secret) || !strings.Contains(stderr, "looks like a key's secret") {
		t.Errorf("show <secret>: stderr %q", stderr)
	}
	if strings.Contains(g.Output(), secret) {
		t.Error("the secret reached the gateway's logs")
	}

	// No gateway at the address.
	_, stderr, code := g.Run("apikey", "list", "--address", "127.0.0.1:1")
	if code == 0 || !strings.Contains(stderr, "reaching the admin API at 127.0.0.1:1") {
		t.Errorf("unreachable admin API: exit %d, stderr %q", code, stderr)
	}
}

func TestCLIFindsTheAdminAddressLikeReload(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	_, k := g.CreateKey("Found", "full", "1d")

	// In the gateway's directory, the adjacent Caddyfile names the admin
	// address; elsewhere, --config does.
	for _, args := range [][]string{
		{"apikey", "show", k.ID},
		{"apikey", "show", k.ID, "--config", g.ConfigPath, "--adapter", "caddyfile"},
	} {
		stdout, stderr, code := g.Run(args...)
		if code != 0 || !strings.Contains(stdout, "ID:         "+k.ID) {
			t.Errorf("keygate %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout, stderr)
		}
	}
}

func TestCLIHelp(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	stdout, stderr, code := g.Run("apikey", "--help")
	if code != 0 {
		t.Fatalf("apikey --help: exit %d: %s", code, stderr)
	}
	for _, sub := range []string{"create", "list", "show", "revoke", "rotate", "--address", "--json"} {
		if !strings.Contains(stdout, sub) {
			t.Errorf("apikey --help lacks %q:\n%s", sub, stdout)
		}
	}
}

func TestCLIOriginsAndIPs(t *testing.T) {
	g := StartGateway(t, Options{Upstream: NewUpstream(t)})
	out := cli(t, g, "create", "--name", "Shop widget", "--scope", "widget", "--expires", "1mo",
		"--origin", "HTTPS://Shop.Example.com", "--origin", "https://*.example.org:*", "--ip", "10.0.0.0/8")
	for _, want := range []string{"Origins:    https://shop.example.com\n            https://*.example.org:*\n", "IPs:        10.0.0.0/8\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	id := keyIDInText.FindString(out)
	if k := g.GetKey(id); !slices.Equal(k.AllowedOrigins, []string{"https://shop.example.com", "https://*.example.org:*"}) || !slices.Equal(k.AllowedIPs, []string{"10.0.0.0/8"}) {
		t.Errorf("the admin API shows origins %q, IPs %q", k.AllowedOrigins, k.AllowedIPs)
	}

	out = cli(t, g, "update", id, "--origin", "http://localhost:3000", "--no-ips")
	if !strings.Contains(out, "Origins:    http://localhost:3000\n") || !strings.Contains(out, "IPs:        any\n") {
		t.Errorf("update output:\n%s", out)
	}
	out = cli(t, g, "update", id, "--no-origins", "--ip", "203.0.113.7")
	if !strings.Contains(out, "Origins:    any\n") || !strings.Contains(out, "IPs:        203.0.113.7\n") {
		t.Errorf("update output:\n%s", out)
	}
	if shown := cli(t, g, "show", id); !strings.Contains(shown, "IPs:        203.0.113.7\n") {
		t.Errorf("show output:\n%s", shown)
	}

	// A bad entry is refused before any request, naming the flag.
	if stderr := cliFails(t, g, "update", id, "--origin", "https://shop.example.com/"); !strings.Contains(stderr, `--origin: origin "https://shop"…: an origin has no path`) {
		t.Errorf("bad --origin: stderr %q", stderr)
	}
	if k := g.GetKey(id); len(k.AllowedOrigins) != 0 {
		t.Errorf("after the refused update: origins %q, want none", k.AllowedOrigins)
	}

	// A widget key without origins is made, with a warning on stderr.
	stdout, stderr, code := g.Run("apikey", "create", "--name", "Open widget", "--scope", "widget", "--expires", "1d", "--address", g.Ports.Admin)
	if code != 0 || !secretInText.MatchString(stdout) {
		t.Fatalf("create of an open widget key: exit %d\n%s", code, stdout)
	}
	openID := keyIDInText.FindString(stdout)
	if !strings.Contains(stderr, "Warning: this widget key has no allowed origins") ||
		!strings.Contains(stderr, "apikey update "+openID+" --origin https://your.site") || secretInText.MatchString(stderr) {
		t.Errorf("stderr of an open widget key's create:\n%s", stderr)
	}
}
