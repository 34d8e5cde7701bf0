package caddymodule

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
)

func TestAdminCreateAndPatchAllowedOriginsAndIPs(t *testing.T) {
	svc := sqliteService(t)
	status, body := adminCall(t, svc, http.MethodPost, "/apikeys",
		`{"name":"widget","scope":"widget","expires_in":"never",`+
			`"allowed_origins":["HTTPS://Shop.Example.com:443","https://*.bücher.example"],"allowed_ips":["203.0.113.7/32","10.0.0.0/8"]}`, nil)
	if status != http.StatusCreated {
		t.Fatalf("POST = %d %s, want 201", status, body)
	}
	k := mustDecode[secretResponse](t, body).APIKey
	if want := []string{"https://shop.example.com", "https://*.xn--bcher-kva.example"}; !slices.Equal(k.AllowedOrigins, want) {
		t.Errorf("created allowed_origins = %q, want normalised %q", k.AllowedOrigins, want)
	}
	if want := []string{"203.0.113.7", "10.0.0.0/8"}; !slices.Equal(k.AllowedIPs, want) {
		t.Errorf("created allowed_ips = %q, want normalised %q", k.AllowedIPs, want)
	}

	path := "/apikeys/" + k.ID
	patch := func(body string) keyservice.KeyJSON {
		t.Helper()
		status, got := adminCall(t, svc, http.MethodPatch, path, body, nil)
		if status != http.StatusOK {
			t.Fatalf("PATCH %s = %d %s, want 200", body, status, got)
		}
		return mustDecode[keyservice.KeyJSON](t, got)
	}
	for _, step := range []struct {
		body         string
		origins, ips []string
	}{
		{`{"name":"renamed"}`, []string{"https://shop.example.com", "https://*.xn--bcher-kva.example"}, []string{"203.0.113.7", "10.0.0.0/8"}},
		{`{"allowed_origins":["http://localhost:3000"]}`, []string{"http://localhost:3000"}, []string{"203.0.113.7", "10.0.0.0/8"}},
		{`{"allowed_ips":["::1"],"allowed_origins":null}`, []string{"http://localhost:3000"}, []string{"::1"}},
		{`{"allowed_origins":[]}`, []string{}, []string{"::1"}},
		{`{"allowed_ips":[]}`, []string{}, []string{}},
	} {
		got := patch(step.body)
		if !slices.Equal(got.AllowedOrigins, step.origins) || !slices.Equal(got.AllowedIPs, step.ips) || got.AllowedOrigins == nil || got.AllowedIPs == nil {
			t.Errorf("after PATCH %s: origins %q, IPs %q; want %q, %q", step.body, got.AllowedOrigins, got.AllowedIPs, step.origins, step.ips)
		}
	}
}

func TestAdminRefusesBadAllowedOriginsAndIPsNamingTheEntry(t *testing.T) {
	svc := sqliteService(t)
	_, k, err := svc.Create(t.Context(), keyservice.NewKey{Name: "k", Scope: "widget", ExpiresIn: "1d", CreatedBy: apikey.Actor{Type: apikey.ActorAdmin},
		AllowedOrigins: []string{"https://a.example"}})
	if err != nil {
		t.Fatal(err)
	}
	const valid = `"name":"x","scope":"widget","expires_in":"1d"`
	many := `["10.0.0.1"` + strings.Repeat(`,"10.0.0.1"`, 32) + `]`
	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{"origin with a path", `"allowed_origins":["https://a.example","https://b.example/app"]`, `allowed_origins[1]: origin "https://b.ex"…: an origin has no path`},
		{"origin with scheme ftp", `"allowed_origins":["ftp://a.example"]`, `allowed_origins[0]: origin "ftp://a.exam"…: scheme must be http or https`},
		{"origin not a string", `"allowed_origins":[42]`, `allowed_origins[0]: must be a string`},
		{"origins not an array", `"allowed_origins":"https://a.example"`, `allowed_origins: must be a JSON array of strings`},
		{"IP prefix with host bits", `"allowed_ips":["10.0.0.1/8"]`, `allowed_ips[0]: IP "10.0.0.1/8": bits are set after the prefix length /8`},
		{"host name as an IP", `"allowed_ips":["::1","example.com"]`, `allowed_ips[1]: IP "example.com": not an IP address or CIDR prefix`},
		{"33 IPs", `"allowed_ips":` + many, `allowed_ips: must hold at most 32 entries, not 33`},
	} {
		t.Run("POST "+tc.name, func(t *testing.T) {
			status, msg := adminCall(t, svc, http.MethodPost, "/apikeys", `{`+valid+`,`+tc.body+`}`, nil)
			if status != http.StatusBadRequest || !strings.Contains(msg, tc.wantErr) {
				t.Errorf("POST = %d %q, want 400 holding %q", status, msg, tc.wantErr)
			}
		})
		t.Run("PATCH "+tc.name, func(t *testing.T) {
			status, msg := adminCall(t, svc, http.MethodPatch, "/apikeys/"+k.ID, `{"name":"changed",`+tc.body+`}`, nil)
			if status != http.StatusBadRequest || !strings.Contains(msg, tc.wantErr) {
				t.Errorf("PATCH = %d %q, want 400 holding %q", status, msg, tc.wantErr)
			}
		})
	}
	if got, _ := svc.Get(t.Context(), k.ID); got.Name != "k" || !slices.Equal(got.AllowedOrigins, []string{"https://a.example"}) || got.AllowedIPs != nil {
		t.Errorf("after refused patches: %q %q %q, want it unchanged", got.Name, got.AllowedOrigins, got.AllowedIPs)
	}
	if resp, err := getList(t, svc, ""); err != nil || len(resp.APIKeys) != 1 {
		t.Errorf("after refused creates: %d keys, %v; want 1", len(resp.APIKeys), err)
	}
}
