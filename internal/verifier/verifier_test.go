package verifier

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/metrics"
)

var testFormat = func() *apikey.Format {
	f, err := apikey.NewFormat("dk")
	if err != nil {
		panic(err)
	}
	return f
}()

// newKey makes a key of testFormat created at now.
func newKey(t testing.TB, scope apikey.Scope, expiry apikey.Expiry, now time.Time) (string, apikey.Key) {
	t.Helper()
	secret, k, err := testFormat.New("test key", scope, expiry, now)
	if err != nil {
		t.Fatalf("making a key: %v", err)
	}
	return secret, k
}

// newVerifier returns a verifier over store with cfg, closed when the test
// ends, and the metrics it counts on.
func newVerifier(t testing.TB, store Store, cfg Config) (*Verifier, *metrics.Metrics) {
	t.Helper()
	if cfg.Format == nil {
		cfg.Format = testFormat
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	v, err := New(store, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v, cfg.Metrics
}

// code returns the failure code of err, or "ok" for nil.
func code(err error) apikey.Code {
	if err == nil {
		return "ok"
	}
	var e *apikey.Error
	if !errors.As(err, &e) {
		return apikey.Code("not an *apikey.Error: " + err.Error())
	}
	return e.Code()
}

func lookups(m *metrics.Metrics, result string) int {
	return int(testutil.ToFloat64(m.CacheLookups.WithLabelValues(result)))
}

func invalidations(m *metrics.Metrics, source string) int {
	return int(testutil.ToFloat64(m.Invalidations.WithLabelValues(source)))
}

func TestNewRejectsAMissingFormatOrStore(t *testing.T) {
	if _, err := New(newFakeStore(), Config{}); err == nil {
		t.Error("New without a format: got nil error")
	}
	if _, err := New(nil, Config{Format: testFormat}); err == nil {
		t.Error("New without a store: got nil error")
	}
	if _, err := New(newFakeStore(), Config{Format: testFormat, CacheTTL: -time.Second}); err == nil {
		t.Error("New with a negative cache_ttl: got nil error")
	}
}

func TestShardCountKeepsSmallCachesExact(t *testing.T) {
	tests := []struct{ size, want int }{
		{1, 1}, {100, 1}, {128, 2}, {1000, 8}, {1024, 16}, {100_000, 16},
	}
	for _, tt := range tests {
		if got := shardCount(tt.size); got != tt.want {
			t.Errorf("shardCount(%d): got %d, want %d", tt.size, got, tt.want)
		}
	}
}

// Malformed keys are refused before any lookup; the fake store counts
// the queries that would prove otherwise.
func TestMalformedCredentialsNeverReachTheCacheOrTheStore(t *testing.T) {
	now := time.Now()
	secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	store := newFakeStore()
	store.put(k)
	v, m := newVerifier(t, store, Config{})
	otherPrefix := "xy" + secret[2:]
	badChecksum := secret[:len(secret)-1] + string(rune('0'+(secret[len(secret)-1]-'0'+1)%10))
	if badChecksum == secret {
		t.Fatal("test bug: checksum unchanged")
	}
	tests := []struct {
		name, header string
		want         apikey.Code
	}{
		{"empty header", "", apikey.CodeMissing},
		{"scheme only", "ApiKey", apikey.CodeMissing},
		{"bearer", "Bearer " + secret, apikey.CodeScheme},
		{"two tokens", "ApiKey " + secret + " " + secret, apikey.CodeMalformed},
		{"other prefix", "ApiKey " + otherPrefix, apikey.CodeMalformed},
		{"cut short", "ApiKey " + secret[:len(secret)-1], apikey.CodeMalformed},
		{"bad checksum", "ApiKey " + badChecksum, apikey.CodeMalformed},
		{"bad alphabet", "ApiKey " + strings.Replace(secret, secret[5:6], "-", 1), apikey.CodeMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(context.Background(), tt.header, now)
			if code(err) != tt.want || got != nil {
				t.Errorf("got (%v, %q), want (nil, %q)", got, code(err), tt.want)
			}
		})
	}
	gets, _ := store.counts()
	if gets != 0 {
		t.Errorf("store queries: got %d, want 0", gets)
	}
	for _, r := range []string{metrics.LookupHit, metrics.LookupMiss, metrics.LookupNegativeHit} {
		if n := lookups(m, r); n != 0 {
			t.Errorf("cache lookups %s: got %d, want 0", r, n)
		}
	}
}

// The fake store counts queries and holds the first one open until every
// request is waiting (synctest.Wait), which proves they share it.
func TestConcurrentMissesForOneKeyShareOneStoreQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		secret, k := newKey(t, apikey.ScopeWidget, apikey.ExpiryDay, now)
		store := newFakeStore()
		store.put(k)
		block := make(chan struct{})
		store.block = block
		v, m := newVerifier(t, store, Config{})

		const n = 20
		var wg sync.WaitGroup
		got := make([]*apikey.Key, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { got[i], errs[i] = v.Verify(context.Background(), "ApiKey "+secret, now) })
		}
		synctest.Wait() // one request in the store, the others waiting for it
		close(block)
		wg.Wait()

		for i := range n {
			if errs[i] != nil || got[i] == nil || got[i].ID != k.ID {
				t.Errorf("request %d: got (%v, %v), want key %s", i, got[i], errs[i], k.ID)
			}
		}
		if gets, _ := store.counts(); gets != 1 {
			t.Errorf("store queries: got %d, want 1", gets)
		}
		if got := lookups(m, metrics.LookupMiss); got != n {
			t.Errorf("misses: got %d, want %d", got, n)
		}
		if _, err := v.Verify(context.Background(), "ApiKey "+secret, now); err != nil {
			t.Errorf("Verify after the shared query: %v", err)
		}
		if gets, _ := store.counts(); gets != 1 {
			t.Errorf("store queries after a cache hit: got %d, want 1", gets)
		}
	})
}

// A query that read a key before it was revoked must neither be joined by
// requests arriving after the revocation is synced, nor leave its record in
// the cache. The fake store reads the record when called and holds the
// first query open, like a slow network.
func TestAQueryOlderThanAnInvalidationIsNeitherSharedNorCached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		store := newSnapshotStore()
		store.put(k)
		v, _ := newVerifier(t, store, Config{})
		ctx := context.Background()

		var before error
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, before = v.Verify(ctx, "ApiKey "+secret, now)
		}()
		synctest.Wait() // that request has read the active record

		revoked := k
		revoked.RevokedAt = now
		store.put(revoked)
		if err := v.Sync(ctx); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if _, err := v.Verify(ctx, "ApiKey "+secret, now); code(err) != apikey.CodeRevoked {
			t.Errorf("request after the revocation: got %q, want %q", code(err), apikey.CodeRevoked)
		}
		if gets, _ := store.counts(); gets != 2 {
			t.Errorf("store queries: got %d, want 2 (the later request must not join the earlier query)", gets)
		}
		close(store.first)
		<-done
		if code(before) != "ok" {
			t.Errorf("request concurrent with the revocation: got %q, want ok (it read the key before)", code(before))
		}
		// The early query ended last: its record must not have replaced
		// the revoked one.
		if _, err := v.Verify(ctx, "ApiKey "+secret, now); code(err) != apikey.CodeRevoked {
			t.Errorf("next request: got %q, want %q", code(err), apikey.CodeRevoked)
		}
		if gets, _ := store.counts(); gets != 2 {
			t.Errorf("store queries: got %d, want 2 (the revoked record is cached)", gets)
		}
	})
}

// The fake store injects a failure, then recovers.
func TestStoreFailuresAnswerUnavailableAndAreNotCached(t *testing.T) {
	now := time.Now()
	secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	store := newFakeStore()
	store.put(k)
	store.getErr = errors.New("connection refused")
	v, m := newVerifier(t, store, Config{})
	ctx := context.Background()
	for i := range 2 {
		if got, err := v.Verify(ctx, "ApiKey "+secret, now); code(err) != apikey.CodeUnavailable || got != nil {
			t.Errorf("attempt %d: got (%v, %q), want (nil, %q)", i, got, code(err), apikey.CodeUnavailable)
		}
	}
	store.set(func(s *fakeStore) { s.getErr = nil })
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
		t.Errorf("after recovery: got %v, want nil", err)
	}
	if gets, _ := store.counts(); gets != 3 {
		t.Errorf("store queries: got %d, want 3", gets)
	}
	if got := testutil.ToFloat64(m.StoreErrors.WithLabelValues(metrics.OpGet)); got != 2 {
		t.Errorf("store errors: got %v, want 2", got)
	}
}

// The fake store answers ErrTooOld, which the real stores only do after an
// hour of changes.
func TestChangesTooOldEmptiesTheCache(t *testing.T) {
	now := time.Now()
	secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	store := newFakeStore()
	store.put(k)
	v, m := newVerifier(t, store, Config{})
	ctx := context.Background()
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	store.set(func(s *fakeStore) { s.tooOld = true })
	if err := v.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	store.set(func(s *fakeStore) { s.tooOld = false })
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if gets, _ := store.counts(); gets != 2 {
		t.Errorf("store queries: got %d, want 2 (the purge must drop the entry)", gets)
	}
	if got := invalidations(m, metrics.SourceLocal); got != 1 {
		t.Errorf("local invalidations: got %d, want 1", got)
	}
}

// The fake store's change log fails on demand.
func TestSyncEmptiesTheCacheWhenChangesCannotBeRead(t *testing.T) {
	now := time.Now()
	secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	store := newFakeStore()
	store.put(k)
	v, m := newVerifier(t, store, Config{})
	ctx := context.Background()
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	revoked := k
	revoked.RevokedAt = now
	store.put(revoked)
	store.set(func(s *fakeStore) { s.changesErr = errors.New("connection reset") })
	if err := v.Sync(ctx); err != nil {
		t.Errorf("Sync: got %v, want nil (the cache was emptied instead)", err)
	}
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); code(err) != apikey.CodeRevoked {
		t.Errorf("after Sync: got %q, want %q", code(err), apikey.CodeRevoked)
	}
	if got := testutil.ToFloat64(m.StoreErrors.WithLabelValues(metrics.OpChanges)); got != 1 {
		t.Errorf("changes errors: got %v, want 1", got)
	}
}

// The fake store's change log fails at start, which a real store cannot be
// made to do while it still answers key queries.
func TestEntriesCachedBeforeTheSequenceIsKnownAreDroppedWhenItIs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		store := newFakeStore()
		store.put(k)
		store.changesErr = errors.New("connection refused")
		v, _ := newVerifier(t, store, Config{SyncInterval: time.Second, CacheTTL: time.Hour})
		ctx := context.Background()
		if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		// Revoked while the verifier cannot know from which change on to
		// read: its first successful read must not trust the cache.
		revoked := k
		revoked.RevokedAt = now
		store.put(revoked)
		store.set(func(s *fakeStore) { s.changesErr = nil })
		time.Sleep(time.Second) // the next poll
		synctest.Wait()
		if _, err := v.Verify(ctx, "ApiKey "+secret, now); code(err) != apikey.CodeRevoked {
			t.Errorf("after the first successful poll: got %q, want %q", code(err), apikey.CodeRevoked)
		}
	})
}

// The fake store's sequence is reset, as a restored database's would be.
func TestASequenceGoingBackEmptiesTheCache(t *testing.T) {
	now := time.Now()
	secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	store := newFakeStore()
	store.put(k)
	store.put(k)
	v, _ := newVerifier(t, store, Config{})
	ctx := context.Background()
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	revoked := k
	revoked.RevokedAt = now
	store.set(func(s *fakeStore) { s.log, s.seq = nil, 1; s.keys[k.Digest] = revoked })
	if err := v.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if _, err := v.Verify(ctx, "ApiKey "+secret, now); code(err) != apikey.CodeRevoked {
		t.Errorf("after Sync: got %q, want %q", code(err), apikey.CodeRevoked)
	}
}

// The real stores that push notices need PostgreSQL; this fake sends
// notices on demand and counts nothing else.
func TestNoticesAndPollsApplyChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		s1, k1 := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		s2, k2 := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
		fake := newFakeStore()
		fake.notices = make(chan struct{}, 1)
		store := notifyingStore{fake}
		store.put(k1)
		store.put(k2)
		v, m := newVerifier(t, store, Config{SyncInterval: time.Minute, CacheTTL: time.Hour})
		ctx := context.Background()
		for _, s := range []string{s1, s2} {
			if _, err := v.Verify(ctx, "ApiKey "+s, now); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		}

		revoked := k1
		revoked.RevokedAt = now
		store.put(revoked)
		fake.notices <- struct{}{}
		synctest.Wait()
		if _, err := v.Verify(ctx, "ApiKey "+s1, now); code(err) != apikey.CodeRevoked {
			t.Errorf("after a notice: got %q, want %q", code(err), apikey.CodeRevoked)
		}
		if got := invalidations(m, metrics.SourceNotify); got != 1 {
			t.Errorf("notify invalidations: got %d, want 1", got)
		}

		// A closed notice channel (the store closed) leaves polling on.
		close(fake.notices)
		revoked = k2
		revoked.RevokedAt = now
		store.put(revoked)
		time.Sleep(time.Minute)
		synctest.Wait()
		if _, err := v.Verify(ctx, "ApiKey "+s2, now); code(err) != apikey.CodeRevoked {
			t.Errorf("after a poll: got %q, want %q", code(err), apikey.CodeRevoked)
		}
		if got := invalidations(m, metrics.SourcePoll); got != 1 {
			t.Errorf("poll invalidations: got %d, want 1", got)
		}
	})
}

// snapshotStore is a fakeStore whose GetByDigest reads the record before
// its first call waits for first to be closed, like a query whose answer is
// slow to arrive.
type snapshotStore struct {
	*fakeStore
	first chan struct{}
}

func newSnapshotStore() snapshotStore { return snapshotStore{newFakeStore(), make(chan struct{})} }

func (s snapshotStore) GetByDigest(ctx context.Context, d apikey.Digest) (apikey.Key, error) {
	s.mu.Lock()
	s.gets++
	k, ok := s.keys[d]
	wait := s.gets == 1
	s.mu.Unlock()
	if wait {
		<-s.first
	}
	if !ok {
		return apikey.Key{}, keystore.ErrNotFound
	}
	return k, nil
}

// Attach's result is made once per fetch and returned with the record on
// every hit, revoked and expired answers included, and made anew when a
// change replaces the record.
func TestAttachIsMadeOncePerFetchAndKeptWithTheRecord(t *testing.T) {
	now := time.Now()
	secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryNever, now)
	store := newFakeStore()
	store.put(k)
	type attachment struct{ name string }
	var made []*attachment
	v, _ := newVerifier(t, store, Config{Attach: func(k *apikey.Key) any {
		a := &attachment{name: k.Name}
		made = append(made, a)
		return a
	}})
	ctx := context.Background()
	for i := range 3 {
		got, att, err := v.VerifyAttached(ctx, "ApiKey "+secret, now)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if len(made) != 1 || att != made[0] || att.(*attachment).name != got.Name {
			t.Fatalf("request %d: attachment %v, made %d (want the one made at the fetch)", i, att, len(made))
		}
	}

	k.Name = "renamed"
	k.RevokedAt = now
	store.put(k)
	if err := v.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	got, att, err := v.VerifyAttached(ctx, "ApiKey "+secret, now)
	if code(err) != apikey.CodeRevoked || got == nil {
		t.Fatalf("after revocation: %v, %v", got, err)
	}
	if len(made) != 2 || att != made[1] || att.(*attachment).name != "renamed" {
		t.Errorf("after a change: attachment %v, made %d (want a new one, of the new record)", att, len(made))
	}

	if _, att, err := v.VerifyAttached(ctx, "Bearer x", now); att != nil || err == nil {
		t.Errorf("a refused header gave attachment %v, error %v", att, err)
	}
}
