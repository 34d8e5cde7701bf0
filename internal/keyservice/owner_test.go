package keyservice_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

func TestCreateStoresOwnerMetadataAndCreator(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	meta := map[string]string{"plan": "pro"}
	_, k, err := f.svc.Create(ctx, keyservice.NewKey{
		Name: "Acme", Scope: "widget", ExpiresIn: "never",
		Owner: "org_acme", Metadata: meta, CreatedBy: apikey.Actor{Type: apikey.ActorAdmin, ID: "ops@host"},
	})
	if err != nil {
		t.Fatal(err)
	}
	meta["plan"] = "changed by the caller"
	stored, err := f.store.Get(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range []apikey.Key{k, stored} {
		if got.Owner != "org_acme" || !maps.Equal(got.Metadata, map[string]string{"plan": "pro"}) ||
			got.CreatedBy != (apikey.Actor{Type: apikey.ActorAdmin, ID: "ops@host"}) {
			t.Errorf("key = owner %q, metadata %v, created by %+v; want org_acme, plan pro, admin ops@host", got.Owner, got.Metadata, got.CreatedBy)
		}
	}
}

func TestCreateRefusesABadOwnerMetadataOrCreatorNamingTheField(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name  string
		nk    keyservice.NewKey
		field string
	}{
		{"owner with a space", keyservice.NewKey{Owner: "org a"}, "owner"},
		{"owner of 129 characters", keyservice.NewKey{Owner: strings.Repeat("o", 129)}, "owner"},
		{"metadata name in upper case", keyservice.NewKey{Metadata: map[string]string{"Plan": "x"}}, "metadata"},
		{"metadata value with a newline", keyservice.NewKey{Metadata: map[string]string{"plan": "a\nb"}}, "metadata"},
		{"no creator", keyservice.NewKey{CreatedBy: apikey.Actor{}}, "created_by"},
		{"creator ID with a control", keyservice.NewKey{CreatedBy: apikey.Actor{Type: apikey.ActorAdmin, ID: "\x1b[31m"}}, "created_by"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nk := tc.nk
			nk.Name, nk.Scope, nk.ExpiresIn = "x", "full", "never"
			if nk.CreatedBy == (apikey.Actor{}) && tc.field != "created_by" {
				nk.CreatedBy = admin
			}
			_, _, err := f.svc.Create(context.Background(), nk)
			wantInputError(t, err, tc.field)
		})
	}
	if page, err := f.svc.List(context.Background(), keyservice.ListOptions{}); err != nil || len(page.Keys) != 0 {
		t.Errorf("after only bad requests, List = %d keys, %v; want none", len(page.Keys), err)
	}
}

func TestUpdateRenamesAndReplacesMetadataAndSyncs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, k, err := f.svc.Create(ctx, keyservice.NewKey{Name: "old", Scope: "full", ExpiresIn: "never", Metadata: map[string]string{"a": "1", "b": "2"}, CreatedBy: admin})
	if err != nil {
		t.Fatal(err)
	}
	name := "new"
	syncs := f.syncs.n
	got, err := f.svc.Update(ctx, k.ID, keyservice.KeyUpdate{Name: &name})
	if err != nil || got.Name != "new" || !maps.Equal(got.Metadata, map[string]string{"a": "1", "b": "2"}) {
		t.Fatalf("Update(name) = %q %v, %v; want new, metadata kept", got.Name, got.Metadata, err)
	}
	if f.syncs.n != syncs+1 {
		t.Errorf("Update synced %d times, want 1", f.syncs.n-syncs)
	}
	m := map[string]string{"c": "3"}
	if got, err = f.svc.Update(ctx, k.ID, keyservice.KeyUpdate{Metadata: &m}); err != nil || !maps.Equal(got.Metadata, m) || got.Name != "new" {
		t.Fatalf("Update(metadata) = %q %v, %v; want new, c=3 only", got.Name, got.Metadata, err)
	}
	empty := map[string]string{}
	if got, err = f.svc.Update(ctx, k.ID, keyservice.KeyUpdate{Metadata: &empty}); err != nil || got.Metadata != nil {
		t.Fatalf("Update(metadata {}) = %v, %v; want none", got.Metadata, err)
	}
	if stored, _ := f.store.Get(ctx, k.ID); stored.Name != "new" || stored.Metadata != nil {
		t.Errorf("stored after the updates = %q %v; want new, no metadata", stored.Name, stored.Metadata)
	}
}

func TestUpdateRefusesBadInputRevokedAndMissingKeys(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, k := f.create(t, "k", "full", "never")
	bad, long := "a\u202eb", strings.Repeat("n", 101)
	for _, tc := range []struct {
		name  string
		id    string
		u     keyservice.KeyUpdate
		field string
	}{
		{"malformed ID", "key_x", keyservice.KeyUpdate{}, "id"},
		{"name with a bidi override", k.ID, keyservice.KeyUpdate{Name: &bad}, "name"},
		{"name of 101 characters", k.ID, keyservice.KeyUpdate{Name: &long}, "name"},
		{"bad metadata name", k.ID, keyservice.KeyUpdate{Metadata: &map[string]string{"Bad": "x"}}, "metadata"},
	} {
		_, err := f.svc.Update(ctx, tc.id, tc.u)
		wantInputError(t, err, tc.field)
	}
	name := "x"
	if _, err := f.svc.Update(ctx, "key_0000000000000000000000", keyservice.KeyUpdate{Name: &name}); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Update(unknown key) = %v, want ErrNotFound", err)
	}
	if _, err := f.svc.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Update(ctx, k.ID, keyservice.KeyUpdate{Name: &name}); !errors.Is(err, keystore.ErrRevoked) {
		t.Errorf("Update(revoked key) = %v, want ErrRevoked", err)
	}
}

func TestListOwnerKeepsThatOwnersKeys(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a1 := f.createOwned(t, "a1", "org_a")
	f.createOwned(t, "b1", "org_b")
	f.create(t, "none", "full", "never")
	a2 := f.createOwned(t, "a2", "org_a")
	page, err := f.svc.List(ctx, keyservice.ListOptions{Owner: "org_a"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keyIDs(page.Keys), []string{a2.ID, a1.ID}; !slices.Equal(got, want) {
		t.Errorf("List(owner org_a) = %q, want %q", got, want)
	}
	_, err = f.svc.List(ctx, keyservice.ListOptions{Owner: "org a"})
	wantInputError(t, err, "owner")
}

// TestAViewOfOneOwnerCannotReachKeysOfAnotherOrOfNone is the service's
// half of the console's confinement: whatever ID it is given, a view of
// owner A answers ErrNotFound for keys of B and of no owner, changes
// nothing, and lists and creates A's keys only.
func TestAViewOfOneOwnerCannotReachKeysOfAnotherOrOfNone(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	own := f.createOwned(t, "mine", "org_a")
	other := f.createOwned(t, "theirs", "org_b")
	_, none := f.create(t, "operator's", "full", "never")
	view := f.svc.ForOwner("org_a")
	name := "hijacked"
	for _, k := range []apikey.Key{other, none} {
		if _, err := view.Get(ctx, k.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("view.Get(%s) = %v, want ErrNotFound", k.Name, err)
		}
		if _, err := view.Revoke(ctx, k.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("view.Revoke(%s) = %v, want ErrNotFound", k.Name, err)
		}
		if _, _, _, err := view.Rotate(ctx, k.ID, ""); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("view.Rotate(%s) = %v, want ErrNotFound", k.Name, err)
		}
		if _, err := view.Update(ctx, k.ID, keyservice.KeyUpdate{Name: &name}); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("view.Update(%s) = %v, want ErrNotFound", k.Name, err)
		}
		stored, err := f.store.Get(ctx, k.ID)
		if err != nil || stored.Name != k.Name || !stored.RevokedAt.IsZero() || stored.ReplacedBy != "" {
			t.Errorf("%s after the view's attempts = %+v, %v; want it unchanged", k.Name, stored, err)
		}
	}
	for _, opts := range []keyservice.ListOptions{{}, {Owner: "org_b"}, {Query: other.ID}, {Query: none.ID}, {Owner: "org_a"}} {
		page, err := view.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{own.ID}
		if (opts.Owner != "" && opts.Owner != "org_a") || opts.Query != "" {
			want = nil
		}
		if got := keyIDs(page.Keys); !slices.Equal(got, want) {
			t.Errorf("view.List(%+v) = %q, want %q", opts, got, want)
		}
	}
	// Its own key it manages.
	if got, err := view.Update(ctx, own.ID, keyservice.KeyUpdate{Name: &name}); err != nil || got.Name != name {
		t.Errorf("view.Update(own key) = %q, %v; want renamed", got.Name, err)
	}
	_, next, _, err := view.Rotate(ctx, own.ID, "")
	if err != nil || next.Owner != "org_a" {
		t.Errorf("view.Rotate(own key) = owner %q, %v; want org_a", next.Owner, err)
	}
	// Create forces the view's owner, whatever the request says.
	for _, asked := range []string{"", "org_b"} {
		_, k, err := view.Create(ctx, keyservice.NewKey{Name: "new", Scope: "full", ExpiresIn: "never", Owner: asked, CreatedBy: admin})
		if err != nil || k.Owner != "org_a" {
			t.Errorf("view.Create(owner %q) = owner %q, %v; want org_a", asked, k.Owner, err)
		}
	}
	// A view bound to no owner sees nothing and makes nothing.
	empty := f.svc.ForOwner("")
	if _, err := empty.Get(ctx, none.ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("ForOwner(\"\").Get(operator's key) = %v, want ErrNotFound", err)
	}
	if page, err := empty.List(ctx, keyservice.ListOptions{}); err != nil || len(page.Keys) != 0 {
		t.Errorf("ForOwner(\"\").List = %d keys, %v; want none", len(page.Keys), err)
	}
	if _, _, err := empty.Create(ctx, keyservice.NewKey{Name: "x", Scope: "full", ExpiresIn: "never", CreatedBy: admin}); !errors.Is(err, keyservice.ErrNoOwner) {
		t.Errorf("ForOwner(\"\").Create = %v, want ErrNoOwner", err)
	}
}

func TestRotateKeepsOwnerMetadataAndCreator(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, k, err := f.svc.Create(ctx, keyservice.NewKey{Name: "k", Scope: "full", ExpiresIn: "never", Owner: "org_a",
		Metadata: map[string]string{"plan": "pro"}, CreatedBy: admin})
	if err != nil {
		t.Fatal(err)
	}
	_, next, _, err := f.svc.Rotate(ctx, k.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if next.Owner != "org_a" || next.Metadata["plan"] != "pro" || next.CreatedBy != admin {
		t.Errorf("rotated key = owner %q, metadata %v, created by %+v; want those of the old key", next.Owner, next.Metadata, next.CreatedBy)
	}
}

func (f *fixture) createOwned(t *testing.T, name, owner string) apikey.Key {
	t.Helper()
	_, k, err := f.svc.Create(context.Background(), keyservice.NewKey{Name: name, Scope: "full", ExpiresIn: "never", Owner: owner, CreatedBy: admin})
	if err != nil {
		t.Fatalf("Create(%q, owner %q) = %v", name, owner, err)
	}
	*f.now = f.now.Add(1e9)
	return k
}

func keyIDs(keys []apikey.Key) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}
