package keyservice_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/sqlite"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// admin is who the tests create keys as.
var admin = apikey.Actor{Type: apikey.ActorAdmin, ID: "tester"}

// syncCounter counts the service's calls to Sync; the verifier's own tests
// check what Sync does.
type syncCounter struct{ n int }

func (s *syncCounter) Sync(context.Context) error { s.n++; return nil }

// pendingUses stands in for the last-used recorder's read-back.
type pendingUses map[string]time.Time

func (p pendingUses) Pending(id string) (time.Time, bool) { t, ok := p[id]; return t, ok }

type fixture struct {
	svc     *keyservice.Service
	store   keystore.Store
	format  *apikey.Format
	syncs   *syncCounter
	pending pendingUses
	now     *time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	format, err := apikey.NewFormat("dk")
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	f := &fixture{store: store, format: format, syncs: &syncCounter{}, pending: pendingUses{}, now: &now}
	f.svc = keyservice.New(store, format, f.syncs, f.pending, func() time.Time { return *f.now })
	return f
}

func (f *fixture) create(t *testing.T, name, scope, expires string) (string, apikey.Key) {
	t.Helper()
	secret, k, err := f.svc.Create(context.Background(), keyservice.NewKey{Name: name, Scope: scope, ExpiresIn: expires, CreatedBy: admin})
	if err != nil {
		t.Fatalf("Create(%q, %q, %q): %v", name, scope, expires, err)
	}
	return secret, k
}

func wantInputError(t *testing.T, err error, field string) {
	t.Helper()
	var ie *keyservice.InputError
	if !errors.As(err, &ie) {
		t.Fatalf("error %v, want an InputError on %q", err, field)
	}
	if ie.Field != field {
		t.Errorf("InputError field %q, want %q (%v)", ie.Field, field, err)
	}
}

func TestCreateStoresADigestAndReturnsTheSecretOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	secret, k := f.create(t, "Production Backend", "full", "1mo")
	if err := f.format.Check(secret); err != nil {
		t.Fatalf("secret %q fails the format check: %v", secret, err)
	}
	stored, err := f.store.GetByDigest(ctx, apikey.DigestOf(secret))
	if err != nil {
		t.Fatalf("the secret's digest is not stored: %v", err)
	}
	if stored.ID != k.ID || stored.Name != "Production Backend" || stored.Scope != apikey.ScopeFull {
		t.Errorf("stored %+v, want the created key %+v", stored, k)
	}
	if want := time.Date(2026, 12, 25, 12, 0, 0, 0, time.UTC); !k.ExpiresAt.Equal(want) {
		t.Errorf("1mo key created %s expires %s, want %s", t0, k.ExpiresAt, want)
	}
	if f.syncs.n != 1 {
		t.Errorf("Create synced %d times, want 1", f.syncs.n)
	}
}

func TestCreateRejectsBadInputNamingTheField(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, keyName, scope, expires, field string
	}{
		{"empty name", "", "full", "1d", "name"},
		{"blank name", "  \t ", "full", "1d", "name"},
		{"name of 101 characters", strings.Repeat("n", 101), "full", "1d", "name"},
		{"name of 101 multibyte characters", strings.Repeat("é", 101), "full", "1d", "name"},
		{"name with a newline", "a\nb", "full", "1d", "name"},
		{"name that is not UTF-8", "a\xffb", "full", "1d", "name"},
		{"name with a C1 next line", "a\u0085b", "full", "1d", "name"},
		{"name with a C1 control sequence introducer", "a\u009b31mb", "full", "1d", "name"},
		{"name with a right-to-left override", "invoice\u202egnp.exe", "full", "1d", "name"},
		{"name with a zero-width space", "a\u200bb", "full", "1d", "name"},
		{"name with a zero-width joiner", "a\u200db", "full", "1d", "name"},
		{"name with a byte order mark", "\ufeffa", "full", "1d", "name"},
		{"name of ideographic spaces", "\u3000\u3000", "full", "1d", "name"},
		{"name of no-break spaces", "\u00a0", "full", "1d", "name"},
		{"unknown scope", "x", "admin", "1d", "scope"},
		{"empty scope", "x", "", "1d", "scope"},
		{"unknown expiry", "x", "full", "2d", "expires_in"},
		{"empty expiry", "x", "full", "", "expires_in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.svc.Create(context.Background(), keyservice.NewKey{Name: tt.keyName, Scope: tt.scope, ExpiresIn: tt.expires, CreatedBy: admin})
			wantInputError(t, err, tt.field)
			if tt.field == "name" && len(tt.keyName) > 1 && strings.Contains(err.Error(), tt.keyName) {
				t.Errorf("error %q quotes the name whole", err)
			}
		})
	}
	page, err := f.svc.List(context.Background(), keyservice.ListOptions{})
	if err != nil || len(page.Keys) != 0 {
		t.Errorf("after only bad requests, List = %d keys, %v; want none", len(page.Keys), err)
	}
}

func TestCreateAcceptsNamesUpToTheLimit(t *testing.T) {
	f := newFixture(t)
	for _, name := range []string{"a", strings.Repeat("é", 100), "CI/CD Pipeline — staging"} {
		if _, k := f.create(t, name, "widget", "never"); k.Name != name || !k.ExpiresAt.IsZero() {
			t.Errorf("created %+v, want name %q and no expiry", k, name)
		}
	}
}

func TestListFiltersByStatusNewestFirst(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, a := f.create(t, "a", "full", "1h")
	*f.now = t0.Add(time.Minute)
	_, b := f.create(t, "b", "widget", "never")
	*f.now = t0.Add(2 * time.Minute)
	_, c := f.create(t, "c", "routine", "1d")
	if _, err := f.svc.Revoke(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	*f.now = t0.Add(2 * time.Hour) // a has expired
	tests := []struct {
		status string
		want   []string
	}{
		{"", []string{c.ID, b.ID, a.ID}},
		{"active", []string{b.ID}},
		{"expired", []string{a.ID}},
		{"revoked", []string{c.ID}},
	}
	for _, tt := range tests {
		page, err := f.svc.List(ctx, keyservice.ListOptions{Status: tt.status})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, k := range page.Keys {
			got = append(got, k.ID)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("List(%q) = %v, want %v", tt.status, got, tt.want)
		}
	}
	_, err := f.svc.List(ctx, keyservice.ListOptions{Status: "deleted"})
	wantInputError(t, err, "status")
}

func TestRevokeIsWriteOnceAndSyncsBeforeReturning(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, k := f.create(t, "a", "full", "1d")
	syncsBefore := f.syncs.n
	*f.now = t0.Add(time.Minute)
	first, err := f.svc.Revoke(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !first.RevokedAt.Equal(t0.Add(time.Minute)) || first.Status(*f.now) != apikey.StatusRevoked {
		t.Errorf("revoked key %+v, want revoked at %s", first, t0.Add(time.Minute))
	}
	if f.syncs.n != syncsBefore+1 {
		t.Errorf("Revoke synced %d times, want 1", f.syncs.n-syncsBefore)
	}
	*f.now = t0.Add(time.Hour)
	again, err := f.svc.Revoke(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !again.RevokedAt.Equal(first.RevokedAt) {
		t.Errorf("second revoke moved revoked_at from %s to %s", first.RevokedAt, again.RevokedAt)
	}
}

func TestUnknownAndMalformedIDs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	unknown, _ := apikey.NewID()
	if _, err := f.svc.Get(ctx, unknown); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := f.svc.Revoke(ctx, unknown); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Revoke(unknown) = %v, want ErrNotFound", err)
	}
	if _, _, _, err := f.svc.Rotate(ctx, unknown, ""); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Rotate(unknown) = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"", "key_", "../etc", "key_" + strings.Repeat("a", 30)} {
		_, err := f.svc.Get(ctx, id)
		wantInputError(t, err, "id")
	}
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name        string
		expires     string
		grace       string
		wantOldExp  time.Time // zero: compute from the new key
		wantNextExp time.Time
	}{
		{"default grace of a day", "1y", "", t0.Add(time.Hour + 24*time.Hour), time.Date(2027, 11, 25, 13, 0, 0, 0, time.UTC)},
		{"no grace", "1w", "0s", t0.Add(time.Hour), t0.Add(time.Hour + 7*24*time.Hour)},
		{"grace past the old expiry keeps the old expiry", "1d", "168h", t0.Add(24 * time.Hour), t0.Add(25 * time.Hour)},
		{"never-expiring key", "never", "30m", t0.Add(time.Hour + 30*time.Minute), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			oldSecret, old := f.create(t, "CI", "routine", tt.expires)
			*f.now = t0.Add(time.Hour)
			secret, next, prev, err := f.svc.Rotate(ctx, old.ID, tt.grace)
			if err != nil {
				t.Fatal(err)
			}
			if secret == oldSecret || f.format.Check(secret) != nil || next.ID == old.ID {
				t.Fatalf("rotation returned secret %q, id %s: not a new key", secret, next.ID)
			}
			if next.Name != "CI" || next.Scope != apikey.ScopeRoutine || string(next.Expiry) != tt.expires {
				t.Errorf("new key %+v does not keep name, scope and preset", next)
			}
			if !next.ExpiresAt.Equal(tt.wantNextExp) {
				t.Errorf("new key expires %s, want %s", next.ExpiresAt, tt.wantNextExp)
			}
			if prev.ID != old.ID || !prev.ExpiresAt.Equal(tt.wantOldExp) {
				t.Errorf("old key expires %s, want %s", prev.ExpiresAt, tt.wantOldExp)
			}
			stored, err := f.store.Get(ctx, old.ID)
			if err != nil || !stored.ExpiresAt.Equal(tt.wantOldExp) {
				t.Errorf("stored old key expires %s (%v), want %s", stored.ExpiresAt, err, tt.wantOldExp)
			}
		})
	}
}

func TestRotateRefusesReplacedAndExpiredKeys(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, k := f.create(t, "a", "full", "1h")
	_, next, prev, err := f.svc.Rotate(ctx, k.ID, "30m")
	if err != nil {
		t.Fatal(err)
	}
	if prev.ReplacedBy != next.ID {
		t.Errorf("old key's ReplacedBy = %q, want the new key %s", prev.ReplacedBy, next.ID)
	}
	if got := keyservice.View(prev, f.svc.Now()).ReplacedBy; got == nil || *got != next.ID {
		t.Errorf("View(old).ReplacedBy = %v, want %s", got, next.ID)
	}
	// Within the grace period the old key is still active, but replaced.
	if _, _, _, err := f.svc.Rotate(ctx, k.ID, ""); !errors.Is(err, keystore.ErrReplaced) {
		t.Errorf("Rotate(replaced) = %v, want ErrReplaced", err)
	}
	_, expiring := f.create(t, "b", "full", "1h")
	*f.now = t0.Add(time.Hour)
	if _, _, _, err := f.svc.Rotate(ctx, expiring.ID, ""); !errors.Is(err, keystore.ErrExpired) {
		t.Errorf("Rotate(expired) = %v, want ErrExpired", err)
	}
	if page, _ := f.svc.List(ctx, keyservice.ListOptions{}); len(page.Keys) != 3 {
		t.Errorf("%d keys after refused rotations, want 3", len(page.Keys))
	}
}

func TestRotateRefusesRevokedKeysAndBadGrace(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, k := f.create(t, "a", "full", "1d")
	for _, grace := range []string{"tomorrow", "-1s", "169h", "1d"} {
		_, _, _, err := f.svc.Rotate(ctx, k.ID, grace)
		wantInputError(t, err, "grace")
	}
	if _, err := f.svc.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := f.svc.Rotate(ctx, k.ID, ""); !errors.Is(err, keystore.ErrRevoked) {
		t.Errorf("Rotate(revoked) = %v, want ErrRevoked", err)
	}
	if page, _ := f.svc.List(ctx, keyservice.ListOptions{}); len(page.Keys) != 1 {
		t.Errorf("%d keys after refused rotations, want 1", len(page.Keys))
	}
}

func TestPendingLastUseIsShownButNeverMovesBack(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, k := f.create(t, "a", "full", "1d")
	written := t0.Add(10 * time.Minute)
	if err := f.store.TouchLastUsed(ctx, map[string]time.Time{k.ID: written}); err != nil {
		t.Fatal(err)
	}
	f.pending[k.ID] = t0.Add(5 * time.Minute) // older than what is written
	got, err := f.svc.Get(ctx, k.ID)
	if err != nil || !got.LastUsedAt.Equal(written) {
		t.Errorf("last used %s (%v), want the written %s", got.LastUsedAt, err, written)
	}
	f.pending[k.ID] = t0.Add(20 * time.Minute)
	got, _ = f.svc.Get(ctx, k.ID)
	if !got.LastUsedAt.Equal(t0.Add(20 * time.Minute)) {
		t.Errorf("last used %s, want the pending %s", got.LastUsedAt, t0.Add(20*time.Minute))
	}
	page, _ := f.svc.List(ctx, keyservice.ListOptions{Status: "active"})
	keys := page.Keys
	if len(keys) != 1 || !keys[0].LastUsedAt.Equal(t0.Add(20*time.Minute)) {
		t.Errorf("List does not merge the pending use: %+v", keys)
	}
}

func TestViewJSON(t *testing.T) {
	k := apikey.Key{
		ID: "key_0123456789012345678901", Name: "n", Scope: apikey.ScopeWidget, Hint: "dk_…abcd",
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), CreatedBy: apikey.Actor{Type: apikey.ActorSystem},
	}
	b, err := json.Marshal(keyservice.View(k, t0))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"key_0123456789012345678901","name":"n","scope":"widget","status":"active","hint":"dk_…abcd",` +
		`"created_at":"2026-11-25T12:00:00Z","last_used_at":null,"expires_at":"2026-11-25T13:00:00Z","revoked_at":null,"replaced_by":null,` +
		`"owner":null,"metadata":{},"created_by":{"type":"system","id":""},"allowed_origins":[],"allowed_ips":[],"rate_limits":[]}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
	k.ReplacedBy = "key_9876543210987654321098"
	b, err = json.Marshal(keyservice.View(k, t0))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"replaced_by":"key_9876543210987654321098",`; !strings.Contains(string(b), want) {
		t.Errorf("JSON of a replaced key\n got %s\nwant it to hold %s", b, want)
	}
	k.Owner, k.Metadata = "org_a", map[string]string{"plan": "pro"}
	k.CreatedBy = apikey.Actor{Type: apikey.ActorAdmin, ID: "ops@host"}
	k.AllowedOrigins, k.AllowedIPs, k.RateLimits = []string{"https://a.example"}, []string{"10.0.0.0/8"}, []string{"10/s"}
	b, err = json.Marshal(keyservice.View(k, t0))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"owner":"org_a","metadata":{"plan":"pro"},"created_by":{"type":"admin","id":"ops@host"},` +
		`"allowed_origins":["https://a.example"],"allowed_ips":["10.0.0.0/8"],"rate_limits":["10/s"]}`; !strings.HasSuffix(string(b), want) {
		t.Errorf("JSON of an owned key\n got %s\nwant it to end %s", b, want)
	}
	if got := keyservice.View(k, t0.Add(time.Hour)).Status; got != "expired" {
		t.Errorf("status at expiry %q, want expired", got)
	}
}
