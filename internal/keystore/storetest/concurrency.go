package storetest

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

func testConcurrency(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	testRotationRace(t, open)
	t.Run("concurrent creates, revokes, rotations and touches keep every change and a consistent state", func(t *testing.T) {
		s := open(t)
		const (
			creators   = 4
			perCreator = 10
			revokers   = 4
			rotators   = 3
			touchers   = 3
			perToucher = 10
		)
		// Keys 0-7 are revoked by every revoker, keys 8-15 rotated by
		// every rotator (one rotation of each wins, the others find it
		// replaced), keys 0-3 both (a rotation may lose to a revoke), and
		// every one of them is touched.
		var initial []apikey.Key
		for i := range 24 {
			expiry := apikey.ExpiryYear
			if i%2 == 0 {
				expiry = apikey.ExpiryNever
			}
			initial = append(initial, create(t, s, fmt.Sprintf("initial %d", i), expiry, base.Add(time.Duration(i)*time.Microsecond)))
		}
		revokeSet, rotateSet := initial[0:8], append(slices.Clone(initial[8:16]), initial[0:4]...)

		type revocation struct {
			id      string
			at, got time.Time
		}
		type rotation struct {
			old          apikey.Key
			next         apikey.Key
			oldExpiresAt time.Time
			err          error
		}
		var (
			mu          sync.Mutex
			created     []apikey.Key
			revocations []revocation
			rotations   []rotation
			lastUse     = map[string]time.Time{}
		)

		var writers sync.WaitGroup
		for g := range creators {
			writers.Go(func() {
				for i := range perCreator {
					k := newKey(t, fmt.Sprintf("created %d/%d", g, i), apikey.ScopeRoutine, apikey.ExpiryWeek, base.Add(time.Duration(g*perCreator+i)*time.Millisecond))
					if err := s.Create(t.Context(), k, testAudit); err != nil {
						t.Errorf("Create = %v, want nil", err)
						continue
					}
					mu.Lock()
					created = append(created, k)
					mu.Unlock()
				}
			})
		}
		for g := range revokers {
			writers.Go(func() {
				rng := rand.New(rand.NewPCG(1, uint64(g)))
				for _, i := range rng.Perm(len(revokeSet)) {
					at := base.Add(time.Hour + time.Duration(g*100+i)*time.Microsecond)
					k, err := s.Revoke(t.Context(), revokeSet[i].ID, at, testAudit)
					if err != nil {
						t.Errorf("Revoke = %v, want nil", err)
						continue
					}
					mu.Lock()
					revocations = append(revocations, revocation{revokeSet[i].ID, at, k.RevokedAt})
					mu.Unlock()
				}
			})
		}
		for g := range rotators {
			writers.Go(func() {
				rng := rand.New(rand.NewPCG(2, uint64(g)))
				for _, i := range rng.Perm(len(rotateSet)) {
					old := rotateSet[i]
					next := newKey(t, old.Name, old.Scope, old.Expiry, base.Add(2*time.Hour))
					oldExpiresAt := base.Add(24*time.Hour + time.Duration(g*100+i)*time.Microsecond)
					_, err := s.Rotate(t.Context(), old.ID, next, oldExpiresAt, testAudit)
					if err != nil && !errors.Is(err, keystore.ErrRevoked) && !errors.Is(err, keystore.ErrReplaced) {
						t.Errorf("Rotate = %v, want nil, ErrRevoked or ErrReplaced", err)
						continue
					}
					mu.Lock()
					rotations = append(rotations, rotation{old, next, oldExpiresAt, err})
					mu.Unlock()
				}
			})
		}
		for g := range touchers {
			writers.Go(func() {
				rng := rand.New(rand.NewPCG(3, uint64(g)))
				for range perToucher {
					uses := map[string]time.Time{}
					for range 1 + rng.IntN(len(initial)) {
						uses[initial[rng.IntN(len(initial))].ID] = base.Add(time.Duration(rng.IntN(1_000_000_000)) * time.Microsecond)
					}
					if err := s.TouchLastUsed(t.Context(), uses); err != nil {
						t.Errorf("TouchLastUsed = %v, want nil", err)
						continue
					}
					mu.Lock()
					for id, at := range uses {
						if at.After(lastUse[id]) {
							lastUse[id] = at
						}
					}
					mu.Unlock()
				}
			})
		}

		// A follower reads the changes while they are written, as a
		// verifier does, and must see every one of them.
		done := make(chan struct{})
		var followed []keystore.Change
		var follower sync.WaitGroup
		follower.Go(func() {
			var since int64
			for {
				select {
				case <-done:
					return
				default:
				}
				chs, cur, err := s.Changes(t.Context(), since, 5)
				if err != nil {
					t.Errorf("Changes(%d, 5) = %v, want nil", since, err)
					return
				}
				for _, c := range chs {
					if c.Seq <= since {
						t.Errorf("Changes: sequence %d follows %d, want strictly increasing", c.Seq, since)
					}
					since = c.Seq
				}
				if cur < since {
					t.Errorf("Changes: current sequence %d is below the last change's %d", cur, since)
				}
				followed = append(followed, chs...)
				if len(chs) == 0 {
					time.Sleep(time.Millisecond) // let the writers on
				}
			}
		})
		writers.Wait()
		close(done)
		follower.Wait()
		if t.Failed() {
			return
		}
		var since int64
		if len(followed) > 0 {
			since = followed[len(followed)-1].Seq
		}
		rest, _ := changesSince(t, s, since)
		followed = append(followed, rest...)

		all, _ := changesSince(t, s, 0)
		if !slices.Equal(followed, all) {
			t.Errorf("a follower saw %d changes, the store holds %d: %v, want %v", len(followed), len(all), followed, all)
		}

		// Every change is accounted for by a call that succeeded.
		wantCounts := map[string]int{}
		digests := map[string]apikey.Digest{}
		for _, k := range slices.Concat(initial, created) {
			wantCounts[k.ID]++
			digests[k.ID] = k.Digest
		}
		revokedBy := map[string]time.Time{}
		for _, r := range revocations {
			if r.got.Equal(r.at) {
				if prev, ok := revokedBy[r.id]; ok {
					t.Errorf("key %s revoked at both %v and %v", r.id, prev, r.at)
				}
				revokedBy[r.id] = r.at
				wantCounts[r.id]++
			}
		}
		for _, k := range revokeSet {
			if _, ok := revokedBy[k.ID]; !ok {
				t.Errorf("no Revoke of %s returned its own time", k.Name)
			}
		}
		for _, r := range revocations {
			if !r.got.Equal(revokedBy[r.id]) {
				t.Errorf("Revoke returned RevokedAt %v, want the one revocation's %v", r.got, revokedBy[r.id])
			}
		}
		wantExpiry := map[string]time.Time{}
		for _, k := range initial {
			wantExpiry[k.ID] = k.ExpiresAt
		}
		replacedBy := map[string]string{}
		for _, r := range rotations {
			if r.err != nil {
				checkNotStored(t, s, r.next)
				continue
			}
			if prev, ok := replacedBy[r.old.ID]; ok {
				t.Errorf("key %s replaced by both %s and %s", r.old.Name, prev, r.next.ID)
			}
			replacedBy[r.old.ID] = r.next.ID
			wantCounts[r.old.ID]++
			wantCounts[r.next.ID]++
			digests[r.next.ID] = r.next.Digest
			if e := wantExpiry[r.old.ID]; e.IsZero() || r.oldExpiresAt.Before(e) {
				wantExpiry[r.old.ID] = r.oldExpiresAt
			}
			checkKey(t, "Get(new key of a rotation)", mustGet(t, s, r.next.ID), r.next)
		}
		gotCounts := map[string]int{}
		for _, c := range all {
			gotCounts[c.KeyID]++
			if d, ok := digests[c.KeyID]; !ok || d != c.Digest {
				t.Errorf("change %d names key %s with digest %s, want %s", c.Seq, c.KeyID, c.Digest, d)
			}
		}
		if !maps.Equal(gotCounts, wantCounts) {
			t.Errorf("changes per key = %v, want %v", gotCounts, wantCounts)
		}

		// The final state is what the successful calls made.
		for _, k := range initial {
			want := k
			want.RevokedAt = revokedBy[k.ID]
			want.LastUsedAt = lastUse[k.ID]
			want.ExpiresAt = wantExpiry[k.ID]
			want.ReplacedBy = replacedBy[k.ID]
			checkKey(t, "Get("+k.Name+")", mustGet(t, s, k.ID), want)
		}
		for _, k := range initial[8:16] {
			if replacedBy[k.ID] == "" {
				t.Errorf("no rotation of %s succeeded, want exactly one", k.Name)
			}
		}
		for _, k := range created {
			checkKey(t, "Get("+k.Name+")", mustGet(t, s, k.ID), k)
		}
		listed, err := s.List(t.Context(), keystore.Filter{Now: base})
		if err != nil {
			t.Fatalf("List = %v", err)
		}
		if want := len(digests); len(listed) != want {
			t.Errorf("List returned %d keys, want %d", len(listed), want)
		}
	})
}

func testRotationRace(t *testing.T, open func(t *testing.T) keystore.Store) {
	t.Run("of concurrent rotations of one key exactly one succeeds and the others get ErrReplaced", func(t *testing.T) {
		s := open(t)
		const (
			keys     = 6
			rotators = 6
		)
		for i := range keys {
			old := create(t, s, fmt.Sprintf("raced %d", i), apikey.ExpiryNever, base.Add(time.Duration(i)*time.Microsecond))
			before := seq(t, s)
			nexts := make([]apikey.Key, rotators)
			errs := make([]error, rotators)
			olds := make([]apikey.Key, rotators)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for g := range rotators {
				nexts[g] = newKey(t, old.Name, old.Scope, old.Expiry, base.Add(time.Hour))
				wg.Go(func() {
					<-start
					olds[g], errs[g] = s.Rotate(t.Context(), old.ID, nexts[g], base.Add(2*time.Hour), testAudit)
				})
			}
			close(start)
			wg.Wait()
			winner := -1
			for g, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Errorf("key %d: rotations %d and %d both succeeded", i, winner, g)
				case err == nil:
					winner = g
				case !errors.Is(err, keystore.ErrReplaced):
					t.Errorf("key %d: losing rotation = %v, want ErrReplaced", i, err)
				}
			}
			if winner < 0 {
				t.Fatalf("key %d: no rotation succeeded: %v", i, errs)
			}
			want := old
			want.ReplacedBy = nexts[winner].ID
			want.ExpiresAt = base.Add(2 * time.Hour)
			checkKey(t, "the winning Rotate's result", olds[winner], want)
			checkKey(t, "Get(old) after the race", mustGet(t, s, old.ID), want)
			for g, next := range nexts {
				if g == winner {
					checkKey(t, "Get(winning new key)", mustGet(t, s, next.ID), next)
					continue
				}
				checkNotStored(t, s, next)
			}
			chs, _ := changesSince(t, s, before)
			if got, want := changeKeys(chs), wantChanges(old, nexts[winner]); !slices.Equal(got, want) {
				t.Errorf("key %d: changes of the race = %q, want %q", i, got, want)
			}
		}
	})
}

func testClosed(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("every method of a closed store returns ErrClosed and closing again is fine", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "stored", apikey.ExpiryNever, base)
		if err := s.Close(); err != nil {
			t.Fatalf("Close = %v, want nil", err)
		}
		next := newKey(t, "next", apikey.ScopeFull, apikey.ExpiryNever, base)
		for _, call := range []struct {
			name string
			do   func() error
		}{
			{"Create", func() error { return s.Create(t.Context(), next, testAudit) }},
			{"Get", func() error { _, err := s.Get(t.Context(), k.ID); return err }},
			{"GetByDigest", func() error { _, err := s.GetByDigest(t.Context(), k.Digest); return err }},
			{"List", func() error { _, err := s.List(t.Context(), keystore.Filter{Now: base}); return err }},
			{"Revoke", func() error { _, err := s.Revoke(t.Context(), k.ID, base, testAudit); return err }},
			{"Rotate", func() error { _, err := s.Rotate(t.Context(), k.ID, next, base, testAudit); return err }},
			{"TouchLastUsed", func() error { return s.TouchLastUsed(t.Context(), map[string]time.Time{k.ID: base}) }},
			{"TouchLastUsed(empty)", func() error { return s.TouchLastUsed(t.Context(), nil) }},
			{"Changes", func() error { _, _, err := s.Changes(t.Context(), 0, 10); return err }},
		} {
			if err := call.do(); !errors.Is(err, keystore.ErrClosed) {
				t.Errorf("%s after Close = %v, want ErrClosed", call.name, err)
			}
		}
		if err := s.Close(); err != nil && !errors.Is(err, keystore.ErrClosed) {
			t.Errorf("second Close = %v, want nil or ErrClosed", err)
		}
	})
}
