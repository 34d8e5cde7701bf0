package verifier

import (
	"context"
	"sync"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// fakeStore is a tiny in-memory store for the few tests the real stores
// cannot serve: counting store queries (to prove concurrent misses share
// one), holding a query open at a chosen moment, and injecting failures
// (a failing change log, ErrTooOld, a sequence that goes back). Every other
// test runs against the real SQLite store.
type fakeStore struct {
	mu         sync.Mutex
	keys       map[apikey.Digest]apikey.Key
	log        []keystore.Change
	seq        int64
	gets       int
	changes    int
	getErr     error
	changesErr error
	tooOld     bool
	// block, when set, holds every GetByDigest until it is closed.
	block   chan struct{}
	notices chan struct{} // nil: not a keystore.Notifier (see notifyingStore)
}

func newFakeStore() *fakeStore {
	return &fakeStore{keys: map[apikey.Digest]apikey.Key{}}
}

// put stores k and logs the change, as Create, Revoke and Rotate do.
func (s *fakeStore) put(k apikey.Key) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[k.Digest] = k
	s.seq++
	s.log = append(s.log, keystore.Change{Seq: s.seq, KeyID: k.ID, Digest: k.Digest})
}

func (s *fakeStore) GetByDigest(ctx context.Context, d apikey.Digest) (apikey.Key, error) {
	s.mu.Lock()
	s.gets++
	block, err := s.block, s.getErr
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return apikey.Key{}, ctx.Err()
		}
	}
	if err != nil {
		return apikey.Key{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[d]
	if !ok {
		return apikey.Key{}, keystore.ErrNotFound
	}
	return k, nil
}

func (s *fakeStore) Changes(ctx context.Context, since int64, limit int) ([]keystore.Change, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes++
	if s.changesErr != nil {
		return nil, 0, s.changesErr
	}
	if s.tooOld {
		return nil, s.seq, keystore.ErrTooOld
	}
	var out []keystore.Change
	for _, c := range s.log {
		if c.Seq > since && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, s.seq, nil
}

func (s *fakeStore) counts() (gets, changes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets, s.changes
}

func (s *fakeStore) set(f func(s *fakeStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// notifyingStore is a fakeStore that is also a keystore.Notifier.
type notifyingStore struct{ *fakeStore }

func (s notifyingStore) Notices() <-chan struct{} { return s.notices }
