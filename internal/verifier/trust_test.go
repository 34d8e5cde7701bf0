package verifier

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docana/keygate/internal/apikey"
)

// While the change log is read, a cached key is never refetched, however
// long ago it was fetched: no request waits for the store.
func TestACachedKeyIsNotRefetchedWhileTheLogIsFollowed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		store := newFakeStore()
		store.put(k)
		v, _ := newVerifier(t, store, Config{SyncInterval: 5 * time.Second, CacheTTL: time.Minute})
		ctx := context.Background()
		if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		for range 20 { // 20 minutes: 20 times cache_ttl
			time.Sleep(time.Minute)
			synctest.Wait()
			if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
				t.Fatalf("Verify after %v: %v", time.Since(now), err)
			}
		}
		store.mu.Lock()
		gets, changes := store.gets, store.changes
		store.mu.Unlock()
		if gets != 1 {
			t.Errorf("store lookups over 20 minutes: %d, want 1 (the first miss)", gets)
		}
		// The poll runs every sync_interval: 12 a minute.
		if changes < 20*12 {
			t.Errorf("change log reads over 20 minutes: %d, want at least %d", changes, 20*12)
		}
	})
}

// The poll runs at least every CacheTTL/2, so that a cache_ttl shorter
// than sync_interval does not make requests wait for the log.
func TestThePollKeepsTheCacheTrustedWhenCacheTTLIsShort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		store := newFakeStore()
		store.put(k)
		v, _ := newVerifier(t, store, Config{SyncInterval: time.Hour, CacheTTL: 10 * time.Second})
		ctx := context.Background()
		if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		store.mu.Lock()
		before := store.changes
		store.mu.Unlock()
		if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		store.mu.Lock()
		after := store.changes
		store.mu.Unlock()
		if after != before {
			t.Errorf("a cached hit read the change log (%d reads before, %d after): the poll did not keep it trusted", before, after)
		}
	})
}

// When the change log cannot be read for CacheTTL, a cached key is no
// longer trusted: key_store_unavailable, even for a key the instance
// holds; once the log reads again, it answers from the cache again.
func TestACacheNotSyncedForCacheTTLIsNotTrusted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		store := newFakeStore()
		store.put(k)
		v, _ := newVerifier(t, store, Config{SyncInterval: 5 * time.Second, CacheTTL: time.Minute})
		ctx := context.Background()
		verify := func() apikey.Code {
			_, err := v.Verify(ctx, "ApiKey "+secret, now)
			return code(err)
		}
		if got := verify(); got != "ok" {
			t.Fatalf("Verify: %q", got)
		}
		store.mu.Lock()
		store.changesErr = errors.New("cut off")
		store.mu.Unlock()
		// The last successful read was at most 5s ago.
		time.Sleep(50 * time.Second)
		synctest.Wait()
		if got := verify(); got != "ok" {
			t.Errorf("log unreadable for 50s of a 1m cache_ttl: %q, want ok", got)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := verify(); got != apikey.CodeUnavailable {
			t.Errorf("log unreadable for cache_ttl: %q, want %q", got, apikey.CodeUnavailable)
		}
		store.mu.Lock()
		gets := store.gets
		store.changesErr = nil
		store.mu.Unlock()
		if got := verify(); got != "ok" {
			t.Errorf("log readable again: %q, want ok", got)
		}
		store.mu.Lock()
		defer store.mu.Unlock()
		if store.gets != gets {
			t.Errorf("the key was refetched once the log read again (%d lookups, %d before): the cache should be trusted again", store.gets, gets)
		}
	})
}

// A process paused for longer than CacheTTL (SIGSTOP) reads the log
// before it answers from its cache again, so that a revocation made
// meanwhile is in force for the first request after it resumes.
func TestARequestAfterAPauseReadsTheLogFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		store := newFakeStore()
		store.put(k)
		clk := newClock(now)
		// The real poll never runs in this test's time: the fake clock
		// stands for a paused process whose goroutines did not run.
		v, _ := newVerifier(t, store, Config{SyncInterval: time.Hour, CacheTTL: 2 * time.Hour, Now: clk.Now})
		ctx := context.Background()
		if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		revoked := k
		revoked.RevokedAt = now
		store.put(revoked)
		clk.Advance(2 * time.Hour)
		if _, err := v.Verify(ctx, "ApiKey "+secret, now); code(err) != apikey.CodeRevoked {
			t.Errorf("first request after the pause: %q, want %q", code(err), apikey.CodeRevoked)
		}
	})
}

// OnApplied hears the sequence of every successful read of the log, and
// Applied and Len report the cache's state.
func TestOnAppliedReportsTheAppliedSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		store := newFakeStore()
		store.put(k)
		var (
			mu   sync.Mutex
			seen []int64
		)
		v, _ := newVerifier(t, store, Config{SyncInterval: time.Hour, OnApplied: func(seq int64) {
			mu.Lock()
			seen = append(seen, seq)
			mu.Unlock()
		}})
		if v.Applied() != 1 || v.Len() != 0 {
			t.Errorf("at start: Applied %d, Len %d; want 1, 0", v.Applied(), v.Len())
		}
		if _, err := v.Verify(context.Background(), "ApiKey "+secret, now); err != nil {
			t.Fatal(err)
		}
		_, k2 := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		store.put(k2)
		if err := v.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if v.Applied() != 2 || v.Len() != 1 {
			t.Errorf("after a change: Applied %d, Len %d; want 2, 1", v.Applied(), v.Len())
		}
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != 2 || seen[0] != 1 || seen[1] != 2 {
			t.Errorf("OnApplied heard %v, want [1 2]", seen)
		}
	})
}
