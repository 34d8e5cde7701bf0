package console

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

// withFleet makes e's service confirm over a registry of two instances,
// one of them behind: every change names it pending.
func withFleet(t *testing.T, e *env) {
	t.Helper()
	reg := keystore.NewMemoryRegistry(func(context.Context) (int64, error) { return 9, nil }, nil)
	for _, in := range []keystore.Instance{{ID: "inst_a", AppliedSeq: 9}, {ID: "inst_b", AppliedSeq: 3}} {
		if err := reg.Beat(t.Context(), in); err != nil {
			t.Fatal(err)
		}
	}
	e.svc.SetFleet(keyservice.Fleet{Registry: reg, Self: "inst_a", Timeout: 0, Live: time.Minute})
}

const pendingSentence = "on 1 of 2 instances; not confirmed yet by inst_b"

func TestConsoleSaysWhereAChangeIsInForce(t *testing.T) {
	e := newEnv(t, envOptions{})
	withFleet(t, e)
	_, k := e.create("Backend", "full", "1y")

	// The script's JSON answer carries the propagation and its words.
	resp, out := e.postJSON(url.Values{"op": {"update"}, "id": {k.ID}, "name": {"Backend 2"}, "metadata": {""}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("update: %d %v", resp.StatusCode, out)
	}
	if got, _ := out["propagation_text"].(string); !strings.HasPrefix(got, "Updated "+pendingSentence) {
		t.Errorf("update propagation_text = %q", got)
	}
	if p, _ := out["api_key"].(map[string]any)["propagation"].(map[string]any); p == nil {
		t.Errorf("update api_key has no propagation: %v", out["api_key"])
	}

	// A plain form post: the notice says it.
	resp, page := e.do(http.MethodPost, "/", url.Values{"op": {"revoke"}, "id": {k.ID}}, formHeader)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: status %d", resp.StatusCode)
	}
	if !strings.Contains(page, "Requests with it now fail. Revoked "+pendingSentence) {
		t.Errorf("revoke notice lacks %q", "Revoked "+pendingSentence)
	}

	resp, out = e.postJSON(url.Values{"op": {"create"}, "name": {"New"}, "scope": {"full"}, "expires_in": {"1y"}})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %v", resp.StatusCode, out)
	}
	if got, _ := out["propagation_text"].(string); !strings.HasPrefix(got, "Created "+pendingSentence) {
		t.Errorf("create propagation_text = %q", got)
	}
}
