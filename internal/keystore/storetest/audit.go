package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// events returns every audit event of s, newest first.
func events(t *testing.T, s keystore.Store, f keystore.AuditFilter) []keystore.Event {
	t.Helper()
	evs, err := s.Audit(t.Context(), f)
	if err != nil {
		t.Fatalf("Audit(%+v) = %v, want nil", f, err)
	}
	return evs
}

// eventSummary describes events as "action key_id" lines, oldest first.
func eventSummary(evs []keystore.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[len(evs)-1-i] = e.Action + " " + e.KeyID
	}
	return out
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %T: %v", v, err)
	}
	return string(b)
}

func checkEvents(t *testing.T, what string, got []keystore.Event, want ...string) {
	t.Helper()
	if g := eventSummary(got); strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: events (oldest first)\n%s\nwant\n%s", what, strings.Join(g, "\n"), strings.Join(want, "\n"))
	}
}

func testAuditLog(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("Create writes key.created with who, from where, and the key's settings, never its digest", func(t *testing.T) {
		s := open(t)
		k := fullKey(t, "audited", base)
		a := testAudit
		a.UserAgent = strings.Repeat("é", 200) // 400 bytes
		if err := s.Create(t.Context(), k, a); err != nil {
			t.Fatal(err)
		}
		evs := events(t, s, keystore.AuditFilter{})
		if len(evs) != 1 {
			t.Fatalf("Audit = %d events, want 1", len(evs))
		}
		e := evs[0]
		if e.ID <= 0 || e.Action != keystore.ActionCreated || e.KeyID != k.ID || e.Owner != k.Owner ||
			e.Actor != a.Actor || e.RemoteIP != a.RemoteIP || !e.At.Equal(k.CreatedAt) || e.At.Location() != time.UTC {
			t.Errorf("event = %+v, want key.created of %s by %+v at %v", e, k.ID, a, k.CreatedAt)
		}
		if want := strings.Repeat("é", 128); e.UserAgent != want {
			t.Errorf("user agent = %d bytes, want the first 256 bytes (%d)", len(e.UserAgent), len(want))
		}
		want := map[string][2]any{
			"name": {nil, k.Name}, "scope": {nil, "widget"}, "owner": {nil, k.Owner},
			"expires_at":      {nil, k.ExpiresAt.Format(time.RFC3339Nano)},
			"metadata":        {nil, k.Metadata},
			"allowed_origins": {nil, k.AllowedOrigins}, "allowed_ips": {nil, k.AllowedIPs},
			"rate_limits": {nil, k.RateLimits},
		}
		if g, w := jsonOf(t, e.Changes), jsonOf(t, want); g != w {
			t.Errorf("changes = %s, want %s", g, w)
		}
		all := jsonOf(t, evs)
		for _, secret := range []string{k.Digest.String(), fmt.Sprintf("%x", k.Digest[:])} {
			if strings.Contains(strings.ToLower(all), strings.ToLower(secret)) {
				t.Errorf("an event holds the key's digest: %s", all)
			}
		}
	})

	t.Run("the zero Audit is keygate itself", func(t *testing.T) {
		s := open(t)
		k := newKey(t, "system", apikey.ScopeFull, apikey.ExpiryNever, base)
		if err := s.Create(t.Context(), k, keystore.Audit{}); err != nil {
			t.Fatal(err)
		}
		e := events(t, s, keystore.AuditFilter{})[0]
		if e.Actor != (apikey.Actor{Type: apikey.ActorSystem}) || e.RemoteIP != "" || e.UserAgent != "" {
			t.Errorf("event = %+v, want actor system and no origin", e)
		}
	})

	t.Run("Update writes key.updated with the fields that changed as [old, new]; a failed update writes none", func(t *testing.T) {
		s := open(t)
		k := fullKey(t, "before", base)
		mustCreate(t, s, k)
		name, ips, limits := "after", []string{}, []string{"10/1m"}
		same := k.AllowedOrigins
		if _, err := s.Update(t.Context(), k.ID, keystore.Patch{Name: &name, AllowedIPs: &ips, AllowedOrigins: &same, RateLimits: &limits}, testAudit); err != nil {
			t.Fatal(err)
		}
		bad := " "
		if _, err := s.Update(t.Context(), k.ID, keystore.Patch{Name: &bad}, testAudit); !errors.Is(err, keystore.ErrInvalidKey) {
			t.Fatalf("Update(invalid name) = %v, want ErrInvalidKey", err)
		}
		if _, err := s.Update(t.Context(), "key_0000000000000000000000", keystore.Patch{Name: &name}, testAudit); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("Update(unknown) = %v, want ErrNotFound", err)
		}
		evs := events(t, s, keystore.AuditFilter{})
		checkEvents(t, "after updates", evs, "key.created "+k.ID, "key.updated "+k.ID)
		want := map[string][2]any{"name": {"before", "after"}, "allowed_ips": {k.AllowedIPs, []string{}}, "rate_limits": {k.RateLimits, limits}}
		if g, w := jsonOf(t, evs[0].Changes), jsonOf(t, want); g != w {
			t.Errorf("changes = %s, want %s (allowed_origins was set to the same value)", g, w)
		}
		if _, err := s.Revoke(t.Context(), k.ID, base.Add(time.Hour), testAudit); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(t.Context(), k.ID, keystore.Patch{Name: &name}, testAudit); !errors.Is(err, keystore.ErrRevoked) {
			t.Fatalf("Update(revoked) = %v, want ErrRevoked", err)
		}
		checkEvents(t, "after revoking", events(t, s, keystore.AuditFilter{}), "key.created "+k.ID, "key.updated "+k.ID, "key.revoked "+k.ID)
	})

	t.Run("Revoke writes key.revoked once", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "revoked", apikey.ExpiryNever, base)
		at := base.Add(time.Hour)
		for range 2 {
			if _, err := s.Revoke(t.Context(), k.ID, at, testAudit); err != nil {
				t.Fatal(err)
			}
		}
		evs := events(t, s, keystore.AuditFilter{})
		checkEvents(t, "", evs, "key.created "+k.ID, "key.revoked "+k.ID)
		if g, w := jsonOf(t, evs[0].Changes), jsonOf(t, map[string][2]any{"revoked_at": {nil, at.Format(time.RFC3339Nano)}}); g != w {
			t.Errorf("changes = %s, want %s", g, w)
		}
		if !evs[0].At.Equal(at) {
			t.Errorf("at = %v, want %v", evs[0].At, at)
		}
	})

	t.Run("Rotate writes key.created for the new key and key.rotated for the old; the losing rotation writes none", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "rotated", apikey.ExpiryNever, base)
		next := newKey(t, "rotated", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Hour))
		other := newKey(t, "rotated", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Hour))
		grace := base.Add(25 * time.Hour)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, n := range []apikey.Key{next, other} {
			wg.Go(func() { _, errs[i] = s.Rotate(t.Context(), k.ID, n, grace, testAudit) })
		}
		wg.Wait()
		winner := next
		switch {
		case errs[0] == nil && errors.Is(errs[1], keystore.ErrReplaced):
		case errs[1] == nil && errors.Is(errs[0], keystore.ErrReplaced):
			winner = other
		default:
			t.Fatalf("concurrent rotations = %v, %v; want one nil and one ErrReplaced", errs[0], errs[1])
		}
		evs := events(t, s, keystore.AuditFilter{})
		checkEvents(t, "", evs, "key.created "+k.ID, "key.created "+winner.ID, "key.rotated "+k.ID)
		if g, w := jsonOf(t, evs[0].Details), jsonOf(t, map[string]string{"new_key_id": winner.ID}); g != w {
			t.Errorf("key.rotated details = %s, want %s", g, w)
		}
		if g, w := jsonOf(t, evs[0].Changes), jsonOf(t, map[string][2]any{
			"replaced_by": {nil, winner.ID}, "expires_at": {nil, grace.Format(time.RFC3339Nano)},
		}); g != w {
			t.Errorf("key.rotated changes = %s, want %s", g, w)
		}
		if g, w := jsonOf(t, evs[1].Details), jsonOf(t, map[string]string{"rotated_from": k.ID}); g != w {
			t.Errorf("key.created details = %s, want %s", g, w)
		}
	})

	t.Run("a change whose context is cancelled fails and leaves no event", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "kept", apikey.ExpiryNever, base)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		name := "renamed"
		fresh := newKey(t, "fresh", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Second))
		next := newKey(t, "kept", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Minute))
		for range 5 {
			_ = s.Create(ctx, fresh, testAudit)
			_, _ = s.Update(ctx, k.ID, keystore.Patch{Name: &name}, testAudit)
			_, _ = s.Revoke(ctx, k.ID, base.Add(time.Hour), testAudit)
			_, _ = s.Rotate(ctx, k.ID, next, base.Add(time.Hour), testAudit)
			_, _, _ = s.ReportLeak(ctx, k.Digest, keystore.LeakReport{Revoke: true}, base.Add(time.Hour))
		}
		checkEvents(t, "", events(t, s, keystore.AuditFilter{}), "key.created "+k.ID)
		checkKey(t, "the key", mustGet(t, s, k.ID), k)
	})

	t.Run("every change of many writers has exactly one event", func(t *testing.T) {
		s := open(t)
		const n = 8
		keys := make([]apikey.Key, n)
		var wg sync.WaitGroup
		for i := range keys {
			keys[i] = newKey(t, fmt.Sprint("k", i), apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Duration(i)*time.Second))
			wg.Go(func() {
				if err := s.Create(t.Context(), keys[i], testAudit); err != nil {
					t.Error(err)
					return
				}
				if _, err := s.Revoke(t.Context(), keys[i].ID, base.Add(time.Hour), testAudit); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		evs := events(t, s, keystore.AuditFilter{})
		count := map[string]int{}
		for i, e := range evs {
			count[e.Action+" "+e.KeyID]++
			if i > 0 && e.ID >= evs[i-1].ID {
				t.Errorf("event IDs %d then %d, want decreasing", evs[i-1].ID, e.ID)
			}
		}
		for _, k := range keys {
			for _, a := range []string{keystore.ActionCreated, keystore.ActionRevoked} {
				if count[a+" "+k.ID] != 1 {
					t.Errorf("%s %s: %d events, want 1", a, k.Name, count[a+" "+k.ID])
				}
			}
		}
	})

	t.Run("Audit filters by owner, key, action and time, newest first, in pages", func(t *testing.T) {
		s := open(t)
		a := fullKey(t, "a", base)
		b := newKey(t, "b", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Hour))
		b.Owner = "org_B"
		mustCreate(t, s, a)
		mustCreate(t, s, b)
		if _, err := s.Revoke(t.Context(), a.ID, base.Add(2*time.Hour), testAudit); err != nil {
			t.Fatal(err)
		}
		checkEvents(t, "owner", events(t, s, keystore.AuditFilter{Owner: a.Owner}), "key.created "+a.ID, "key.revoked "+a.ID)
		checkEvents(t, "key", events(t, s, keystore.AuditFilter{KeyID: b.ID}), "key.created "+b.ID)
		checkEvents(t, "action", events(t, s, keystore.AuditFilter{Action: keystore.ActionCreated}), "key.created "+a.ID, "key.created "+b.ID)
		checkEvents(t, "since", events(t, s, keystore.AuditFilter{Since: base.Add(time.Hour)}), "key.created "+b.ID, "key.revoked "+a.ID)
		checkEvents(t, "unknown owner", events(t, s, keystore.AuditFilter{Owner: "nobody"}))
		page := events(t, s, keystore.AuditFilter{Limit: 2})
		checkEvents(t, "first page", page, "key.created "+b.ID, "key.revoked "+a.ID)
		checkEvents(t, "second page", events(t, s, keystore.AuditFilter{Limit: 2, Before: page[1].ID}), "key.created "+a.ID)
	})

	t.Run("the event listener hears of committed events only, with their IDs", func(t *testing.T) {
		s := open(t)
		l, ok := s.(keystore.EventListener)
		if !ok {
			t.Skip("the store has no event listener")
		}
		var (
			mu    sync.Mutex
			heard []keystore.Event
		)
		l.OnEvents(func(evs []keystore.Event) {
			mu.Lock()
			heard = append(heard, evs...)
			mu.Unlock()
		})
		k := create(t, s, "heard", apikey.ExpiryNever, base)
		name := " "
		_, _ = s.Update(t.Context(), k.ID, keystore.Patch{Name: &name}, testAudit)
		if _, err := s.Revoke(t.Context(), k.ID, base.Add(time.Hour), testAudit); err != nil {
			t.Fatal(err)
		}
		stored := events(t, s, keystore.AuditFilter{})
		mu.Lock()
		defer mu.Unlock()
		if len(heard) != 2 || heard[0].ID != stored[1].ID || heard[1].ID != stored[0].ID || heard[1].Action != keystore.ActionRevoked {
			t.Errorf("heard %+v, want the two stored events %+v oldest first", heard, stored)
		}
	})
}

func testReportLeak(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	now := base.Add(time.Hour)
	report := keystore.LeakReport{URL: "https://github.com/o/r/blob/x", Source: "github", Revoke: true}
	for _, c := range []struct {
		name    string
		key     func(t *testing.T, s keystore.Store) apikey.Key
		report  bool // action report instead of revoke
		taken   string
		revoked bool // revoked by the report
	}{
		{"an active key is revoked", func(t *testing.T, s keystore.Store) apikey.Key {
			return create(t, s, "leaked", apikey.ExpiryNever, base)
		}, false, keystore.LeakRevoked, true},
		{"action report changes nothing", func(t *testing.T, s keystore.Store) apikey.Key {
			return create(t, s, "leaked", apikey.ExpiryNever, base)
		}, true, keystore.LeakNone, false},
		{"a revoked key is already inactive", func(t *testing.T, s keystore.Store) apikey.Key {
			k := create(t, s, "leaked", apikey.ExpiryNever, base)
			k, err := s.Revoke(t.Context(), k.ID, base.Add(time.Minute), testAudit)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}, false, keystore.LeakAlreadyInactive, false},
		{"an expired key is already inactive", func(t *testing.T, s keystore.Store) apikey.Key {
			return create(t, s, "leaked", apikey.ExpiryHour, base.Add(-2*time.Hour))
		}, false, keystore.LeakAlreadyInactive, false},
		{"a widget key with allowed origins is kept", func(t *testing.T, s keystore.Store) apikey.Key {
			k := newKey(t, "widget", apikey.ScopeWidget, apikey.ExpiryNever, base)
			k.AllowedOrigins = []string{"https://app.example.com"}
			mustCreate(t, s, k)
			return k
		}, false, keystore.LeakKeptPublicWidget, false},
		{"a widget key without allowed origins is revoked", func(t *testing.T, s keystore.Store) apikey.Key {
			return mustCreateKey(t, s, newKey(t, "widget", apikey.ScopeWidget, apikey.ExpiryNever, base))
		}, false, keystore.LeakRevoked, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := open(t)
			k := c.key(t, s)
			before := seq(t, s)
			r := report
			r.Revoke = !c.report
			got, taken, err := s.ReportLeak(t.Context(), k.Digest, r, now)
			if err != nil {
				t.Fatalf("ReportLeak = %v, want nil", err)
			}
			if taken != c.taken {
				t.Errorf("action taken = %q, want %q", taken, c.taken)
			}
			want := k
			if c.revoked {
				want.RevokedAt = now
			}
			checkKey(t, "returned key", got, want)
			checkKey(t, "stored key", mustGet(t, s, k.ID), want)
			evs := events(t, s, keystore.AuditFilter{KeyID: k.ID, Since: now})
			wantEvents := []string{"key.leak_reported " + k.ID}
			if c.revoked {
				wantEvents = append(wantEvents, "key.revoked "+k.ID)
			}
			checkEvents(t, "", evs, wantEvents...)
			leak := evs[len(evs)-1]
			if leak.Actor != keystore.LeakActor {
				t.Errorf("actor = %+v, want %+v", leak.Actor, keystore.LeakActor)
			}
			if g, w := jsonOf(t, leak.Details), jsonOf(t, map[string]string{"url": r.URL, "source": r.Source, "action_taken": c.taken}); g != w {
				t.Errorf("details = %s, want %s", g, w)
			}
			chs, _ := changesSince(t, s, before)
			if wantN := map[bool]int{true: 1, false: 0}[c.revoked]; len(chs) != wantN {
				t.Errorf("changes = %d, want %d", len(chs), wantN)
			}
		})
	}
	t.Run("an unknown digest is ErrNotFound and writes nothing", func(t *testing.T) {
		s := open(t)
		k := newKey(t, "never stored", apikey.ScopeFull, apikey.ExpiryNever, base)
		if _, _, err := s.ReportLeak(t.Context(), k.Digest, report, now); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("ReportLeak = %v, want ErrNotFound", err)
		}
		checkEvents(t, "", events(t, s, keystore.AuditFilter{}))
	})
}

func mustCreateKey(t *testing.T, s keystore.Store, k apikey.Key) apikey.Key {
	t.Helper()
	mustCreate(t, s, k)
	return k
}
