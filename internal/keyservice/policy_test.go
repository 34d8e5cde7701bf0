package keyservice_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/docana/keygate/internal/keyservice"
)

func TestCreateStoresAllowedOriginsAndIPsNormalised(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, k, err := f.svc.Create(ctx, keyservice.NewKey{
		Name: "widget", Scope: "widget", ExpiresIn: "never", CreatedBy: admin,
		AllowedOrigins: []string{"HTTPS://App.Example.com:443", "https://*.bücher.example", "https://app.example.com"},
		AllowedIPs:     []string{"203.0.113.7/32", "2001:DB8::/32"},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantOrigins := []string{"https://app.example.com", "https://*.xn--bcher-kva.example"}
	wantIPs := []string{"203.0.113.7", "2001:db8::/32"}
	stored, err := f.store.Get(ctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	for what, got := range map[string][]string{
		"returned origins": k.AllowedOrigins, "stored origins": stored.AllowedOrigins,
		"returned IPs": k.AllowedIPs, "stored IPs": stored.AllowedIPs,
	} {
		want := wantOrigins
		if strings.HasSuffix(what, "IPs") {
			want = wantIPs
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
}

func TestCreateRefusesABadOriginOrIPNamingTheEntry(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name             string
		origins, ips     []string
		field, inMessage string
	}{
		{"origin with a path", []string{"https://a.example", "https://b.example/app"}, nil, "allowed_origins[1]", "no path"},
		{"origin without a scheme", []string{"a.example"}, nil, "allowed_origins[0]", "scheme://host"},
		{"33 origins", slices.Repeat([]string{"https://a.example"}, 33), nil, "allowed_origins", "at most 32"},
		{"IP prefix with host bits", nil, []string{"10.0.0.0/8", "::1", "10.0.0.1/8"}, "allowed_ips[2]", "/8"},
		{"host name as an IP", nil, []string{"example.com"}, "allowed_ips[0]", "not an IP address"},
		{"33 IPs", nil, slices.Repeat([]string{"10.0.0.1"}, 33), "allowed_ips", "at most 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := f.svc.Create(context.Background(), keyservice.NewKey{
				Name: "x", Scope: "widget", ExpiresIn: "never", CreatedBy: admin,
				AllowedOrigins: tc.origins, AllowedIPs: tc.ips,
			})
			wantInputError(t, err, tc.field)
			if err != nil && !strings.Contains(err.Error(), tc.inMessage) {
				t.Errorf("error %q, want it to say %q", err, tc.inMessage)
			}
		})
	}
	if page, err := f.svc.List(context.Background(), keyservice.ListOptions{}); err != nil || len(page.Keys) != 0 {
		t.Errorf("after only bad requests, List = %d keys, %v; want none", len(page.Keys), err)
	}
}

func TestUpdateReplacesKeepsAndClearsAllowedOriginsAndIPs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, k, err := f.svc.Create(ctx, keyservice.NewKey{Name: "k", Scope: "widget", ExpiresIn: "never", CreatedBy: admin,
		AllowedOrigins: []string{"https://a.example"}, AllowedIPs: []string{"10.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	list := func(l ...string) *[]string { return &l }
	name := "renamed"
	for _, step := range []struct {
		name         string
		u            keyservice.KeyUpdate
		origins, ips []string
	}{
		{"name only keeps both", keyservice.KeyUpdate{Name: &name}, []string{"https://a.example"}, []string{"10.0.0.0/8"}},
		{"origins replaced, normalised", keyservice.KeyUpdate{AllowedOrigins: list("http://LOCALHOST:3000", "https://b.example:443")},
			[]string{"http://localhost:3000", "https://b.example"}, []string{"10.0.0.0/8"}},
		{"IPs replaced", keyservice.KeyUpdate{AllowedIPs: list("::1/128")}, []string{"http://localhost:3000", "https://b.example"}, []string{"::1"}},
		{"origins cleared", keyservice.KeyUpdate{AllowedOrigins: list()}, nil, []string{"::1"}},
		{"IPs cleared with nil", keyservice.KeyUpdate{AllowedIPs: new([]string)}, nil, nil},
	} {
		got, err := f.svc.Update(ctx, k.ID, step.u)
		if err != nil {
			t.Fatalf("Update(%s) = %v", step.name, err)
		}
		stored, _ := f.store.Get(ctx, k.ID)
		for _, key := range [][2][]string{{got.AllowedOrigins, got.AllowedIPs}, {stored.AllowedOrigins, stored.AllowedIPs}} {
			if !slices.Equal(key[0], step.origins) || !slices.Equal(key[1], step.ips) {
				t.Errorf("after Update(%s): origins %q, IPs %q; want %q, %q", step.name, key[0], key[1], step.origins, step.ips)
			}
		}
	}
	_, err = f.svc.Update(ctx, k.ID, keyservice.KeyUpdate{Name: &name, AllowedIPs: list("10.0.0.0/8", "10.0.0.256")})
	wantInputError(t, err, "allowed_ips[1]")
	_, err = f.svc.Update(ctx, k.ID, keyservice.KeyUpdate{AllowedOrigins: list("https://*")})
	wantInputError(t, err, "allowed_origins[0]")
	if stored, _ := f.store.Get(ctx, k.ID); stored.AllowedOrigins != nil || stored.AllowedIPs != nil {
		t.Errorf("after refused updates: origins %q, IPs %q; want none", stored.AllowedOrigins, stored.AllowedIPs)
	}
}

func TestRotateKeepsAllowedOriginsAndIPs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, k, err := f.svc.Create(ctx, keyservice.NewKey{Name: "k", Scope: "widget", ExpiresIn: "1y", CreatedBy: admin,
		AllowedOrigins: []string{"https://*.example.com"}, AllowedIPs: []string{"203.0.113.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	_, next, _, err := f.svc.Rotate(ctx, k.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := f.store.Get(ctx, next.ID)
	for _, got := range [][2][]string{{next.AllowedOrigins, next.AllowedIPs}, {stored.AllowedOrigins, stored.AllowedIPs}} {
		if !slices.Equal(got[0], []string{"https://*.example.com"}) || !slices.Equal(got[1], []string{"203.0.113.0/24"}) {
			t.Errorf("rotated key: origins %q, IPs %q; want those of the old key", got[0], got[1])
		}
	}
}
