package caddymodule

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

func TestHandlerCountsUsageOfFoundKeysByResult(t *testing.T) {
	f := newGatewayFixture(t)
	now := time.Now()
	widget, wk := f.addKey(t, "widget", apikey.ScopeWidget, now, apikey.ExpiryNever)
	full, fk := f.addKey(t, "full", apikey.ScopeFull, now, apikey.ExpiryNever)
	revoked, rk := f.addKey(t, "revoked", apikey.ScopeFull, now, apikey.ExpiryNever)
	if _, err := f.res.store.Revoke(context.Background(), rk.ID, now, keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	expired, ek := f.addKey(t, "expired", apikey.ScopeFull, now.Add(-2*time.Hour), apikey.ExpiryHour)
	owned, ok := f.addKey(t, "owned", apikey.ScopeFull, now, apikey.ExpiryNever)
	h, _ := f.handler(t, &Handler{})
	hOwner, _ := f.handler(t, &Handler{Owner: "acme"})
	for _, req := range []struct {
		h      *Handler
		secret string
	}{
		{h, full}, {h, full}, {h, widget}, {h, revoked}, {h, expired}, {hOwner, owned},
		{h, "dk_notakey"}, {h, ""},
	} {
		serve(t, req.h, newRequest("GET", "/api/x", apiKeyHeader(req.secret)))
	}
	// Summed over minutes: the requests may straddle one.
	sums := map[string]int64{}
	for _, c := range f.res.recorder.PendingCounts("") {
		sums[c.KeyID+" "+c.Result] += c.N
	}
	var got []string
	for k, n := range sums {
		got = append(got, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(got)
	want := []string{
		fk.ID + " ok 2", wk.ID + " insufficient_scope 1", rk.ID + " api_key_revoked 1",
		ek.ID + " api_key_expired 1", ok.ID + " owner_mismatch 1",
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("counts =\n%q\nwant\n%q (malformed and missing keys are no key's)", got, want)
	}
	if _, noted := f.res.recorder.Pending(wk.ID); noted {
		t.Error("a refused request noted a last use")
	}
}
