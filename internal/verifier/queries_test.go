package verifier

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docana/keygate/internal/apikey"
)

// Misses for many different keys at once reach the store at most
// maxQueries at a time; the others wait for a free slot and are then
// answered like the first.
func TestConcurrentMissesReachTheStoreAtMostMaxQueriesAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		store := newFakeStore()
		const n = 3 * maxQueries
		headers := make([]string, n)
		for i := range headers {
			secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryDay, now)
			store.put(k)
			headers[i] = "ApiKey " + secret
		}
		block := make(chan struct{})
		store.block = block
		v, _ := newVerifier(t, store, Config{})

		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { _, errs[i] = v.Verify(context.Background(), headers[i], now) })
		}
		synctest.Wait() // maxQueries requests in the store, the others waiting for a slot
		if gets, _ := store.counts(); gets != maxQueries {
			t.Errorf("store queries in flight: got %d, want %d", gets, maxQueries)
		}
		close(block)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("request %d: %v", i, err)
			}
		}
		if gets, _ := store.counts(); gets != n {
			t.Errorf("store queries: got %d, want %d", gets, n)
		}
	})
}

// stubbornStore holds every GetByDigest until hold is closed, whatever
// its context says, like a store whose driver ignores deadlines.
type stubbornStore struct {
	*fakeStore
	hold    chan struct{}
	entered atomic.Int32
}

func (s *stubbornStore) GetByDigest(ctx context.Context, d apikey.Digest) (apikey.Key, error) {
	s.entered.Add(1)
	<-s.hold
	return s.fakeStore.GetByDigest(ctx, d)
}

// A miss that waits for a free slot longer than StoreTimeout is answered
// key_store_unavailable, as a query taking that long is, without reaching
// the store.
func TestAMissWaitingLongerThanStoreTimeoutIsUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		store := &stubbornStore{fakeStore: newFakeStore(), hold: make(chan struct{})}
		headers := make([]string, maxQueries+1)
		for i := range headers {
			secret, k := newKey(t, apikey.ScopeFull, apikey.ExpiryDay, now)
			store.put(k)
			headers[i] = "ApiKey " + secret
		}
		v, _ := newVerifier(t, store, Config{StoreTimeout: time.Second})

		var wg sync.WaitGroup
		for i := range maxQueries {
			wg.Go(func() { _, _ = v.Verify(context.Background(), headers[i], now) })
		}
		synctest.Wait() // every slot taken by a query held open
		_, err := v.Verify(context.Background(), headers[maxQueries], now)
		if got := code(err); got != apikey.CodeUnavailable {
			t.Errorf("waiting past StoreTimeout: got %s, want %s", got, apikey.CodeUnavailable)
		}
		if got := store.entered.Load(); got != maxQueries {
			t.Errorf("store queries: got %d, want %d (the waiting request must not reach the store)", got, maxQueries)
		}
		close(store.hold)
		wg.Wait()
	})
}
