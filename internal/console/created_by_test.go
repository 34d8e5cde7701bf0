package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/docana/keygate/internal/apikey"
)

// TestCreateRecordsTheConsoleUserAsCreator checks that a key made in the
// console says who made it, and that a user name breaking the actor rule
// (too long, control characters) is made to fit rather than refused.
func TestCreateRecordsTheConsoleUserAsCreator(t *testing.T) {
	for _, tc := range []struct{ user, want string }{
		{"alice", "alice"},
		{"bob\tsmith", "bob?smith"},
		{strings.Repeat("u", 200), strings.Repeat("u", apikey.MaxActorIDLength)},
	} {
		e := newEnv(t, envOptions{})
		e.user = tc.user
		resp, body := e.postJSON(url.Values{"op": {"create"}, "name": {"K"}, "scope": {"full"}, "expires_in": {"never"}})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("user %q: status %d, want 201: %v", tc.user, resp.StatusCode, body)
		}
		key, _ := body["api_key"].(map[string]any)
		id, _ := key["id"].(string)
		if got := e.key(id).CreatedBy; got != (apikey.Actor{Type: apikey.ActorConsole, ID: tc.want}) {
			t.Errorf("user %q: created_by %+v, want console %q", tc.user, got, tc.want)
		}
	}
}
