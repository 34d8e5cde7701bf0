package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

func testRevoke(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("revoke sets RevokedAt and returns the key as stored", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "to revoke", apikey.ExpiryMonth, base)
		at := base.Add(time.Hour + 7*time.Microsecond)
		got, err := s.Revoke(t.Context(), k.ID, at, testAudit)
		if err != nil {
			t.Fatalf("Revoke = %v, want nil", err)
		}
		want := k
		want.RevokedAt = at
		checkKey(t, "Revoke's result", got, want)
		checkKey(t, "Get after Revoke", mustGet(t, s, k.ID), want)
	})

	t.Run("revoking a revoked key changes nothing and bumps no sequence", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "revoked twice", apikey.ExpiryNever, base)
		first := base.Add(time.Minute)
		if _, err := s.Revoke(t.Context(), k.ID, first, testAudit); err != nil {
			t.Fatalf("first Revoke = %v, want nil", err)
		}
		before := seq(t, s)
		want := k
		want.RevokedAt = first
		for _, at := range []time.Time{first.Add(time.Hour), first.Add(-time.Hour), first} {
			got, err := s.Revoke(t.Context(), k.ID, at, testAudit)
			if err != nil {
				t.Fatalf("Revoke again at %v = %v, want nil", at, err)
			}
			checkKey(t, "Revoke again", got, want)
		}
		checkKey(t, "Get after revoking again", mustGet(t, s, k.ID), want)
		if got := seq(t, s); got != before {
			t.Errorf("sequence after revoking again = %d, want %d", got, before)
		}
	})

	t.Run("revoking an expired key makes it revoked", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "expired", apikey.ExpiryHour, base)
		at := base.Add(2 * time.Hour)
		got, err := s.Revoke(t.Context(), k.ID, at, testAudit)
		if err != nil {
			t.Fatalf("Revoke = %v, want nil", err)
		}
		if got.Status(at) != apikey.StatusRevoked || !got.RevokedAt.Equal(at) {
			t.Errorf("after Revoke: status %v, RevokedAt %v; want revoked at %v", got.Status(at), got.RevokedAt, at)
		}
	})

	t.Run("revoking an unknown key returns ErrNotFound and bumps no sequence", func(t *testing.T) {
		s := open(t)
		create(t, s, "other", apikey.ExpiryNever, base)
		before := seq(t, s)
		missing := newKey(t, "missing", apikey.ScopeFull, apikey.ExpiryNever, base)
		if _, err := s.Revoke(t.Context(), missing.ID, base, testAudit); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("Revoke(unknown) = %v, want ErrNotFound", err)
		}
		if got := seq(t, s); got != before {
			t.Errorf("sequence = %d, want %d", got, before)
		}
	})
}

func testRotate(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("the old key expires at the sooner of its own expiry and oldExpiresAt", func(t *testing.T) {
		for _, tc := range []struct {
			name         string
			expiry       apikey.Expiry // of the old key, created at base
			oldExpiresAt time.Time
			want         time.Time
		}{
			{"never-expiring key gets oldExpiresAt", apikey.ExpiryNever, base.Add(24 * time.Hour), base.Add(24 * time.Hour)},
			{"later expiry is brought forward", apikey.ExpiryYear, base.Add(24 * time.Hour), base.Add(24 * time.Hour)},
			{"sooner expiry is kept", apikey.ExpiryHour, base.Add(24 * time.Hour), base.Add(time.Hour)},
			{"equal expiry is kept", apikey.ExpiryDay, base.Add(24 * time.Hour), base.Add(24 * time.Hour)},
			{"oldExpiresAt now", apikey.ExpiryWeek, base.Add(3 * time.Microsecond), base.Add(3 * time.Microsecond)},
			{"already expired key keeps its expiry", apikey.ExpiryHour, base.Add(48 * time.Hour), base.Add(time.Hour)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := open(t)
				old := newKey(t, "old", apikey.ScopeWidget, tc.expiry, base)
				mustCreate(t, s, old)
				if err := s.TouchLastUsed(t.Context(), map[string]time.Time{old.ID: base.Add(time.Minute)}); err != nil {
					t.Fatalf("TouchLastUsed = %v", err)
				}
				next := newKey(t, "old", apikey.ScopeWidget, tc.expiry, base.Add(30*time.Minute))
				got, err := s.Rotate(t.Context(), old.ID, next, tc.oldExpiresAt, testAudit)
				if err != nil {
					t.Fatalf("Rotate = %v, want nil", err)
				}
				want := old
				want.ExpiresAt = tc.want
				want.LastUsedAt = base.Add(time.Minute)
				want.ReplacedBy = next.ID
				checkKey(t, "Rotate's result", got, want)
				checkKey(t, "Get(old) after Rotate", mustGet(t, s, old.ID), want)
				checkKey(t, "Get(next) after Rotate", mustGet(t, s, next.ID), next)
				byDigest, err := s.GetByDigest(t.Context(), next.Digest)
				if err != nil {
					t.Fatalf("GetByDigest(next) = %v, want nil", err)
				}
				checkKey(t, "GetByDigest(next) after Rotate", byDigest, next)
			})
		}
	})

	t.Run("a replaced key cannot be rotated again: ErrReplaced, and nothing changes", func(t *testing.T) {
		s := open(t)
		old := create(t, s, "old", apikey.ExpiryNever, base)
		next := newKey(t, "old", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Second))
		replaced, err := s.Rotate(t.Context(), old.ID, next, base.Add(24*time.Hour), testAudit)
		if err != nil {
			t.Fatalf("first Rotate = %v, want nil", err)
		}
		before := seq(t, s)
		// Within the grace period, the replaced key is still active: its
		// being replaced alone refuses the rotation.
		for i, at := range []time.Time{base.Add(2 * time.Second), base.Add(23 * time.Hour)} {
			again := newKey(t, "old", apikey.ScopeFull, apikey.ExpiryNever, at)
			if _, err := s.Rotate(t.Context(), old.ID, again, at.Add(time.Hour), testAudit); !errors.Is(err, keystore.ErrReplaced) {
				t.Fatalf("Rotate #%d of a replaced key = %v, want ErrReplaced", i+2, err)
			}
			checkNotStored(t, s, again)
		}
		checkKey(t, "Get(old)", mustGet(t, s, old.ID), replaced)
		checkKey(t, "Get(next)", mustGet(t, s, next.ID), next)
		if got := seq(t, s); got != before {
			t.Errorf("sequence = %d, want %d", got, before)
		}
		// The new key can be rotated in turn.
		third := newKey(t, "old", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Hour))
		got, err := s.Rotate(t.Context(), next.ID, third, base.Add(25*time.Hour), testAudit)
		if err != nil {
			t.Fatalf("Rotate(next) = %v, want nil", err)
		}
		if got.ReplacedBy != third.ID {
			t.Errorf("Rotate(next): ReplacedBy = %q, want %q", got.ReplacedBy, third.ID)
		}
	})

	t.Run("an expired key cannot be rotated: ErrExpired, judged at the new key's creation, and nothing changes", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			at      time.Time // the rotation's time, next.CreatedAt
			wantErr error
		}{
			{"a microsecond before its expiry", base.Add(time.Hour - time.Microsecond), nil},
			{"at its expiry", base.Add(time.Hour), keystore.ErrExpired},
			{"a day after its expiry", base.Add(25 * time.Hour), keystore.ErrExpired},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := open(t)
				old := create(t, s, "hourly", apikey.ExpiryHour, base)
				before := seq(t, s)
				next := newKey(t, "hourly", apikey.ScopeFull, apikey.ExpiryHour, tc.at)
				_, err := s.Rotate(t.Context(), old.ID, next, tc.at.Add(time.Hour), testAudit)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Rotate at %v = %v, want %v", tc.at, err, tc.wantErr)
				}
				if tc.wantErr == nil {
					return
				}
				checkNotStored(t, s, next)
				checkKey(t, "Get(old)", mustGet(t, s, old.ID), old)
				if got := seq(t, s); got != before {
					t.Errorf("sequence = %d, want %d", got, before)
				}
			})
		}
	})

	t.Run("a revoked key that was replaced is refused as revoked", func(t *testing.T) {
		s := open(t)
		old := create(t, s, "old", apikey.ExpiryNever, base)
		next := newKey(t, "old", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Second))
		if _, err := s.Rotate(t.Context(), old.ID, next, base.Add(time.Hour), testAudit); err != nil {
			t.Fatalf("Rotate = %v", err)
		}
		if _, err := s.Revoke(t.Context(), old.ID, base.Add(time.Minute), testAudit); err != nil {
			t.Fatalf("Revoke = %v", err)
		}
		again := newKey(t, "old", apikey.ScopeFull, apikey.ExpiryNever, base.Add(2*time.Minute))
		if _, err := s.Rotate(t.Context(), old.ID, again, base.Add(time.Hour), testAudit); !errors.Is(err, keystore.ErrRevoked) {
			t.Fatalf("Rotate(revoked and replaced) = %v, want ErrRevoked", err)
		}
		checkNotStored(t, s, again)
	})

	t.Run("rotating a revoked key returns ErrRevoked and changes nothing", func(t *testing.T) {
		s := open(t)
		old := create(t, s, "old", apikey.ExpiryNever, base)
		revoked, err := s.Revoke(t.Context(), old.ID, base.Add(time.Minute), testAudit)
		if err != nil {
			t.Fatalf("Revoke = %v", err)
		}
		before := seq(t, s)
		next := newKey(t, "next", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Hour))
		if _, err := s.Rotate(t.Context(), old.ID, next, base.Add(2*time.Hour), testAudit); !errors.Is(err, keystore.ErrRevoked) {
			t.Fatalf("Rotate(revoked) = %v, want ErrRevoked", err)
		}
		checkNotStored(t, s, next)
		checkKey(t, "Get(old)", mustGet(t, s, old.ID), revoked)
		if got := seq(t, s); got != before {
			t.Errorf("sequence = %d, want %d", got, before)
		}
	})

	t.Run("rotating an unknown key returns ErrNotFound and creates nothing", func(t *testing.T) {
		s := open(t)
		create(t, s, "other", apikey.ExpiryNever, base)
		before := seq(t, s)
		missing := newKey(t, "missing", apikey.ScopeFull, apikey.ExpiryNever, base)
		next := newKey(t, "next", apikey.ScopeFull, apikey.ExpiryNever, base)
		if _, err := s.Rotate(t.Context(), missing.ID, next, base.Add(time.Hour), testAudit); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("Rotate(unknown) = %v, want ErrNotFound", err)
		}
		checkNotStored(t, s, next)
		if got := seq(t, s); got != before {
			t.Errorf("sequence = %d, want %d", got, before)
		}
	})

	t.Run("a rotation whose new key collides returns ErrExists and leaves the old key as it was", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			collide func(next *apikey.Key, other apikey.Key)
		}{
			{"same ID", func(next *apikey.Key, other apikey.Key) { next.ID = other.ID }},
			{"same digest", func(next *apikey.Key, other apikey.Key) { next.Digest = other.Digest }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := open(t)
				old := create(t, s, "old", apikey.ExpiryNever, base)
				other := create(t, s, "other", apikey.ExpiryNever, base)
				before := seq(t, s)
				next := newKey(t, "next", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Hour))
				tc.collide(&next, other)
				if _, err := s.Rotate(t.Context(), old.ID, next, base.Add(2*time.Hour), testAudit); !errors.Is(err, keystore.ErrExists) {
					t.Fatalf("Rotate(colliding next) = %v, want ErrExists", err)
				}
				checkKey(t, "Get(old)", mustGet(t, s, old.ID), old)
				checkKey(t, "Get(other)", mustGet(t, s, other.ID), other)
				if got := seq(t, s); got != before {
					t.Errorf("sequence = %d, want %d", got, before)
				}
			})
		}
	})
}

// checkNotStored checks that neither k's ID nor its digest is stored.
func checkNotStored(t *testing.T, s keystore.Store, k apikey.Key) {
	t.Helper()
	if _, err := s.Get(t.Context(), k.ID); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Get(%s) = %v, want ErrNotFound", k.Name, err)
	}
	if _, err := s.GetByDigest(t.Context(), k.Digest); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("GetByDigest(%s) = %v, want ErrNotFound", k.Name, err)
	}
}

func testTouchLastUsed(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("last use moves forward only", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "used", apikey.ExpiryNever, base)
		for _, step := range []struct {
			touch, want time.Time
		}{
			{base.Add(time.Minute), base.Add(time.Minute)},
			{base.Add(time.Second), base.Add(time.Minute)},
			{base.Add(time.Minute), base.Add(time.Minute)},
			{base.Add(time.Minute + time.Microsecond), base.Add(time.Minute + time.Microsecond)},
			{base.Add(time.Hour), base.Add(time.Hour)},
			{base, base.Add(time.Hour)},
		} {
			if err := s.TouchLastUsed(t.Context(), map[string]time.Time{k.ID: step.touch}); err != nil {
				t.Fatalf("TouchLastUsed(%v) = %v, want nil", step.touch, err)
			}
			want := k
			want.LastUsedAt = step.want
			checkKey(t, "after touching at "+step.touch.Format(time.RFC3339Nano), mustGet(t, s, k.ID), want)
		}
	})

	t.Run("one call touches several keys and ignores unknown ones", func(t *testing.T) {
		s := open(t)
		a := create(t, s, "a", apikey.ExpiryNever, base)
		b := create(t, s, "b", apikey.ExpiryDay, base)
		c := create(t, s, "untouched", apikey.ExpiryDay, base)
		unknown := newKey(t, "unknown", apikey.ScopeFull, apikey.ExpiryNever, base)
		err := s.TouchLastUsed(t.Context(), map[string]time.Time{
			a.ID:       base.Add(time.Second),
			b.ID:       base.Add(2 * time.Second),
			unknown.ID: base.Add(3 * time.Second),
			"":         base.Add(4 * time.Second),
		})
		if err != nil {
			t.Fatalf("TouchLastUsed = %v, want nil", err)
		}
		for _, tc := range []struct {
			k    apikey.Key
			used time.Time
		}{{a, base.Add(time.Second)}, {b, base.Add(2 * time.Second)}, {c, time.Time{}}} {
			want := tc.k
			want.LastUsedAt = tc.used
			checkKey(t, "Get("+tc.k.Name+")", mustGet(t, s, tc.k.ID), want)
		}
		checkNotStored(t, s, unknown)
	})

	t.Run("empty and nil maps are fine", func(t *testing.T) {
		s := open(t)
		for _, uses := range []map[string]time.Time{nil, {}} {
			if err := s.TouchLastUsed(t.Context(), uses); err != nil {
				t.Errorf("TouchLastUsed(%v) = %v, want nil", uses, err)
			}
		}
	})

	t.Run("touching bumps no sequence and changes no other field", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "used", apikey.ExpiryWeek, base)
		revoked, err := s.Revoke(t.Context(), k.ID, base.Add(time.Minute), testAudit)
		if err != nil {
			t.Fatalf("Revoke = %v", err)
		}
		before := seq(t, s)
		if err := s.TouchLastUsed(t.Context(), map[string]time.Time{k.ID: base.Add(time.Hour)}); err != nil {
			t.Fatalf("TouchLastUsed = %v, want nil", err)
		}
		if got := seq(t, s); got != before {
			t.Errorf("sequence after a touch = %d, want %d", got, before)
		}
		want := revoked
		want.LastUsedAt = base.Add(time.Hour)
		checkKey(t, "Get after touch", mustGet(t, s, k.ID), want)
	})
}

func testChanges(t *testing.T, open func(t *testing.T) keystore.Store, opts Options) {
	t.Run("a fresh store is at sequence 0 with no changes, never too old", func(t *testing.T) {
		s := open(t)
		for _, since := range []int64{0, 1, 100} {
			chs, cur, err := s.Changes(t.Context(), since, 10)
			if err != nil || len(chs) != 0 || cur != 0 {
				t.Errorf("Changes(%d) = %d changes, %d, %v; want none, 0, nil", since, len(chs), cur, err)
			}
		}
	})

	t.Run("create, revoke and rotate report the keys and digests that changed", func(t *testing.T) {
		s := open(t)
		var last int64
		// check checks the changes made since the last check.
		check := func(name string, want ...apikey.Key) {
			t.Helper()
			chs, cur := changesSince(t, s, last)
			if got, want := changeKeys(chs), wantChanges(want...); !slices.Equal(got, want) {
				t.Errorf("%s: changes = %q, want %q", name, got, want)
			}
			if len(want) == 0 && cur != last {
				t.Errorf("%s: sequence moved from %d to %d without a change", name, last, cur)
			}
			if len(want) > 0 && cur <= last {
				t.Errorf("%s: sequence %d, want above %d", name, cur, last)
			}
			last = cur
		}
		a := create(t, s, "a", apikey.ExpiryNever, base)
		check("create a", a)
		b := create(t, s, "b", apikey.ExpiryDay, base)
		check("create b", b)
		if err := s.TouchLastUsed(t.Context(), map[string]time.Time{a.ID: base.Add(time.Hour)}); err != nil {
			t.Fatalf("TouchLastUsed = %v", err)
		}
		check("touch a")
		next := newKey(t, "a", apikey.ScopeFull, apikey.ExpiryNever, base.Add(time.Hour))
		if _, err := s.Rotate(t.Context(), a.ID, next, base.Add(25*time.Hour), testAudit); err != nil {
			t.Fatalf("Rotate = %v", err)
		}
		check("rotate a", a, next)
		if _, err := s.Revoke(t.Context(), b.ID, base.Add(time.Hour), testAudit); err != nil {
			t.Fatalf("Revoke = %v", err)
		}
		check("revoke b", b)
		if _, err := s.Revoke(t.Context(), b.ID, base.Add(2*time.Hour), testAudit); err != nil {
			t.Fatalf("Revoke = %v", err)
		}
		check("revoke b again")
		refused := newKey(t, "b", apikey.ScopeFull, apikey.ExpiryDay, base.Add(time.Hour))
		if _, err := s.Rotate(t.Context(), b.ID, refused, base.Add(2*time.Hour), testAudit); !errors.Is(err, keystore.ErrRevoked) {
			t.Fatalf("Rotate(revoked) = %v, want ErrRevoked", err)
		}
		check("refused rotate of b")
		if err := s.Create(t.Context(), next, testAudit); !errors.Is(err, keystore.ErrExists) {
			t.Fatalf("Create(existing) = %v, want ErrExists", err)
		}
		check("refused create")

		all, _ := changesSince(t, s, 0)
		if got, want := changeKeys(all), wantChanges(a, b, a, next, b); !slices.Equal(got, want) {
			t.Errorf("all changes = %q, want %q", got, want)
		}
	})

	t.Run("limit caps each answer and reading on from the last sequence seen gets the rest", func(t *testing.T) {
		s := open(t)
		var keys []apikey.Key
		for i := range 7 {
			keys = append(keys, create(t, s, "k", apikey.ExpiryNever, base.Add(time.Duration(i)*time.Second)))
		}
		all, cur := changesSince(t, s, 0)
		if len(all) != len(keys) {
			t.Fatalf("Changes(0) = %d changes, want %d", len(all), len(keys))
		}
		for i, c := range all {
			if c.KeyID != keys[i].ID || c.Digest != keys[i].Digest {
				t.Errorf("change %d is of %s, want %s (oldest first)", i, c.KeyID, keys[i].ID)
			}
		}
		for _, limit := range []int{1, 2, 3, 7, 100} {
			var got []keystore.Change
			since := int64(0)
			for range len(keys) + 1 {
				chs, c, err := s.Changes(t.Context(), since, limit)
				if err != nil {
					t.Fatalf("Changes(%d, %d) = %v", since, limit, err)
				}
				if c != cur {
					t.Errorf("Changes(%d, %d): sequence %d, want %d", since, limit, c, cur)
				}
				if len(chs) > limit {
					t.Errorf("Changes(%d, %d) = %d changes, want at most %d", since, limit, len(chs), limit)
				}
				if len(chs) == 0 {
					break
				}
				got = append(got, chs...)
				since = chs[len(chs)-1].Seq
			}
			if !slices.Equal(got, all) {
				t.Errorf("limit %d: paged changes = %v, want %v", limit, got, all)
			}
		}
	})

	t.Run("since the current sequence or beyond returns no changes", func(t *testing.T) {
		s := open(t)
		create(t, s, "a", apikey.ExpiryNever, base)
		create(t, s, "b", apikey.ExpiryNever, base)
		cur := seq(t, s)
		for _, since := range []int64{cur, cur + 1, cur + 1000} {
			chs, c, err := s.Changes(t.Context(), since, 10)
			if err != nil || len(chs) != 0 || c != cur {
				t.Errorf("Changes(%d) = %d changes, %d, %v; want none, %d, nil", since, len(chs), c, err, cur)
			}
		}
	})

	if opts.AgeChanges != nil {
		t.Run("changes pruned after an hour are reported with ErrTooOld, the newest kept", func(t *testing.T) {
			s := open(t)
			var keys []apikey.Key
			for i := range 3 {
				keys = append(keys, create(t, s, "old", apikey.ExpiryNever, base.Add(time.Duration(i)*time.Second)))
			}
			seen := seq(t, s)
			opts.AgeChanges(t, s)
			// Aging alone prunes nothing yet, and the newest change is
			// kept by any pruning.
			if chs, cur := changesSince(t, s, seen); len(chs) != 0 || cur != seen {
				t.Errorf("Changes(%d) after aging = %d changes, %d; want none, %d", seen, len(chs), cur, seen)
			}
			k := create(t, s, "new", apikey.ExpiryNever, base.Add(time.Hour))
			chs, cur := changesSince(t, s, seen)
			if got, want := changeKeys(chs), wantChanges(k); !slices.Equal(got, want) {
				t.Errorf("Changes(%d) after pruning = %q, want %q", seen, got, want)
			}
			for _, since := range []int64{0, seen - 1} {
				chs, c, err := s.Changes(t.Context(), since, 10)
				if !errors.Is(err, keystore.ErrTooOld) || c != cur || len(chs) != 0 {
					t.Errorf("Changes(%d) after pruning = %d changes, %d, %v; want none, %d, ErrTooOld", since, len(chs), c, err, cur)
				}
			}
			opts.AgeChanges(t, s)
			if _, err := s.Revoke(t.Context(), k.ID, base.Add(2*time.Hour), testAudit); err != nil {
				t.Fatalf("Revoke = %v", err)
			}
			chs, _ = changesSince(t, s, cur)
			if got, want := changeKeys(chs), wantChanges(k); !slices.Equal(got, want) {
				t.Errorf("Changes(%d) after pruning again = %q, want %q", cur, got, want)
			}
		})
	}
}
