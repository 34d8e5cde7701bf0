package caddymodule

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

// fleetService is a SQLite service confirming over a registry holding
// this instance, up to date, and a second one, behind.
func fleetService(t *testing.T) *keyservice.Service {
	t.Helper()
	svc := sqliteService(t)
	reg := keystore.NewMemoryRegistry(func(context.Context) (int64, error) { return 5, nil }, nil)
	for _, in := range []keystore.Instance{
		{ID: "inst_self", Hostname: "gw-1", Version: "v1", StartedAt: time.Now(), AppliedSeq: 5},
		{ID: "inst_behind", Hostname: "gw-2", Version: "v1", StartedAt: time.Now(), AppliedSeq: 2},
	} {
		if err := reg.Beat(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	svc.SetFleet(keyservice.Fleet{Registry: reg, Self: "inst_self", Timeout: 0, Live: time.Minute})
	return svc
}

func TestAdminChangesCarryTheirPropagation(t *testing.T) {
	svc := fleetService(t)
	status, body := adminCall(t, svc, http.MethodPost, "/apikeys", `{"name":"k","scope":"full","expires_in":"1d"}`, nil)
	if status != http.StatusCreated {
		t.Fatalf("POST = %d %s", status, body)
	}
	created := mustDecode[secretResponse](t, body)
	p := created.APIKey.Propagation
	if p == nil || !slices.Equal(p.Confirmed, []string{"inst_self"}) || !slices.Equal(p.Pending, []string{"inst_behind"}) {
		t.Fatalf("create propagation = %+v in %s, want inst_self confirmed, inst_behind pending", p, body)
	}
	id := created.APIKey.ID
	for _, c := range []struct{ method, path, body string }{
		{http.MethodPatch, "/apikeys/" + id, `{"name":"renamed"}`},
		{http.MethodPost, "/apikeys/" + id + "/rotate", `{"grace":"1h"}`},
		{http.MethodDelete, "/apikeys/" + id, ``},
	} {
		_, body := adminCall(t, svc, c.method, c.path, c.body, nil)
		if !strings.Contains(body, `"propagation":{"confirmed":["inst_self"],"pending":["inst_behind"]}`) {
			t.Errorf("%s %s: %s, want the propagation", c.method, c.path, body)
		}
	}
	// Reads carry none.
	if _, body := adminCall(t, svc, http.MethodGet, "/apikeys/"+id, ``, nil); strings.Contains(body, "propagation") {
		t.Errorf("GET /apikeys/{id}: %s holds a propagation", body)
	}
}

func TestAdminInstances(t *testing.T) {
	svc := fleetService(t)
	status, body := adminCall(t, svc, http.MethodGet, "/apikeys/instances", ``, nil)
	if status != http.StatusOK {
		t.Fatalf("GET = %d %s", status, body)
	}
	list := mustDecode[keyservice.InstancesJSON](t, body)
	if list.Seq != 5 || len(list.Instances) != 2 || list.Instances[0].ID != "inst_behind" || !list.Instances[0].Live ||
		list.Instances[1].Hostname != "gw-1" || list.Instances[1].AppliedSeq != 5 {
		t.Errorf("instances = %+v", list)
	}
	for _, want := range []string{`"seen_at":`, `"started_at":`, `"cache_entries":0`, `"live":true`, `"version":"v1"`} {
		if !strings.Contains(body, want) {
			t.Errorf("instances %s lacks %s", body, want)
		}
	}
	if status, _ := adminCall(t, svc, http.MethodPost, "/apikeys/instances", `{}`, nil); status != http.StatusMethodNotAllowed {
		t.Errorf("POST /apikeys/instances = %d, want 405", status)
	}
	if status, body := adminCall(t, svc, http.MethodGet, "/apikeys/instances?x=1", ``, nil); status != http.StatusBadRequest {
		t.Errorf("GET /apikeys/instances?x=1 = %d %s, want 400", status, body)
	}
}
