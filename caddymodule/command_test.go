package caddymodule

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
)

var testNow = time.Date(2026, 11, 25, 19, 41, 7, 0, time.UTC)

func at(s string) *time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &t
}

func TestTimeFormats(t *testing.T) {
	local := time.Date(2026, 11, 25, 20, 41, 7, 0, time.FixedZone("CET", 3600))
	if got, want := shortTime(&local), "2026-11-25 19:41 UTC"; got != want {
		t.Errorf("shortTime = %q, want %q", got, want)
	}
	if got, want := shortTime(nil), "never"; got != want {
		t.Errorf("shortTime(nil) = %q, want %q", got, want)
	}
	if got, want := longTime(local, testNow.Add(3*time.Minute)), "2026-11-25 19:41:07 UTC (3 minutes ago)"; got != want {
		t.Errorf("longTime = %q, want %q", got, want)
	}
	if got, want := longTimeOrNever(nil, testNow), "never"; got != want {
		t.Errorf("longTimeOrNever(nil) = %q, want %q", got, want)
	}
}

func TestDisplayName(t *testing.T) {
	tests := []struct {
		name, in, want, wantShort string
	}{
		{"plain", "CI/CD Pipeline", "CI/CD Pipeline", "CI/CD Pipeline"},
		{"unicode letters kept", "Clé de Zoë ✓", "Clé de Zoë ✓", "Clé de Zoë ✓"},
		{"escape sequence", "a\x1b[31mred", "a?[31mred", "a?[31mred"},
		{"tab and newline", "a\tb\nc", "a?b?c", "a?b?c"},
		{"bidi override", "abc\u202edef", "abc?def", "abc?def"},
		{"invalid UTF-8", "a\xffb", "a?b", "a?b"},
		{"long name cut in tables", strings.Repeat("é", 41), strings.Repeat("é", 41), strings.Repeat("é", 39) + "…"},
		{"forty characters fit", strings.Repeat("x", 40), strings.Repeat("x", 40), strings.Repeat("x", 40)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := displayName(tt.in); got != tt.want {
				t.Errorf("displayName = %q, want %q", got, tt.want)
			}
			if got := shortName(tt.in); got != tt.wantShort {
				t.Errorf("shortName = %q, want %q", got, tt.wantShort)
			}
		})
	}
}

func TestPrintTable(t *testing.T) {
	keys := []keyservice.KeyJSON{
		{ID: "key_0000000000000000000002", Name: "CI/CD Pipeline", Scope: "routine", Status: "active", Hint: "dk_…abcd",
			CreatedAt: *at("2026-11-25T19:41:07Z"), LastUsedAt: at("2026-11-25T19:44:00Z"), ExpiresAt: at("2027-11-25T19:41:07Z")},
		{ID: "key_0000000000000000000001", Name: "Widget", Scope: "widget", Status: "revoked", Hint: "dk_…wxyz",
			CreatedAt: *at("2026-01-02T03:04:05Z"), RevokedAt: at("2026-02-01T00:00:00Z")},
	}
	var b strings.Builder
	printTable(&b, keys)
	want := "" +
		"ID                          NAME            SCOPE    STATUS   CREATED               LAST USED             EXPIRES\n" +
		"key_0000000000000000000002  CI/CD Pipeline  routine  active   2026-11-25 19:41 UTC  2026-11-25 19:44 UTC  2027-11-25 19:41 UTC\n" +
		"key_0000000000000000000001  Widget          widget   revoked  2026-01-02 03:04 UTC  never                 never\n"
	if got := b.String(); got != want {
		t.Errorf("got table\n%s\nwant\n%s", got, want)
	}

	// A replaced key names its successor in the status column.
	keys[1].Status, keys[1].RevokedAt, keys[1].ReplacedBy = "expired", nil, &keys[0].ID
	b.Reset()
	printTable(&b, keys)
	want = "" +
		"ID                          NAME            SCOPE    STATUS                                           CREATED               LAST USED             EXPIRES\n" +
		"key_0000000000000000000002  CI/CD Pipeline  routine  active                                           2026-11-25 19:41 UTC  2026-11-25 19:44 UTC  2027-11-25 19:41 UTC\n" +
		"key_0000000000000000000001  Widget          widget   expired, replaced by key_0000000000000000000002  2026-01-02 03:04 UTC  never                 never\n"
	if got := b.String(); got != want {
		t.Errorf("got table\n%s\nwant\n%s", got, want)
	}

	// When a key has an owner, an OWNER column shows it, "-" for none.
	owner := "org_acme"
	keys[1].Status, keys[1].ReplacedBy, keys[0].Owner = "revoked", nil, &owner
	b.Reset()
	printTable(&b, keys)
	want = "" +
		"ID                          NAME            OWNER     SCOPE    STATUS   CREATED               LAST USED             EXPIRES\n" +
		"key_0000000000000000000002  CI/CD Pipeline  org_acme  routine  active   2026-11-25 19:41 UTC  2026-11-25 19:44 UTC  2027-11-25 19:41 UTC\n" +
		"key_0000000000000000000001  Widget          -         widget   revoked  2026-01-02 03:04 UTC  never                 never\n"
	if got := b.String(); got != want {
		t.Errorf("got table with owners\n%s\nwant\n%s", got, want)
	}
}

func TestPrintKey(t *testing.T) {
	k := keyservice.KeyJSON{ID: "key_0000000000000000000002", Name: "Production Backend", Scope: "full", Status: "active", Hint: "dk_…abcd",
		CreatedAt: *at("2026-11-25T19:38:07Z"), ExpiresAt: at("2026-12-02T19:38:07Z")}
	var b strings.Builder
	printKey(&b, k, testNow)
	want := "" +
		"ID:         key_0000000000000000000002\n" +
		"Name:       Production Backend\n" +
		"Scope:      full\n" +
		"Status:     active\n" +
		"Hint:       dk_…abcd\n" +
		"Created:    2026-11-25 19:38:07 UTC (3 minutes ago)\n" +
		"Last used:  never\n" +
		"Expires:    2026-12-02 19:38:07 UTC (in 7 days)\n" +
		"Revoked:    no\n" +
		"Owner:      none\n" +
		"Metadata:   none\n" +
		"Origins:    any\n" +
		"IPs:        any\n" +
		"Limits:     the scope's default\n" +
		"Creator:    unknown\n"
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	next := "key_0000000000000000000003"
	k.ReplacedBy = &next
	b.Reset()
	printKey(&b, k, testNow)
	want = "" +
		"ID:           key_0000000000000000000002\n" +
		"Name:         Production Backend\n" +
		"Scope:        full\n" +
		"Status:       active\n" +
		"Hint:         dk_…abcd\n" +
		"Created:      2026-11-25 19:38:07 UTC (3 minutes ago)\n" +
		"Last used:    never\n" +
		"Expires:      2026-12-02 19:38:07 UTC (in 7 days)\n" +
		"Revoked:      no\n" +
		"Replaced by:  key_0000000000000000000003\n" +
		"Owner:        none\n" +
		"Metadata:     none\n" +
		"Origins:      any\n" +
		"IPs:          any\n" +
		"Limits:       the scope's default\n" +
		"Creator:      unknown\n"
	if got := b.String(); got != want {
		t.Errorf("replaced key: got\n%s\nwant\n%s", got, want)
	}

	// An owned key with metadata, sorted by name, and who created it;
	// what could drive a terminal is shown as "?".
	owner := "org_acme"
	k.ReplacedBy, k.Owner = nil, &owner
	k.Metadata = map[string]string{"region": "eu west", "plan": "pro\x1b[31m"}
	k.CreatedBy = keyservice.ActorJSON{Type: "admin", ID: "alice@laptop"}
	b.Reset()
	printKey(&b, k, testNow)
	want = "" +
		"ID:         key_0000000000000000000002\n" +
		"Name:       Production Backend\n" +
		"Scope:      full\n" +
		"Status:     active\n" +
		"Hint:       dk_…abcd\n" +
		"Created:    2026-11-25 19:38:07 UTC (3 minutes ago)\n" +
		"Last used:  never\n" +
		"Expires:    2026-12-02 19:38:07 UTC (in 7 days)\n" +
		"Revoked:    no\n" +
		"Owner:      org_acme\n" +
		"Metadata:   plan=pro?[31m\n" +
		"            region=eu west\n" +
		"Origins:    any\n" +
		"IPs:        any\n" +
		"Limits:     the scope's default\n" +
		"Creator:    admin alice@laptop\n"
	if got := b.String(); got != want {
		t.Errorf("owned key: got\n%s\nwant\n%s", got, want)
	}

	// Allowed origins and IPs, one per line.
	k.Owner, k.Metadata = nil, nil
	k.AllowedOrigins = []string{"https://shop.example.com", "https://*.example.org:*"}
	k.AllowedIPs = []string{"10.0.0.0/8"}
	b.Reset()
	printKey(&b, k, testNow)
	if want := "" +
		"Metadata:   none\n" +
		"Origins:    https://shop.example.com\n" +
		"            https://*.example.org:*\n" +
		"IPs:        10.0.0.0/8\n" +
		"Limits:     the scope's default\n" +
		"Creator:    admin alice@laptop\n"; !strings.HasSuffix(b.String(), want) {
		t.Errorf("restricted key: got\n%s\nwant it to end\n%s", b.String(), want)
	}
}

func TestCreateFlags(t *testing.T) {
	tests := []struct {
		name, flagName, scope, expires string
		wantErr                        string
	}{
		{"valid", "CI", "routine", "1mo", ""},
		{"missing name", "", "full", "1d", "--name is required"},
		{"blank name", "  ", "full", "1d", "--name is required"},
		{"missing scope", "CI", "", "1d", "--scope is required: full, widget or routine"},
		{"unknown scope", "CI", "admin", "1d", `--scope: unknown scope "admin"`},
		{"missing expires", "CI", "full", "", "--expires is required: 1h, 1d, 1w, 1mo, 1y or never"},
		{"unknown expires", "CI", "full", "2d", `--expires: unknown expiry "2d"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := createFlags(tt.flagName, tt.scope, tt.expires)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if want := (createRequest{Name: tt.flagName, Scope: tt.scope, ExpiresIn: tt.expires}); !reflect.DeepEqual(req, want) {
					t.Errorf("got %+v, want %+v", req, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %v, want one holding %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckGrace(t *testing.T) {
	tests := []struct {
		grace   string
		wantErr string
	}{
		{"0s", ""},
		{"24h", ""},
		{"168h", ""},
		{"90m", ""},
		{"168h1s", "--grace must be between 0s and 168h"},
		{"-1s", "--grace must be between 0s and 168h"},
		{"1d", `--grace: "1d" is not a duration`},
		{"", `--grace: "" is not a duration`},
	}
	for _, tt := range tests {
		err := checkGrace(tt.grace)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("checkGrace(%q) = %v, want nil", tt.grace, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("checkGrace(%q) = %v, want an error holding %q", tt.grace, err, tt.wantErr)
		}
	}
}

func TestCheckIDArg(t *testing.T) {
	secret := "dk_0123456789abcdefghijABCDEFGHIJ01abcdef"
	tests := []struct {
		name, id       string
		wantErr        bool
		wantSecretHint bool
	}{
		{"valid", validID, false, false},
		{"short", "key_123", true, false},
		{"no prefix", "0123456789ABCDEFabcdef", true, false},
		{"path in it", "key_0123456789ABCDEFabc/ef", true, false},
		{"a secret", secret, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkIDArg(tt.id)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				return
			}
			if strings.Contains(err.Error(), tt.id) {
				t.Errorf("error %q echoes the argument", err)
			}
			if got := strings.Contains(err.Error(), "looks like a key's secret"); got != tt.wantSecretHint {
				t.Errorf("got secret hint %v, want %v: %q", got, tt.wantSecretHint, err)
			}
		})
	}
}

func TestAdminError(t *testing.T) {
	tests := []struct {
		name, err, want string
	}{
		{"admin error body", "caddy responded with error: HTTP 400: {\"error\":\"name: must not be empty\"}\n", "name: must not be empty"},
		{"error body with a colon in it", `caddy responded with error: HTTP 404: {"error":"no API key has ID key_x: gone"}`, "no API key has ID key_x: gone"},
		{"not JSON", "caddy responded with error: HTTP 404: 404 page not found\n", "the admin API at localhost:2019 answered HTTP 404: 404 page not found"},
		{"unreachable", "performing request: dial tcp [::1]:2019: connect: connection refused", "reaching the admin API at localhost:2019: performing request: dial tcp [::1]:2019: connect: connection refused (is keygate running there? --address sets where to look)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := adminError("localhost:2019", errors.New(tt.err)).Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfirm(t *testing.T) {
	tests := []struct {
		answer string
		want   bool
	}{
		{"y\n", true},
		{"YES\n", true},
		{" yes \n", true},
		{"y", true},
		{"\n", false},
		{"n\n", false},
		{"yep\n", false},
		{"", false},
	}
	for _, tt := range tests {
		var prompt strings.Builder
		got, err := confirm(strings.NewReader(tt.answer), &prompt, "Revoke? [y/N] ")
		if err != nil || got != tt.want {
			t.Errorf("confirm(%q) = %v, %v; want %v, nil", tt.answer, got, err, tt.want)
		}
		if prompt.String() != "Revoke? [y/N] " {
			t.Errorf("got prompt %q", prompt.String())
		}
	}
}

// adminRecorder is an admin endpoint that records the requests it gets and
// answers each with the next canned answer.
type adminRecorder struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []string // "METHOD URI BODY"
	actors  []string // Keygate-Actor headers
	answers []cannedAnswer
}

type cannedAnswer struct {
	status int
	body   string
}

func newAdminRecorder(t *testing.T, answers ...cannedAnswer) *adminRecorder {
	a := &adminRecorder{answers: answers}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		defer a.mu.Unlock()
		a.got = append(a.got, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(body)))
		a.actors = append(a.actors, r.Header.Values("Keygate-Actor")...)
		if len(a.answers) == 0 {
			t.Errorf("unexpected request %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		ans := a.answers[0]
		a.answers = a.answers[1:]
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ans.status)
		_, _ = io.WriteString(w, ans.body)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// actorHeaders returns the Keygate-Actor headers of the requests so far.
func (a *adminRecorder) actorHeaders() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.actors...)
}

func (a *adminRecorder) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

func (a *adminRecorder) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got...)
}

// runCLI runs the apikey command with args, stdin and the given terminal
// answer, and returns its output and error.
func runCLI(t *testing.T, terminal bool, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	c := cli{now: func() time.Time { return testNow }, isTerminal: func(io.Reader) bool { return terminal }}
	cmd := &cobra.Command{Use: "apikey", SilenceUsage: true, SilenceErrors: true}
	c.setUp(cmd)
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

const keyAnswer = `{"id":"key_0123456789ABCDEFabcdef","name":"CI","scope":"routine","status":"active","hint":"dk_…abcd",` +
	`"created_at":"2026-11-25T19:41:07Z","last_used_at":null,"expires_at":null,"revoked_at":null,"replaced_by":null,` +
	`"owner":null,"metadata":{},"created_by":{"type":"admin","id":""},"allowed_origins":[],"allowed_ips":[],"rate_limits":[]}`

const ownedAnswer = `{"id":"key_0123456789ABCDEFabcdef","name":"CI","scope":"routine","status":"active","hint":"dk_…abcd",` +
	`"created_at":"2026-11-25T19:41:07Z","last_used_at":null,"expires_at":null,"revoked_at":null,"replaced_by":null,` +
	`"owner":"org_acme","metadata":{"plan":"pro","region":"eu"},"created_by":{"type":"admin","id":"alice@laptop"},"allowed_origins":[],"allowed_ips":[],"rate_limits":[]}`

const restrictedAnswer = `{"id":"key_0123456789ABCDEFabcdef","name":"CI","scope":"widget","status":"active","hint":"dk_…abcd",` +
	`"created_at":"2026-11-25T19:41:07Z","last_used_at":null,"expires_at":null,"revoked_at":null,"replaced_by":null,` +
	`"owner":null,"metadata":{},"created_by":{"type":"admin","id":""},` +
	`"allowed_origins":["https://shop.example.com","https://*.example.org"],"allowed_ips":["203.0.113.7"],"rate_limits":[]}`

const revokedAnswer = `{"id":"key_0123456789ABCDEFabcdef","name":"CI","scope":"routine","status":"revoked","hint":"dk_…abcd",` +
	`"created_at":"2026-11-25T19:41:07Z","last_used_at":null,"expires_at":null,"revoked_at":"2026-11-25T19:41:07Z"}`

func TestCLISendsWhatTheFlagsSay(t *testing.T) {
	secret := "dk_0123456789abcdefghijABCDEFGHIJ01abcdef"
	created := `{"secret":"` + secret + `","api_key":` + keyAnswer + `}` + "\n"
	rotated := `{"secret":"` + secret + `","api_key":` + keyAnswer + `,"previous":` + revokedAnswer + `}` + "\n"
	tests := []struct {
		name         string
		args         []string
		answer       cannedAnswer
		wantRequest  string
		wantOut      []string
		wantExactOut string
	}{
		{
			name:        "create",
			args:        []string{"create", "--name", "CI", "--scope", "routine", "--expires", "never"},
			answer:      cannedAnswer{201, created},
			wantRequest: `POST /apikeys {"name":"CI","scope":"routine","expires_in":"never"}`,
			wantOut:     []string{"Created API key " + validID + " (CI).", "    " + secret + "\n", "it will not be shown again", "Expires:    never"},
		},
		{
			name:         "create --json",
			args:         []string{"create", "--name", "CI", "--scope", "routine", "--expires", "never", "--json"},
			answer:       cannedAnswer{201, created},
			wantRequest:  `POST /apikeys {"name":"CI","scope":"routine","expires_in":"never"}`,
			wantExactOut: created,
		},
		{
			name:        "list with status",
			args:        []string{"list", "--status", "revoked"},
			answer:      cannedAnswer{200, `{"api_keys":[` + revokedAnswer + `]}`},
			wantRequest: "GET /apikeys?status=revoked",
			wantOut:     []string{"ID  ", "LAST USED", validID + "  CI    routine  revoked  2026-11-25 19:41 UTC  never "},
		},
		{
			name:        "create with owner and metadata",
			args:        []string{"create", "--name", "CI", "--scope", "routine", "--expires", "never", "--owner", "org_acme", "--meta", "plan=pro", "--meta", "note=a=b c"},
			answer:      cannedAnswer{201, created},
			wantRequest: `POST /apikeys {"name":"CI","scope":"routine","expires_in":"never","owner":"org_acme","metadata":{"note":"a=b c","plan":"pro"}}`,
			wantOut:     []string{"Created API key " + validID},
		},
		{
			name: "create with origins and IPs sends them as given",
			args: []string{"create", "--name", "CI", "--scope", "widget", "--expires", "never",
				"--origin", "HTTPS://Shop.Example.com", "--origin", "https://*.example.org", "--ip", "10.0.0.0/8"},
			answer:      cannedAnswer{201, created},
			wantRequest: `POST /apikeys {"name":"CI","scope":"widget","expires_in":"never","allowed_origins":["HTTPS://Shop.Example.com","https://*.example.org"],"allowed_ips":["10.0.0.0/8"]}`,
			wantOut:     []string{"Created API key " + validID},
		},
		{
			name:        "show a restricted key",
			args:        []string{"show", validID},
			answer:      cannedAnswer{200, restrictedAnswer},
			wantRequest: "GET /apikeys/" + validID,
			wantOut:     []string{"Origins:    https://shop.example.com\n            https://*.example.org\n", "IPs:        203.0.113.7\n"},
		},
		{
			name:        "update --origin replaces the list",
			args:        []string{"update", validID, "--origin", "https://a.example", "--origin", "http://localhost:3000"},
			answer:      cannedAnswer{200, restrictedAnswer},
			wantRequest: "PATCH /apikeys/" + validID + ` {"allowed_origins":["https://a.example","http://localhost:3000"]}`,
			wantOut:     []string{"Updated API key " + validID, "Origins:    https://shop.example.com"},
		},
		{
			name:        "update --ip replaces the list",
			args:        []string{"update", validID, "--ip", "::1", "--name", "CI"},
			answer:      cannedAnswer{200, restrictedAnswer},
			wantRequest: "PATCH /apikeys/" + validID + ` {"name":"CI","allowed_ips":["::1"]}`,
			wantOut:     []string{"Updated API key " + validID},
		},
		{
			name:        "update --no-origins --no-ips sends empty lists",
			args:        []string{"update", validID, "--no-origins", "--no-ips"},
			answer:      cannedAnswer{200, keyAnswer},
			wantRequest: "PATCH /apikeys/" + validID + ` {"allowed_origins":[],"allowed_ips":[]}`,
			wantOut:     []string{"Origins:    any\n", "IPs:        any\n"},
		},
		{
			name:        "list with owner",
			args:        []string{"list", "--owner", "org_acme"},
			answer:      cannedAnswer{200, `{"api_keys":[` + ownedAnswer + `]}`},
			wantRequest: "GET /apikeys?owner=org_acme",
			wantOut:     []string{"OWNER", validID + "  CI    org_acme  routine  active"},
		},
		{
			name:        "show an owned key",
			args:        []string{"show", validID},
			answer:      cannedAnswer{200, ownedAnswer},
			wantRequest: "GET /apikeys/" + validID,
			wantOut:     []string{"Owner:      org_acme\n", "Metadata:   plan=pro\n            region=eu\n", "Creator:    admin alice@laptop\n"},
		},
		{
			name:        "update --name sends the name alone",
			args:        []string{"update", validID, "--name", "CI 2"},
			answer:      cannedAnswer{200, ownedAnswer},
			wantRequest: "PATCH /apikeys/" + validID + ` {"name":"CI 2"}`,
			wantOut:     []string{"Updated API key " + validID + " (CI).", "Owner:      org_acme"},
		},
		{
			name:        "list with limit",
			args:        []string{"list", "--limit", "1"},
			answer:      cannedAnswer{200, `{"api_keys":[` + keyAnswer + `],"next_cursor":null}`},
			wantRequest: "GET /apikeys?limit=1",
			wantOut:     []string{validID + "  CI    routine  active"},
		},
		{
			name:         "list --json prints the page as it is",
			args:         []string{"list", "--json", "--limit", "1"},
			answer:       cannedAnswer{200, `{"api_keys":[` + keyAnswer + `],"next_cursor":"abc"}` + "\n"},
			wantRequest:  "GET /apikeys?limit=1",
			wantExactOut: `{"api_keys":[` + keyAnswer + `],"next_cursor":"abc"}` + "\n",
		},
		{
			name:        "empty list",
			args:        []string{"list"},
			answer:      cannedAnswer{200, `{"api_keys":[]}`},
			wantRequest: "GET /apikeys",
			wantOut:     []string{"No API keys.\n"},
		},
		{
			name:        "show",
			args:        []string{"show", validID},
			answer:      cannedAnswer{200, keyAnswer},
			wantRequest: "GET /apikeys/" + validID,
			wantOut:     []string{"ID:         " + validID + "\n", "Created:    2026-11-25 19:41:07 UTC (just now)\n"},
		},
		{
			name:        "revoke --yes",
			args:        []string{"revoke", validID, "--yes"},
			answer:      cannedAnswer{200, revokedAnswer},
			wantRequest: "DELETE /apikeys/" + validID,
			wantOut:     []string{"Revoked API key " + validID + " (CI)", "Status:     revoked"},
		},
		{
			name:        "rotate with the default grace",
			args:        []string{"rotate", validID},
			answer:      cannedAnswer{201, rotated},
			wantRequest: "POST /apikeys/" + validID + `/rotate {"grace":"24h"}`,
			wantOut:     []string{"    " + secret + "\n", "it will not be shown again", "The previous key is revoked"},
		},
		{
			name:         "rotate --grace 0s --json",
			args:         []string{"rotate", validID, "--grace", "0s", "--json"},
			answer:       cannedAnswer{201, rotated},
			wantRequest:  "POST /apikeys/" + validID + `/rotate {"grace":"0s"}`,
			wantExactOut: rotated,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admin := newAdminRecorder(t, tt.answer)
			out, _, err := runCLI(t, false, "", append(tt.args, "--address", admin.addr())...)
			if err != nil {
				t.Fatalf("got error %v", err)
			}
			if got := admin.requests(); len(got) != 1 || got[0] != tt.wantRequest {
				t.Errorf("got requests %q, want [%q]", got, tt.wantRequest)
			}
			if tt.wantExactOut != "" && out != tt.wantExactOut {
				t.Errorf("got output %q, want exactly %q", out, tt.wantExactOut)
			}
			for _, want := range tt.wantOut {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if n := strings.Count(out, secret); n > 1 {
				t.Errorf("secret printed %d times", n)
			}
		})
	}
}

func TestCLIWarnsOnStderrWhenAWidgetKeyHasNoOrigins(t *testing.T) {
	secret := "dk_0123456789abcdefghijABCDEFGHIJ01abcdef"
	created := `{"secret":"` + secret + `","api_key":` + keyAnswer + `}` + "\n"
	for _, tc := range []struct {
		name string
		args []string
		warn bool
	}{
		{"widget key without origins", []string{"--scope", "widget"}, true},
		{"widget key without origins, --json", []string{"--scope", "widget", "--json"}, true},
		{"widget key with IPs only", []string{"--scope", "widget", "--ip", "10.0.0.0/8"}, true},
		{"widget key with an origin", []string{"--scope", "widget", "--origin", "https://shop.example.com"}, false},
		{"full key without origins", []string{"--scope", "full"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			admin := newAdminRecorder(t, cannedAnswer{201, created})
			args := append([]string{"create", "--name", "CI", "--expires", "1d", "--address", admin.addr()}, tc.args...)
			out, errOut, err := runCLI(t, false, "", args...)
			if err != nil {
				t.Fatal(err)
			}
			warned := strings.Contains(errOut, "Warning: this widget key has no allowed origins, so it works from any web\npage.")
			if warned != tc.warn {
				t.Errorf("stderr %q: warned %v, want %v", errOut, warned, tc.warn)
			}
			if tc.warn && !strings.Contains(errOut, "apikey update "+validID+" --origin https://your.site") {
				t.Errorf("stderr %q does not say how to restrict the key", errOut)
			}
			if strings.Contains(out, "Warning") || strings.Contains(errOut, secret) {
				t.Errorf("the warning belongs on stderr, without the secret: stdout %q, stderr %q", out, errOut)
			}
		})
	}
}

func TestCLIUpdateMetaMergesIntoTheCurrentMetadata(t *testing.T) {
	admin := newAdminRecorder(t, cannedAnswer{200, ownedAnswer}, cannedAnswer{200, ownedAnswer})
	out, _, err := runCLI(t, false, "", "update", validID, "--meta", "plan=enterprise", "--meta", "region=", "--meta", "seats=5",
		"--name", "CI", "--address", admin.addr())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"GET /apikeys/" + validID, "PATCH /apikeys/" + validID + ` {"name":"CI","metadata":{"plan":"enterprise","seats":"5"}}`}
	if got := admin.requests(); !slices.Equal(got, want) {
		t.Errorf("got requests %q, want %q", got, want)
	}
	if !strings.Contains(out, "Updated API key "+validID) {
		t.Errorf("output:\n%s", out)
	}

	// Removing the last entry sends {}, which clears the metadata.
	admin = newAdminRecorder(t, cannedAnswer{200, keyAnswer}, cannedAnswer{200, keyAnswer})
	if _, _, err := runCLI(t, false, "", "update", validID, "--meta", "plan=", "--json", "--address", admin.addr()); err != nil {
		t.Fatal(err)
	}
	want = []string{"GET /apikeys/" + validID, "PATCH /apikeys/" + validID + ` {"metadata":{}}`}
	if got := admin.requests(); !slices.Equal(got, want) {
		t.Errorf("got requests %q, want %q", got, want)
	}
}

func TestCLISendsTheActorHeaderOnEveryRequest(t *testing.T) {
	admin := newAdminRecorder(t, cannedAnswer{200, ownedAnswer}, cannedAnswer{200, ownedAnswer})
	if _, _, err := runCLI(t, false, "", "update", validID, "--meta", "a=b", "--address", admin.addr()); err != nil {
		t.Fatal(err)
	}
	actor := cliActor()
	if got := admin.actorHeaders(); !slices.Equal(got, []string{actor, actor}) {
		t.Errorf("Keygate-Actor headers %q, want %q on both requests", got, actor)
	}
	name, host, ok := strings.Cut(actor, "@")
	if !ok || name == "" || host == "" || len(actor) > 128 {
		t.Errorf("cliActor() = %q, want <user>@<host> of at most 128 bytes", actor)
	}
	if err := apikey.CheckActor(apikey.Actor{Type: apikey.ActorAdmin, ID: actor}); err != nil {
		t.Errorf("cliActor() = %q, which the admin API refuses: %v", actor, err)
	}
}

func TestCLIListAllFollowsNextCursor(t *testing.T) {
	other := strings.Replace(keyAnswer, validID, "key_ZZZZZZZZZZZZZZZZZZZZZZ", 1)
	pages := []cannedAnswer{
		{200, `{"api_keys":[` + keyAnswer + `],"next_cursor":"c1-_"}`},
		{200, `{"api_keys":[` + other + `],"next_cursor":null}`},
	}
	wantRequests := []string{"GET /apikeys?limit=1000&status=active", "GET /apikeys?cursor=c1-_&limit=1000&status=active"}

	admin := newAdminRecorder(t, pages...)
	out, errOut, err := runCLI(t, false, "", "list", "--all", "--status", "active", "--address", admin.addr())
	if err != nil {
		t.Fatal(err)
	}
	if got := admin.requests(); !slices.Equal(got, wantRequests) {
		t.Errorf("got requests %q, want %q", got, wantRequests)
	}
	if strings.Count(out, "ID  ") != 1 || !strings.Contains(out, validID) || !strings.Contains(out, "key_ZZZZZZZZZZZZZZZZZZZZZZ") {
		t.Errorf("want one table of both keys, got:\n%s", out)
	}
	if errOut != "" {
		t.Errorf("--all printed %q on stderr", errOut)
	}

	admin = newAdminRecorder(t, pages...)
	out, _, err = runCLI(t, false, "", "list", "--all", "--json", "--status", "active", "--address", admin.addr())
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"api_keys":[` + keyAnswer + `,` + other + `],"next_cursor":null}` + "\n"; out != want {
		t.Errorf("--all --json printed\n%s\nwant\n%s", out, want)
	}
}

func TestCLIListSaysOnStderrWhenThereIsMore(t *testing.T) {
	admin := newAdminRecorder(t, cannedAnswer{200, `{"api_keys":[` + keyAnswer + `],"next_cursor":"c1"}`})
	out, errOut, err := runCLI(t, false, "", "list", "--address", admin.addr())
	if err != nil {
		t.Fatal(err)
	}
	if got := admin.requests(); !slices.Equal(got, []string{"GET /apikeys"}) {
		t.Errorf("got requests %q, want one page", got)
	}
	if !strings.Contains(out, validID) || strings.Contains(out, "--all") {
		t.Errorf("stdout = %q, want the table only", out)
	}
	if want := "Showing the newest 1 key; there are more. Use --all to list every key, or --limit N for up to 1000.\n"; errOut != want {
		t.Errorf("stderr = %q, want %q", errOut, want)
	}
}

func TestCLIListAllStopsOnARepeatedCursor(t *testing.T) {
	admin := newAdminRecorder(t,
		cannedAnswer{200, `{"api_keys":[` + keyAnswer + `],"next_cursor":"same"}`},
		cannedAnswer{200, `{"api_keys":[` + keyAnswer + `],"next_cursor":"same"}`})
	_, _, err := runCLI(t, false, "", "list", "--all", "--address", admin.addr())
	if err == nil || !strings.Contains(err.Error(), "cursor repeats") {
		t.Errorf("got %v, want an error about the repeated cursor", err)
	}
}

func TestCLIRefusesBadFlagsWithoutARequest(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"create without name", []string{"create", "--scope", "full", "--expires", "1d"}, "--name is required"},
		{"create with unknown scope", []string{"create", "--name", "x", "--scope", "all", "--expires", "1d"}, "--scope: unknown scope"},
		{"create with an argument", []string{"create", "x", "--name", "x", "--scope", "full", "--expires", "1d"}, "unknown command"},
		{"list with unknown status", []string{"list", "--status", "gone"}, `--status: unknown status "gone"`},
		{"show without ID", []string{"show"}, "accepts 1 arg(s), received 0"},
		{"show a malformed ID", []string{"show", "key_1"}, "not a key ID"},
		{"revoke a malformed ID", []string{"revoke", "nope", "--yes"}, "not a key ID"},
		{"revoke without --yes off a terminal", []string{"revoke", validID}, "not revoking key " + validID + ": stdin is not a terminal to confirm on; pass --yes"},
		{"rotate with a bad grace", []string{"rotate", validID, "--grace", "forever"}, `--grace: "forever" is not a duration`},
		{"rotate with too long a grace", []string{"rotate", validID, "--grace", "169h"}, "--grace must be between 0s and 168h"},
		{"rotate with a negative grace", []string{"rotate", validID, "--grace", "-1h"}, "--grace must be between 0s and 168h"},
		{"unknown flag", []string{"list", "--every"}, "unknown flag: --every"},
		{"list with limit 0", []string{"list", "--limit", "0"}, "--limit must be from 1 to 1000, not 0"},
		{"list with limit 1001", []string{"list", "--limit", "1001"}, "--limit must be from 1 to 1000, not 1001"},
		{"list with a negative limit", []string{"list", "--limit", "-1"}, "--limit must be from 1 to 1000"},
		{"list with limit and all", []string{"list", "--limit", "5", "--all"}, "--limit and --all: give one"},
		{"create with an empty owner", []string{"create", "--name", "x", "--scope", "full", "--expires", "1d", "--owner", ""}, "--owner: must not be empty"},
		{"create with an owner holding a space", []string{"create", "--name", "x", "--scope", "full", "--expires", "1d", "--owner", "org a"}, "--owner: must hold only"},
		{"create with --meta without =", []string{"create", "--name", "x", "--scope", "full", "--expires", "1d", "--meta", "plan"}, `--meta "plan": want NAME=VALUE`},
		{"create with an upper-case --meta name", []string{"create", "--name", "x", "--scope", "full", "--expires", "1d", "--meta", "Plan=pro"}, `--meta "Plan": names must match`},
		{"create with an empty --meta value", []string{"create", "--name", "x", "--scope", "full", "--expires", "1d", "--meta", "plan="}, "--meta plan=: an empty value removes an entry in update"},
		{"create with a --meta name twice", []string{"create", "--name", "x", "--scope", "full", "--expires", "1d", "--meta", "a=1", "--meta", "a=2"}, "--meta a: given twice"},
		{"create with a long --meta pasted key is cut", []string{"create", "--name", "x", "--scope", "full", "--expires", "1d", "--meta", "dk_0123456789abcdefghijABCDEFGHIJ"}, `--meta "dk_012345678"…`},
		{"list with a bad owner", []string{"list", "--owner", "a/b"}, "--owner: must hold only"},
		{"update with nothing to change", []string{"update", validID}, "nothing to change: give --name NAME, --meta NAME=VALUE, --origin ORIGIN, --ip CIDR, --rate-limit N/WINDOW, --no-origins, --no-ips or --no-rate-limits"},
		{"update with an empty name", []string{"update", validID, "--name", ""}, "--name must not be empty"},
		{"update with a bad --meta", []string{"update", validID, "--meta", "1a=x"}, `--meta "1a": names must match`},
		{"update a malformed ID", []string{"update", "key_1", "--name", "x"}, "not a key ID"},
		{"update the scope", []string{"update", validID, "--scope", "full"}, "unknown flag: --scope"},
		{"create with an origin with a path", []string{"create", "--name", "x", "--scope", "widget", "--expires", "1d", "--origin", "https://a.example", "--origin", "https://b.example/app"},
			`--origin: origin "https://b.ex"…: an origin has no path`},
		{"create with an origin without a scheme", []string{"create", "--name", "x", "--scope", "widget", "--expires", "1d", "--origin", "shop.example.com"},
			`--origin: origin "shop.example"…: want scheme://host[:port]`},
		{"create with an empty --origin", []string{"create", "--name", "x", "--scope", "widget", "--expires", "1d", "--origin", ""}, "--origin: empty"},
		{"create with an IP prefix with host bits", []string{"create", "--name", "x", "--scope", "full", "--expires", "1d", "--ip", "10.0.0.1/8"},
			`--ip: IP "10.0.0.1/8": bits are set after the prefix length /8`},
		{"create with 33 --ip", append([]string{"create", "--name", "x", "--scope", "full", "--expires", "1d"}, slices.Repeat([]string{"--ip", "10.0.0.1"}, 33)...),
			"--ip: must hold at most 32 entries, not 33"},
		{"update with --origin and --no-origins", []string{"update", validID, "--origin", "https://a.example", "--no-origins"}, "--origin and --no-origins: give one"},
		{"update with --ip and --no-ips", []string{"update", validID, "--ip", "::1", "--no-ips"}, "--ip and --no-ips: give one"},
		{"update with a bad --ip", []string{"update", validID, "--ip", "localhost"}, `--ip: IP "localhost": not an IP address or CIDR prefix`},
		{"update with a bad --origin", []string{"update", validID, "--origin", "ftp://a.example"}, `--origin: origin "ftp://a.exam"…: scheme must be http or https`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admin := newAdminRecorder(t)
			_, _, err := runCLI(t, false, "", append(tt.args, "--address", admin.addr())...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got error %v, want one holding %q", err, tt.wantErr)
			}
			if got := admin.requests(); len(got) != 0 {
				t.Errorf("got requests %q, want none", got)
			}
		})
	}
}

func TestCLIRevokeAsksOnATerminal(t *testing.T) {
	tests := []struct {
		name         string
		answer       string
		wantRequests []string
		wantErr      string
	}{
		{"yes", "y\n", []string{"GET /apikeys/" + validID, "DELETE /apikeys/" + validID}, ""},
		{"no", "n\n", []string{"GET /apikeys/" + validID}, "key " + validID + " was not revoked"},
		{"empty answer", "\n", []string{"GET /apikeys/" + validID}, "was not revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admin := newAdminRecorder(t, cannedAnswer{200, keyAnswer}, cannedAnswer{200, revokedAnswer})
			_, stderr, err := runCLI(t, true, tt.answer, "revoke", validID, "--address", admin.addr())
			if tt.wantErr == "" && err != nil {
				t.Fatalf("got error %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got error %v, want one holding %q", err, tt.wantErr)
			}
			if want := "Revoke key " + validID + " (CI)? [y/N] "; stderr != want {
				t.Errorf("got prompt %q, want %q", stderr, want)
			}
			if got := admin.requests(); strings.Join(got, "|") != strings.Join(tt.wantRequests, "|") {
				t.Errorf("got requests %q, want %q", got, tt.wantRequests)
			}
		})
	}
}

func TestCLIShowsTheAdminErrorMessage(t *testing.T) {
	admin := newAdminRecorder(t, cannedAnswer{404, `{"error":"no API key has ID ` + validID + `"}` + "\n"})
	out, _, err := runCLI(t, false, "", "show", validID, "--json", "--address", admin.addr())
	if err == nil || err.Error() != "no API key has ID "+validID {
		t.Errorf("got error %v, want the admin API's message", err)
	}
	if out != "" {
		t.Errorf("got output %q, want none", out)
	}
}
