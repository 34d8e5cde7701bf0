package caddymodule

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	// The adapt tests use reverse_proxy, respond and basic_auth too.
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func TestAppUnmarshalCaddyfile(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		want    App
		wantErr string
	}{
		{name: "no block", input: `apikeys`, want: App{}},
		{name: "empty block", input: "apikeys {\n}", want: App{}},
		{
			name: "every option",
			input: `apikeys {
				store sqlite /var/lib/keygate/keys.db
				key_prefix acme
				cache_size 5000
				cache_ttl 30s
				negative_cache_ttl 2s
				last_used_interval 1m
				sync_interval 1d
				audit_retention 90d
			}`,
			want: App{
				Store:            &StoreConfig{Backend: "sqlite", Path: "/var/lib/keygate/keys.db"},
				KeyPrefix:        "acme",
				CacheSize:        5000,
				CacheTTL:         caddy.Duration(30 * time.Second),
				NegativeCacheTTL: caddy.Duration(2 * time.Second),
				LastUsedInterval: caddy.Duration(time.Minute),
				SyncInterval:     caddy.Duration(24 * time.Hour),
				AuditRetention:   caddy.Duration(90 * 24 * time.Hour),
			},
		},
		{name: "sqlite without a path", input: "apikeys {\nstore sqlite\n}", want: App{Store: &StoreConfig{Backend: "sqlite"}}},
		{name: "postgres", input: "apikeys {\nstore postgres {env.KEYGATE_DSN}\n}", want: App{Store: &StoreConfig{Backend: "postgres", DSN: "{env.KEYGATE_DSN}"}}},
		{name: "argument on the option", input: `apikeys sqlite`, wantErr: "wrong argument count"},
		{name: "unknown subdirective", input: "apikeys {\ncache 5\n}", wantErr: `unrecognized subdirective "cache"`},
		{name: "repeated subdirective", input: "apikeys {\ncache_ttl 1m\ncache_ttl 2m\n}", wantErr: "cache_ttl is given more than once"},
		{name: "store without a backend", input: "apikeys {\nstore\n}", wantErr: "wrong argument count"},
		{name: "unknown backend", input: "apikeys {\nstore mysql dsn\n}", wantErr: `unknown store backend "mysql"`},
		{name: "postgres without a dsn", input: "apikeys {\nstore postgres\n}", wantErr: "store postgres needs a DSN"},
		{name: "sqlite with two paths", input: "apikeys {\nstore sqlite a b\n}", wantErr: "wrong argument count"},
		{name: "bad prefix", input: "apikeys {\nkey_prefix DK\n}", wantErr: "lowercase"},
		{name: "prefix too long", input: "apikeys {\nkey_prefix abcdefghijk\n}", wantErr: "2 to 10"},
		{name: "prefix missing", input: "apikeys {\nkey_prefix\n}", wantErr: "wrong argument count"},
		{name: "cache_size not a number", input: "apikeys {\ncache_size lots\n}", wantErr: "positive whole number"},
		{name: "cache_size zero", input: "apikeys {\ncache_size 0\n}", wantErr: "positive whole number"},
		{name: "bad duration", input: "apikeys {\ncache_ttl soon\n}", wantErr: `cache_ttl "soon"`},
		{name: "negative duration", input: "apikeys {\nsync_interval -5s\n}", wantErr: "must be positive"},
		{name: "duration with two args", input: "apikeys {\nlast_used_interval 1s 2s\n}", wantErr: "wrong argument count"},
		{name: "confirm_timeout", input: "apikeys {\nconfirm_timeout 500ms\n}", want: App{ConfirmTimeout: durationPtr(500 * time.Millisecond)}},
		{name: "confirm_timeout 0s answers at once", input: "apikeys {\nconfirm_timeout 0s\n}", want: App{ConfirmTimeout: durationPtr(0)}},
		{name: "negative confirm_timeout", input: "apikeys {\nconfirm_timeout -1s\n}", wantErr: "must not be negative"},
		{name: "bad confirm_timeout", input: "apikeys {\nconfirm_timeout soon\n}", wantErr: `confirm_timeout "soon"`},
		{
			name: "rate limits",
			input: `apikeys {
				rate_limit widget 10/1s 1000/24h
				rate_limit routine 100/1m
				rate_limit_store redis {env.KEYGATE_REDIS}
				rate_limit_on_error deny
			}`,
			want: App{
				RateLimits:       map[string][]string{"widget": {"10/1s", "1000/1d"}, "routine": {"100/1m"}},
				RateLimitStore:   &RateLimitStoreConfig{Backend: "redis", URL: "{env.KEYGATE_REDIS}"},
				RateLimitOnError: "deny",
			},
		},
		{name: "rate_limit_store local", input: "apikeys {\nrate_limit_store local\n}", want: App{RateLimitStore: &RateLimitStoreConfig{Backend: "local"}}},
		{name: "rate_limit without a scope", input: "apikeys {\nrate_limit\n}", wantErr: "rate_limit needs a scope and its limits"},
		{name: "rate_limit without limits", input: "apikeys {\nrate_limit widget\n}", wantErr: "rate_limit widget needs at least one limit"},
		{name: "rate_limit of an unknown scope", input: "apikeys {\nrate_limit admin 10/1s\n}", wantErr: `rate_limit: unknown scope "admin"`},
		{name: "rate_limit bad syntax", input: "apikeys {\nrate_limit widget 10/s\n}", wantErr: `rate_limit widget: "10/s" must be N/WINDOW`},
		{name: "rate_limit of 0", input: "apikeys {\nrate_limit widget 0/1m\n}", wantErr: "N must be from 1 to 1000000000"},
		{name: "rate_limit window too long", input: "apikeys {\nrate_limit widget 5/31d\n}", wantErr: "WINDOW must be from 1s to 30d"},
		{name: "rate_limit window twice", input: "apikeys {\nrate_limit widget 5/1m 10/60s\n}", wantErr: "give each window once"},
		{name: "rate_limit five limits", input: "apikeys {\nrate_limit widget 1/1s 1/2s 1/3s 1/4s 1/5s\n}", wantErr: "at most 4 limits"},
		{name: "rate_limit scope twice", input: "apikeys {\nrate_limit widget 1/1s\nrate_limit widget 2/1m\n}", wantErr: "rate_limit widget is given more than once"},
		{name: "rate_limit_store redis without a URL", input: "apikeys {\nrate_limit_store redis\n}", wantErr: "rate_limit_store redis needs a URL"},
		{name: "rate_limit_store unknown", input: "apikeys {\nrate_limit_store memcached x\n}", wantErr: `unknown rate_limit_store "memcached"`},
		{name: "rate_limit_on_error bad", input: "apikeys {\nrate_limit_on_error maybe\n}", wantErr: `rate_limit_on_error "maybe": want allow or deny`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got App
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "Testfile:") {
					t.Errorf("error %q does not name the file and line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func durationPtr(d time.Duration) *caddy.Duration {
	cd := caddy.Duration(d)
	return &cd
}

func TestHandlerUnmarshalCaddyfile(t *testing.T) {
	off := false
	tests := []struct {
		name    string
		input   string
		want    Handler
		wantErr string
	}{
		{name: "bare", input: `apikey`, want: Handler{}},
		{name: "one scope", input: `apikey widget`, want: Handler{Scopes: []string{"widget"}}},
		{name: "two scopes", input: `apikey widget routine`, want: Handler{Scopes: []string{"widget", "routine"}}},
		{
			name: "every subdirective",
			input: `apikey routine {
				realm internal-api
				keep_credentials
				forward_identity off
				preflight authenticate
			}`,
			want: Handler{Scopes: []string{"routine"}, Realm: "internal-api", KeepCredentials: true, ForwardIdentity: &off, Preflight: "authenticate"},
		},
		{name: "forward_identity on is the default", input: "apikey {\nforward_identity on\n}", want: Handler{}},
		{name: "rate_limit_headers off", input: "apikey {\nrate_limit_headers off\n}", want: Handler{RateLimitHeaders: &off}},
		{name: "rate_limit_headers on is the default", input: "apikey {\nrate_limit_headers on\n}", want: Handler{}},
		{name: "rate_limit_headers maybe", input: "apikey {\nrate_limit_headers maybe\n}", wantErr: `rate_limit_headers "maybe"`},
		{name: "unknown scope", input: `apikey admin`, wantErr: `unknown scope "admin"`},
		{name: "unknown subdirective", input: "apikey {\nscopes widget\n}", wantErr: `unrecognized subdirective "scopes"`},
		{name: "repeated subdirective", input: "apikey {\nrealm a\nrealm b\n}", wantErr: "realm is given more than once"},
		{name: "realm without a name", input: "apikey {\nrealm\n}", wantErr: "wrong argument count"},
		{name: "realm with a quote", input: "apikey {\nrealm `a\"b`\n}", wantErr: "must not hold quotes"},
		{name: "keep_credentials with an argument", input: "apikey {\nkeep_credentials yes\n}", wantErr: "wrong argument count"},
		{name: "forward_identity without an argument", input: "apikey {\nforward_identity\n}", wantErr: "wrong argument count"},
		{name: "forward_identity no", input: "apikey {\nforward_identity no\n}", wantErr: `forward_identity "no"`},
		{name: "preflight pass", input: "apikey {\npreflight pass\n}", wantErr: `preflight "pass"`},
		{name: "preflight with two arguments", input: "apikey {\npreflight authenticate now\n}", wantErr: "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Handler
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "Testfile:") {
					t.Errorf("error %q does not name the file and line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestCaddyfileAdapt adapts every testdata/adapt/*.caddyfiletest: a
// Caddyfile, a line of dashes, and either the JSON it adapts to or the text
// of the error it gives. Set KEYGATE_UPDATE_GOLDEN=1 to rewrite the JSON
// of the files that expect JSON.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "adapt", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	const separator = "----------"
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, expected, ok := strings.Cut(string(data), separator)
			if !ok {
				t.Fatalf("no %s line", separator)
			}
			input = strings.TrimSpace(input) + "\n"
			expected = strings.TrimSpace(expected)

			out, _, adaptErr := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
			if !strings.HasPrefix(expected, "{") {
				if adaptErr == nil {
					t.Fatalf("adapted without error, want an error containing %q", expected)
				}
				if !strings.Contains(adaptErr.Error(), expected) {
					t.Errorf("error = %q, want one containing %q", adaptErr, expected)
				}
				return
			}
			if adaptErr != nil {
				t.Fatalf("adapting: %v", adaptErr)
			}
			var got bytes.Buffer
			if err := json.Indent(&got, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			if os.Getenv("KEYGATE_UPDATE_GOLDEN") == "1" {
				if err := os.WriteFile(file, []byte(strings.TrimSpace(input)+"\n"+separator+"\n"+got.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got.String() != expected {
				t.Errorf("adapted to:\n%s\nwant:\n%s", got.String(), expected)
			}
		})
	}
}
