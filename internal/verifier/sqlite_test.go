package verifier

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/metrics"
)

// clock is a settable clock for Config.Now.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }

func TestVerifyAgainstSQLite(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC()
	store := openSQLite(t)
	full, fullKey := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	widget, widgetKey := newKey(t, apikey.ScopeWidget, apikey.ExpiryHour, now)
	revoked, revokedKey := newKey(t, apikey.ScopeRoutine, apikey.ExpiryYear, now)
	unknown, _ := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	for _, k := range []apikey.Key{fullKey, widgetKey, revokedKey} {
		if err := store.Create(ctx, k, keystore.Audit{}); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	if _, err := store.Revoke(ctx, revokedKey.ID, now, keystore.Audit{}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	v, m := newVerifier(t, store, Config{})

	tests := []struct {
		name, header string
		at           time.Time
		wantCode     apikey.Code
		wantID       string
	}{
		{"full key", "ApiKey " + full, now, "ok", fullKey.ID},
		{"scheme in lower case, several spaces", "apikey   " + full, now, "ok", fullKey.ID},
		{"widget key before its expiry", "ApiKey " + widget, now.Add(59 * time.Minute), "ok", widgetKey.ID},
		{"widget key at its expiry instant", "ApiKey " + widget, widgetKey.ExpiresAt, apikey.CodeExpired, widgetKey.ID},
		{"widget key after its expiry", "ApiKey " + widget, now.Add(2 * time.Hour), apikey.CodeExpired, widgetKey.ID},
		{"revoked key", "ApiKey " + revoked, now, apikey.CodeRevoked, revokedKey.ID},
		{"revoked key after its expiry stays revoked", "ApiKey " + revoked, now.AddDate(2, 0, 0), apikey.CodeRevoked, revokedKey.ID},
		{"unknown key", "ApiKey " + unknown, now, apikey.CodeInvalid, ""},
		{"unknown key again", "ApiKey " + unknown, now, apikey.CodeInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := v.Verify(ctx, tt.header, tt.at)
			gotID := ""
			if k != nil {
				gotID = k.ID
			}
			if code(err) != tt.wantCode || gotID != tt.wantID {
				t.Errorf("got (%s, %q), want (%s, %q)", gotID, code(err), tt.wantID, tt.wantCode)
			}
		})
	}
	// Three keys and one unknown key were looked up in the store; every
	// other lookup was answered from the caches.
	for _, c := range []struct {
		result string
		want   int
	}{{metrics.LookupMiss, 4}, {metrics.LookupHit, 4}, {metrics.LookupNegativeHit, 1}} {
		if got := lookups(m, c.result); got != c.want {
			t.Errorf("cache lookups %s: got %d, want %d", c.result, got, c.want)
		}
	}
}

func TestACacheHitAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	store := openSQLite(t)
	secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, time.Now())
	if err := store.Create(ctx, k, keystore.Audit{}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	v, _ := newVerifier(t, store, Config{})
	header := "ApiKey " + secret
	now := time.Now()
	if _, err := v.Verify(ctx, header, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	tests := []struct{ name, header string }{
		{"hit", header},
		{"malformed", "ApiKey " + secret[:10]},
		{"wrong scheme", "Bearer " + secret},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(1000, func() { v.Verify(ctx, tt.header, now) }); n != 0 {
			t.Errorf("%s: got %v allocs per Verify, want 0", tt.name, n)
		}
	}
}

func TestLocalSyncMakesARevocationImmediate(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	store := openSQLite(t)
	secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	if err := store.Create(ctx, k, keystore.Audit{}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	v, m := newVerifier(t, store, Config{SyncInterval: time.Hour, CacheTTL: time.Hour})
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := store.Revoke(ctx, k.ID, now, keystore.Audit{}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := v.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); code(err) != apikey.CodeRevoked {
		t.Errorf("after Sync: got %q, want %q", code(err), apikey.CodeRevoked)
	}
	if got := invalidations(m, metrics.SourceLocal); got != 1 {
		t.Errorf("local invalidations: got %d, want 1", got)
	}
}

// A key verified and remembered as unknown is found once it is created:
// the creation's change drops the negative entry.
func TestACreatedKeyIsNoLongerRememberedAsUnknown(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	store := openSQLite(t)
	secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	v, _ := newVerifier(t, store, Config{SyncInterval: time.Hour, NegativeTTL: time.Hour})
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); code(err) != apikey.CodeInvalid {
		t.Fatalf("before Create: got %q, want %q", code(err), apikey.CodeInvalid)
	}
	if err := store.Create(ctx, k, keystore.Audit{}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if err := v.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
		t.Errorf("after Create and Sync: got %q, want ok", code(err))
	}
}

func TestNegativeEntriesExpireAfterNegativeTTL(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	clk := newClock(now)
	store := openSQLite(t)
	secret, _ := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	v, m := newVerifier(t, store, Config{NegativeTTL: 10 * time.Second, Now: clk.Now})
	steps := []struct {
		advance time.Duration
		want    string
	}{
		{0, metrics.LookupMiss},
		{9 * time.Second, metrics.LookupNegativeHit},
		{time.Second, metrics.LookupMiss}, // 10s after the first query
		{time.Second, metrics.LookupNegativeHit},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		before := lookups(m, s.want)
		if _, err := v.Verify(ctx, "ApiKey "+secret, now); code(err) != apikey.CodeInvalid {
			t.Fatalf("step %d: got %q, want %q", i, code(err), apikey.CodeInvalid)
		}
		if got := lookups(m, s.want); got != before+1 {
			t.Errorf("step %d: the lookup was not a %s", i, s.want)
		}
	}
}

// Without reading the change log, a cached key is trusted for CacheTTL;
// then the log is read first: a revocation the verifier was not told of
// takes effect then. With the store down, a key verified within CacheTTL keeps working
// and any other gets key_store_unavailable.
func TestCacheTTLBoundsTrustWithoutNewsAndDuringOutages(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	clk := newClock(now)
	store := openSQLite(t)
	revokedLater, k1 := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	survivor, k2 := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	uncached, k3 := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	for _, k := range []apikey.Key{k1, k2, k3} {
		if err := store.Create(ctx, k, keystore.Audit{}); err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	v, _ := newVerifier(t, store, Config{CacheTTL: time.Minute, SyncInterval: time.Hour, Now: clk.Now})
	verify := func(secret string) apikey.Code {
		_, err := v.Verify(ctx, "ApiKey "+secret, now)
		return code(err)
	}
	for _, s := range []string{revokedLater, survivor} {
		if got := verify(s); got != "ok" {
			t.Fatalf("first Verify: got %q", got)
		}
	}
	if _, err := store.Revoke(ctx, k1.ID, now, keystore.Audit{}); err != nil { // no Sync: unheard of
		t.Fatalf("Revoke: %v", err)
	}
	clk.Advance(time.Minute - time.Nanosecond)
	if got := verify(revokedLater); got != "ok" {
		t.Errorf("within cache_ttl of an unheard revocation: got %q, want ok (trusted)", got)
	}
	clk.Advance(time.Nanosecond)
	if got := verify(revokedLater); got != apikey.CodeRevoked {
		t.Errorf("cache_ttl after: got %q, want %q", got, apikey.CodeRevoked)
	}

	// survivor was fetched at the start; refresh it, then take the store
	// away.
	clk.set(now.Add(2 * time.Minute))
	if got := verify(survivor); got != "ok" {
		t.Fatalf("refetch: got %q", got)
	}
	if err := store.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	clk.Advance(59 * time.Second)
	if got := verify(survivor); got != "ok" {
		t.Errorf("store down, key verified 59s ago: got %q, want ok", got)
	}
	if got := verify(uncached); got != apikey.CodeUnavailable {
		t.Errorf("store down, key never verified: got %q, want %q", got, apikey.CodeUnavailable)
	}
	clk.Advance(time.Second)
	if got := verify(survivor); got != apikey.CodeUnavailable {
		t.Errorf("store down, key verified cache_ttl ago: got %q, want %q", got, apikey.CodeUnavailable)
	}
}

func TestEvictionKeepsTheCacheWithinCacheSize(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	store := openSQLite(t)
	const size, keys = 64, 200
	v, m := newVerifier(t, store, Config{CacheSize: size})
	headers := make([]string, keys)
	for i := range headers {
		secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		if err := store.Create(ctx, k, keystore.Audit{}); err != nil {
			t.Fatalf("Create: %v", err)
		}
		headers[i] = "ApiKey " + secret
		if _, err := v.Verify(ctx, headers[i], now); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	if got := v.cached(); got != size {
		t.Errorf("cached entries: got %d, want %d", got, size)
	}
	// The most recent keys are the ones kept.
	before := lookups(m, metrics.LookupHit)
	for _, h := range headers[keys-size:] {
		if _, err := v.Verify(ctx, h, now); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	if got := lookups(m, metrics.LookupHit) - before; got != size {
		t.Errorf("hits on the %d most recent keys: got %d, want %d", size, got, size)
	}
}

// Another instance's change (here: a write to the store the verifier is
// not told of) is applied by the periodic poll.
func TestThePollAppliesChangesMadeElsewhere(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	store := openSQLite(t)
	secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	if err := store.Create(ctx, k, keystore.Audit{}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	v, m := newVerifier(t, store, Config{SyncInterval: 10 * time.Millisecond, CacheTTL: time.Hour})
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := store.Revoke(ctx, k.ID, now, keystore.Audit{}); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	// Wait for the poll (not a timing assertion: only the outcome counts).
	deadline := time.Now().Add(30 * time.Second)
	for invalidations(m, metrics.SourcePoll) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no poll applied the revocation within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); code(err) != apikey.CodeRevoked {
		t.Errorf("after the poll: got %q, want %q", code(err), apikey.CodeRevoked)
	}
}

func TestConcurrentVerifiesAndChanges(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	store := openSQLite(t)
	const keys = 50
	headers := make([]string, keys)
	records := make([]apikey.Key, keys)
	for i := range headers {
		secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		if err := store.Create(ctx, k, keystore.Audit{}); err != nil {
			t.Fatalf("Create: %v", err)
		}
		headers[i], records[i] = "ApiKey "+secret, k
	}
	v, _ := newVerifier(t, store, Config{CacheSize: 16, SyncInterval: time.Millisecond})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				h := headers[(i*7+w)%keys]
				if _, err := v.Verify(ctx, h, now); err != nil && code(err) != apikey.CodeRevoked {
					t.Errorf("Verify: %v", err)
					return
				}
			}
		})
	}
	for i := 0; i < keys; i += 2 {
		if _, err := store.Revoke(ctx, records[i].ID, now, keystore.Audit{}); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if err := v.Sync(ctx); err != nil {
			t.Fatalf("Sync: %v", err)
		}
	}
	wg.Wait()
	// Once synced, every revoked key is refused and every other accepted.
	for i, h := range headers {
		want := apikey.Code("ok")
		if i%2 == 0 {
			want = apikey.CodeRevoked
		}
		if _, err := v.Verify(ctx, h, now); code(err) != want {
			t.Errorf("key %d: got %q, want %q", i, code(err), want)
		}
	}
}

func TestCloseLeavesNoGoroutine(t *testing.T) {
	store := openSQLite(t)
	before := runtime.NumGoroutine()
	v, err := New(store, Config{Format: testFormat, SyncInterval: time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	time.Sleep(5 * time.Millisecond) // let a few polls run
	if err := v.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Goroutines of the store's pool may wind down a moment later; the
	// verifier's own is gone once Close returns.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before New, %d after Close", before, runtime.NumGoroutine())
		}
		time.Sleep(time.Millisecond)
	}
}
