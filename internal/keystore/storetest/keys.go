package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

func testCreate(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("every scope, expiry and name comes back exactly from Get and GetByDigest", func(t *testing.T) {
		s := open(t)
		names := []string{"CI/CD Pipeline", "x", "Ünïcode ✓ — 鍵", "quote ' \" and <b>", strings.Repeat("é", apikey.MaxNameLength), " inner\u00a0spaces\u3000 "}
		var want []apikey.Key
		i := 0
		for _, scope := range apikey.Scopes {
			for _, expiry := range apikey.Expiries {
				k := newKey(t, names[i%len(names)], scope, expiry, base.Add(time.Duration(i)*time.Microsecond))
				i++
				mustCreate(t, s, k)
				want = append(want, k)
			}
		}
		for _, w := range want {
			got, err := s.Get(t.Context(), w.ID)
			if err != nil {
				t.Fatalf("Get(%s) = %v, want nil", w.ID, err)
			}
			checkKey(t, "Get("+w.Scope.String()+", "+string(w.Expiry)+")", got, w)
			got, err = s.GetByDigest(t.Context(), w.Digest)
			if err != nil {
				t.Fatalf("GetByDigest(%s) = %v, want nil", w.ID, err)
			}
			checkKey(t, "GetByDigest("+w.Scope.String()+", "+string(w.Expiry)+")", got, w)
		}
	})

	t.Run("a never-expiring key comes back with a zero ExpiresAt", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "forever", apikey.ExpiryNever, base)
		if got := mustGet(t, s, k.ID); !got.ExpiresAt.IsZero() || got.Expiry != apikey.ExpiryNever {
			t.Errorf("ExpiresAt, Expiry = %v, %q; want zero, %q", got.ExpiresAt, got.Expiry, apikey.ExpiryNever)
		}
	})

	t.Run("times given in another zone come back equal and in UTC", func(t *testing.T) {
		s := open(t)
		k := newKey(t, "zoned", apikey.ScopeWidget, apikey.ExpiryWeek, base)
		zone := time.FixedZone("UTC+5:30", 5*3600+1800)
		k.CreatedAt = k.CreatedAt.In(zone)
		k.ExpiresAt = k.ExpiresAt.In(zone)
		mustCreate(t, s, k)
		checkKey(t, "Get", mustGet(t, s, k.ID), k)
	})

	t.Run("times keep microsecond precision", func(t *testing.T) {
		s := open(t)
		for _, tc := range []struct {
			name    string
			created time.Time
		}{
			{"whole second", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)},
			{"one microsecond", time.Date(2030, 1, 1, 0, 0, 0, 1000, time.UTC)},
			{"999999 microseconds", time.Date(2030, 1, 1, 0, 0, 0, 999999000, time.UTC)},
			{"before 1970", time.Date(1969, 12, 31, 23, 59, 59, 654321000, time.UTC)},
			{"sub-microsecond", time.Date(2030, 1, 1, 0, 0, 0, 123456789, time.UTC)},
		} {
			k := newKey(t, tc.name, apikey.ScopeFull, apikey.ExpiryHour, tc.created)
			mustCreate(t, s, k)
			got := mustGet(t, s, k.ID)
			if tc.created.Nanosecond()%1000 == 0 {
				checkKey(t, tc.name, got, k)
				continue
			}
			for _, tm := range []struct {
				field     string
				got, want time.Time
			}{{"CreatedAt", got.CreatedAt, k.CreatedAt}, {"ExpiresAt", got.ExpiresAt, k.ExpiresAt}} {
				if d := tm.got.Sub(tm.want).Abs(); d >= time.Microsecond || tm.got.Location() != time.UTC {
					t.Errorf("%s: %s = %v, want within 1µs of %v, in UTC", tc.name, tm.field, tm.got, tm.want)
				}
			}
		}
	})

	t.Run("a key whose ID is stored already is refused with ErrExists and stores nothing", func(t *testing.T) {
		s := open(t)
		first := create(t, s, "first", apikey.ExpiryDay, base)
		before := seq(t, s)
		dup := newKey(t, "second", apikey.ScopeRoutine, apikey.ExpiryYear, base.Add(time.Second))
		dup.ID = first.ID
		if err := s.Create(t.Context(), dup, testAudit); !errors.Is(err, keystore.ErrExists) {
			t.Fatalf("Create(same ID) = %v, want ErrExists", err)
		}
		checkKey(t, "Get(first) after the refused create", mustGet(t, s, first.ID), first)
		if _, err := s.GetByDigest(t.Context(), dup.Digest); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("GetByDigest(refused key) = %v, want ErrNotFound", err)
		}
		if got := seq(t, s); got != before {
			t.Errorf("sequence after a refused create = %d, want %d", got, before)
		}
	})

	t.Run("a key whose digest is stored already is refused with ErrExists and stores nothing", func(t *testing.T) {
		s := open(t)
		first := create(t, s, "first", apikey.ExpiryDay, base)
		before := seq(t, s)
		dup := newKey(t, "second", apikey.ScopeRoutine, apikey.ExpiryYear, base.Add(time.Second))
		dup.Digest = first.Digest
		if err := s.Create(t.Context(), dup, testAudit); !errors.Is(err, keystore.ErrExists) {
			t.Fatalf("Create(same digest) = %v, want ErrExists", err)
		}
		if _, err := s.Get(t.Context(), dup.ID); !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("Get(refused key) = %v, want ErrNotFound", err)
		}
		got, err := s.GetByDigest(t.Context(), first.Digest)
		if err != nil {
			t.Fatalf("GetByDigest(first) = %v, want nil", err)
		}
		checkKey(t, "GetByDigest(first) after the refused create", got, first)
		if got := seq(t, s); got != before {
			t.Errorf("sequence after a refused create = %d, want %d", got, before)
		}
	})

}

func testGet(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("unknown IDs and digests return ErrNotFound", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "stored", apikey.ExpiryNever, base)
		other := newKey(t, "not stored", apikey.ScopeFull, apikey.ExpiryNever, base)
		for _, id := range []string{other.ID, "", "key_", strings.ToUpper(k.ID), k.ID + "x", "'; DROP TABLE keys; --"} {
			if got, err := s.Get(t.Context(), id); !errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("Get(%q) = %+v, %v; want ErrNotFound", id, got, err)
			}
		}
		for _, d := range []apikey.Digest{other.Digest, {}, flip(k.Digest)} {
			if got, err := s.GetByDigest(t.Context(), d); !errors.Is(err, keystore.ErrNotFound) {
				t.Errorf("GetByDigest(%s) = %+v, %v; want ErrNotFound", d, got, err)
			}
		}
	})
}

// flip returns d with its last bit changed.
func flip(d apikey.Digest) apikey.Digest {
	d[len(d)-1] ^= 1
	return d
}

func testList(t *testing.T, open func(t *testing.T) keystore.Store, _ Options) {
	t.Run("an empty store lists no keys", func(t *testing.T) {
		s := open(t)
		for _, st := range append([]apikey.Status{0}, apikey.Statuses...) {
			got, err := s.List(t.Context(), keystore.Filter{Status: st, Now: base})
			if err != nil || len(got) != 0 {
				t.Errorf("List(%v) = %d keys, %v; want none, nil", st, len(got), err)
			}
		}
	})

	t.Run("status is judged at Filter.Now, revoked winning over expired", func(t *testing.T) {
		s := open(t)
		now := base.Add(48 * time.Hour)
		mk := func(name string, expiry apikey.Expiry, created time.Time, revoke bool) {
			k := create(t, s, name, expiry, created)
			if revoke {
				if _, err := s.Revoke(t.Context(), k.ID, created.Add(time.Minute), testAudit); err != nil {
					t.Fatalf("Revoke(%s) = %v", name, err)
				}
			}
		}
		mk("never expires", apikey.ExpiryNever, base, false)
		mk("expires in a day", apikey.ExpiryDay, now.Add(-time.Hour), false)
		mk("expires exactly now", apikey.ExpiryDay, now.Add(-24*time.Hour), false)
		mk("expires a microsecond after now", apikey.ExpiryDay, now.Add(-24*time.Hour+time.Microsecond), false)
		mk("expired yesterday", apikey.ExpiryHour, base, false)
		mk("revoked", apikey.ExpiryNever, base.Add(time.Second), true)
		mk("revoked and expired", apikey.ExpiryHour, base.Add(2*time.Second), true)

		for _, tc := range []struct {
			status apikey.Status
			now    time.Time
			want   []string
		}{
			{apikey.StatusActive, now, []string{"never expires", "expires in a day", "expires a microsecond after now"}},
			{apikey.StatusExpired, now, []string{"expires exactly now", "expired yesterday"}},
			{apikey.StatusRevoked, now, []string{"revoked", "revoked and expired"}},
			{0, now, []string{"never expires", "expires in a day", "expires exactly now", "expires a microsecond after now", "expired yesterday", "revoked", "revoked and expired"}},
			{apikey.StatusActive, now.Add(-time.Microsecond), []string{"never expires", "expires in a day", "expires exactly now", "expires a microsecond after now"}},
			{apikey.StatusExpired, now.Add(-time.Microsecond), []string{"expired yesterday"}},
			{apikey.StatusActive, base, []string{"never expires", "expires in a day", "expires exactly now", "expires a microsecond after now", "expired yesterday"}},
		} {
			keys, err := s.List(t.Context(), keystore.Filter{Status: tc.status, Now: tc.now})
			if err != nil {
				t.Fatalf("List(%v at %v) = %v", tc.status, tc.now, err)
			}
			var got []string
			for _, k := range keys {
				got = append(got, k.Name)
				if tc.status != 0 && k.Status(tc.now) != tc.status {
					t.Errorf("List(%v at %v) returned %q, whose status is %v", tc.status, tc.now, k.Name, k.Status(tc.now))
				}
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.want))
			if !slices.Equal(got, want) {
				t.Errorf("List(%v at %v) = %q, want %q", tc.status, tc.now, got, want)
			}
		}
	})

	t.Run("keys are listed newest first, ties broken by ID descending, every field exact", func(t *testing.T) {
		s := open(t)
		var want []apikey.Key
		for i, created := range []time.Time{
			base, base, base, base.Add(time.Microsecond), base.Add(-time.Microsecond),
			base.Add(time.Hour), base.Add(time.Hour), base.Add(-time.Hour), base,
		} {
			k := create(t, s, "key "+string(rune('a'+i)), apikey.ExpiryNever, created)
			want = append(want, k)
		}
		slices.SortFunc(want, func(a, b apikey.Key) int {
			if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
				return c
			}
			return strings.Compare(b.ID, a.ID)
		})
		got, err := s.List(t.Context(), keystore.Filter{Now: base})
		if err != nil {
			t.Fatalf("List = %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("List returned %d keys, want %d", len(got), len(want))
		}
		for i := range want {
			checkKey(t, "List["+string(rune('0'+i))+"]", got[i], want[i])
		}
	})
}
