package storetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// minute is a whole minute near base, where usage counts are kept.
var minute = base.Truncate(time.Minute)

func recordUsage(t *testing.T, s keystore.Store, uses map[string]time.Time, counts ...keystore.UsageCount) {
	t.Helper()
	if err := s.RecordUsage(t.Context(), uses, counts); err != nil {
		t.Fatalf("RecordUsage = %v, want nil", err)
	}
}

func usageRows(t *testing.T, s keystore.Store, id string, step time.Duration, from, to time.Time) []string {
	t.Helper()
	rows, err := s.Usage(t.Context(), id, step, from, to)
	if err != nil {
		t.Fatalf("Usage = %v, want nil", err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		if r.Start.Location() != time.UTC {
			t.Errorf("row start %v is not UTC", r.Start)
		}
		out[i] = fmt.Sprintf("%s %s %d", r.Start.Format(time.RFC3339), r.Result, r.N)
	}
	return out
}

func checkRows(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func testUsage(t *testing.T, open func(t *testing.T) keystore.Store, opts Options) {
	t.Run("RecordUsage writes last-used times like TouchLastUsed and counts at every step, adding up", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "used", apikey.ExpiryNever, base)
		used := base.Add(time.Hour)
		before := seq(t, s)
		for range 2 {
			recordUsage(t, s, map[string]time.Time{k.ID: used},
				keystore.UsageCount{KeyID: k.ID, Minute: minute, Result: "ok", N: 3},
				keystore.UsageCount{KeyID: k.ID, Minute: minute.Add(time.Minute), Result: "ok", N: 1},
				keystore.UsageCount{KeyID: k.ID, Minute: minute.Add(time.Minute), Result: "rate_limited", N: 2},
				keystore.UsageCount{KeyID: k.ID, Minute: minute.Add(2 * time.Hour), Result: "ok", N: 5})
		}
		recordUsage(t, s, map[string]time.Time{k.ID: base}) // older: ignored
		if got := mustGet(t, s, k.ID).LastUsedAt; !got.Equal(used) {
			t.Errorf("LastUsedAt = %v, want %v", got, used)
		}
		if cur := seq(t, s); cur != before {
			t.Errorf("sequence moved from %d to %d: usage is no change", before, cur)
		}
		m := minute.Format(time.RFC3339)
		m1 := minute.Add(time.Minute).Format(time.RFC3339)
		h := minute.Truncate(time.Hour)
		d := minute.Truncate(24 * time.Hour)
		checkRows(t, "minutes", usageRows(t, s, k.ID, keystore.StepMinute, minute, minute.Add(time.Hour)),
			m+" ok 6", m1+" ok 2", m1+" rate_limited 4")
		checkRows(t, "hours", usageRows(t, s, k.ID, keystore.StepHour, d, d.Add(24*time.Hour)),
			h.Format(time.RFC3339)+" ok 8", h.Format(time.RFC3339)+" rate_limited 4", h.Add(2*time.Hour).Format(time.RFC3339)+" ok 10")
		checkRows(t, "days", usageRows(t, s, k.ID, keystore.StepDay, d, d.Add(24*time.Hour)),
			d.Format(time.RFC3339)+" ok 18", d.Format(time.RFC3339)+" rate_limited 4")
		checkRows(t, "a range ending at a step's start leaves it out", usageRows(t, s, k.ID, keystore.StepMinute, minute, minute.Add(time.Minute)),
			m+" ok 6")
		checkRows(t, "another key", usageRows(t, s, "key_0000000000000000000000", keystore.StepDay, d, d.Add(24*time.Hour)))
	})

	t.Run("UsageByKey totals the keys of the range, of one owner or all, busiest first", func(t *testing.T) {
		s := open(t)
		a := fullKey(t, "a", base)
		b := create(t, s, "b", apikey.ExpiryNever, base.Add(time.Second))
		c := create(t, s, "c", apikey.ExpiryNever, base.Add(2*time.Second))
		mustCreate(t, s, a)
		recordUsage(t, s, nil,
			keystore.UsageCount{KeyID: a.ID, Minute: minute, Result: "ok", N: 1},
			keystore.UsageCount{KeyID: a.ID, Minute: minute, Result: "ip_not_allowed", N: 1},
			keystore.UsageCount{KeyID: b.ID, Minute: minute, Result: "ok", N: 5},
			keystore.UsageCount{KeyID: c.ID, Minute: minute.Add(-2 * time.Hour), Result: "ok", N: 9})
		h := minute.Truncate(time.Hour)
		got, err := s.UsageByKey(t.Context(), "", keystore.StepHour, h, h.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := []keystore.KeyTotal{{KeyID: b.ID, OK: 5}, {KeyID: a.ID, OK: 1, Refused: 1}}
		if !slices.Equal(got, want) {
			t.Errorf("UsageByKey(all) = %+v, want %+v", got, want)
		}
		got, err = s.UsageByKey(t.Context(), a.Owner, keystore.StepHour, h.Add(-3*time.Hour), h.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if want := []keystore.KeyTotal{{KeyID: a.ID, OK: 1, Refused: 1}}; !slices.Equal(got, want) {
			t.Errorf("UsageByKey(owner) = %+v, want %+v", got, want)
		}
	})

	t.Run("Prune deletes each step's rows and the events older than kept", func(t *testing.T) {
		s := open(t)
		k := create(t, s, "old", apikey.ExpiryNever, base)
		now := minute.Add(100 * 24 * time.Hour)
		recordUsage(t, s, nil,
			keystore.UsageCount{KeyID: k.ID, Minute: minute, Result: "ok", N: 1},
			keystore.UsageCount{KeyID: k.ID, Minute: now.Add(-time.Hour), Result: "ok", N: 2})
		if err := s.Prune(t.Context(), now, keystore.DefaultRetention); err != nil {
			t.Fatalf("Prune = %v", err)
		}
		all := func(step time.Duration) int {
			return len(usageRows(t, s, k.ID, step, minute.Add(-48*time.Hour), now.Add(48*time.Hour)))
		}
		if m, h, d := all(keystore.StepMinute), all(keystore.StepHour), all(keystore.StepDay); m != 1 || h != 1 || d != 2 {
			t.Errorf("after pruning at 100 days: %d minute, %d hour, %d day rows; want 1, 1, 2", m, h, d)
		}
		if n := len(events(t, s, keystore.AuditFilter{})); n != 1 {
			t.Fatalf("events = %d, want 1", n)
		}
		if err := s.Prune(t.Context(), now, keystore.Retention{Audit: 24 * time.Hour}); err != nil {
			t.Fatal(err)
		}
		if n := len(events(t, s, keystore.AuditFilter{})); n != 0 {
			t.Errorf("events after pruning those older than a day = %d, want 0", n)
		}
	})

	t.Run("Prune rolls minutes up into hours and days; queries answer the same before, during and after, and late counts once", func(t *testing.T) {
		s := open(t)
		a := create(t, s, "a", apikey.ExpiryNever, base)
		b := create(t, s, "b", apikey.ExpiryNever, base.Add(time.Second))
		c := create(t, s, "c", apikey.ExpiryNever, base.Add(2*time.Second))
		h := minute.Truncate(time.Hour)
		d := minute.Truncate(24 * time.Hour)
		write := func(n int64) {
			for _, k := range []apikey.Key{a, b, c} {
				recordUsage(t, s, nil,
					keystore.UsageCount{KeyID: k.ID, Minute: h, Result: "ok", N: n},
					keystore.UsageCount{KeyID: k.ID, Minute: h.Add(59 * time.Minute), Result: "rate_limited", N: n},
					keystore.UsageCount{KeyID: k.ID, Minute: h.Add(time.Hour), Result: "ok", N: 10 * n})
			}
		}
		check := func(when string, n int64) {
			t.Helper()
			hs, h1, ds := h.Format(time.RFC3339), h.Add(time.Hour).Format(time.RFC3339), d.Format(time.RFC3339)
			for _, k := range []apikey.Key{a, b, c} {
				checkRows(t, when+": hours of "+k.Name, usageRows(t, s, k.ID, keystore.StepHour, h, h.Add(2*time.Hour)),
					fmt.Sprintf("%s ok %d", hs, n), fmt.Sprintf("%s rate_limited %d", hs, n), fmt.Sprintf("%s ok %d", h1, 10*n))
				if h.Add(time.Hour).Day() == h.Day() {
					checkRows(t, when+": days of "+k.Name, usageRows(t, s, k.ID, keystore.StepDay, d, d.Add(24*time.Hour)),
						fmt.Sprintf("%s ok %d", ds, 11*n), fmt.Sprintf("%s rate_limited %d", ds, n))
				}
				checkRows(t, when+": minutes of "+k.Name, usageRows(t, s, k.ID, keystore.StepMinute, h, h.Add(2*time.Hour)),
					fmt.Sprintf("%s ok %d", hs, n), fmt.Sprintf("%s rate_limited %d", h.Add(59*time.Minute).Format(time.RFC3339), n),
					fmt.Sprintf("%s ok %d", h1, 10*n))
			}
			got, err := s.UsageByKey(t.Context(), "", keystore.StepHour, h, h.Add(2*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 || got[0].OK != 11*n || got[0].Refused != n {
				t.Errorf("%s: UsageByKey = %+v, want 3 keys with %d ok and %d refused each", when, got, 11*n, n)
			}
		}
		write(1)
		check("before any rollup", 1)
		// Rollups in chunks of one key: several transactions each.
		defer func(n int) { keystore.RollupChunkKeys = n }(keystore.RollupChunkKeys)
		keystore.RollupChunkKeys = 1
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.Prune(ctx, h.Add(3*time.Hour), keystore.DefaultRetention); err == nil {
			t.Error("Prune with an ended context = nil, want its error")
		}
		check("after a rollup that could not run", 1)
		// Stopped after its first chunk (one key), the rollup of the
		// first hour is half done: late counts of that hour go to the
		// hour and day rows for the first key in byte order, to the
		// minute rows only for the others, and every query still adds
		// each count once.
		keystore.RollupChunksPerPrune = 1
		defer func() { keystore.RollupChunksPerPrune = 0 }()
		if err := s.Prune(t.Context(), h.Add(75*time.Minute), keystore.DefaultRetention); err != nil {
			t.Fatalf("Prune = %v", err)
		}
		check("in the middle of a rollup", 1)
		write(1)
		check("after late counts in the middle of a rollup", 2)
		for range 3 {
			if err := s.Prune(t.Context(), h.Add(75*time.Minute), keystore.DefaultRetention); err != nil {
				t.Fatalf("Prune = %v", err)
			}
		}
		keystore.RollupChunksPerPrune = 0
		check("after rolling up the first hour", 2)
		write(-1) // (no count: N <= 0 is left out)
		check("after counts of zero", 2)
		if err := s.Prune(t.Context(), h.Add(3*time.Hour), keystore.DefaultRetention); err != nil {
			t.Fatalf("Prune = %v", err)
		}
		check("after rolling up both hours", 2)
		write(1)
		check("after late counts of rolled minutes", 3)
		if err := s.Prune(t.Context(), h.Add(3*time.Hour), keystore.DefaultRetention); err != nil {
			t.Fatalf("Prune = %v", err)
		}
		check("after a second rollup to the same point", 3)
		// Minutes are deleted after 48 hours, hours and days stay.
		if err := s.Prune(t.Context(), h.Add(50*time.Hour), keystore.DefaultRetention); err != nil {
			t.Fatalf("Prune = %v", err)
		}
		checkRows(t, "minutes after 50 hours", usageRows(t, s, a.ID, keystore.StepMinute, h, h.Add(2*time.Hour)))
		checkRows(t, "hours after 50 hours", usageRows(t, s, a.ID, keystore.StepHour, h, h.Add(2*time.Hour)),
			h.Format(time.RFC3339)+" ok 3", h.Format(time.RFC3339)+" rate_limited 3", h.Add(time.Hour).Format(time.RFC3339)+" ok 30")
	})

	t.Run("concurrent batches add up exactly", func(t *testing.T) {
		s := open(t)
		a := create(t, s, "a", apikey.ExpiryNever, base)
		b := create(t, s, "b", apikey.ExpiryNever, base.Add(time.Second))
		writeConcurrently(t, []keystore.Store{s, s}, a, b)
	})

	if opts.Pair != nil {
		t.Run("two instances on one store record and prune at once, adding up exactly", func(t *testing.T) {
			s1, s2 := opts.Pair(t)
			a := create(t, s1, "a", apikey.ExpiryNever, base)
			b := create(t, s1, "b", apikey.ExpiryNever, base.Add(time.Second))
			writeConcurrently(t, []keystore.Store{s1, s2}, a, b)
		})
	}
}

// writeConcurrently has every store write overlapping batches of a and b
// in opposite orders, and prune, at once, then checks the sums.
func writeConcurrently(t *testing.T, stores []keystore.Store, a, b apikey.Key) {
	t.Helper()
	const rounds = 20
	defer func(n int) { keystore.RollupChunkKeys = n }(keystore.RollupChunkKeys)
	keystore.RollupChunkKeys = 1
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			for r := range rounds {
				counts := []keystore.UsageCount{
					{KeyID: a.ID, Minute: minute.Add(time.Duration(r%3) * time.Minute), Result: "ok", N: 1},
					{KeyID: b.ID, Minute: minute, Result: "owner_mismatch", N: 2},
				}
				if i%2 == 1 {
					slices.Reverse(counts)
				}
				uses := map[string]time.Time{a.ID: base.Add(time.Duration(r) * time.Second), b.ID: base}
				if err := s.RecordUsage(t.Context(), uses, counts); err != nil {
					t.Errorf("RecordUsage = %v", err)
					return
				}
				// Each prune rolls up ten minutes further, in chunks of
				// one key, while the others write: counts land before,
				// during and after the rollup of their minute.
				if err := s.Prune(t.Context(), minute.Add(time.Duration(r)*10*time.Minute), keystore.DefaultRetention); err != nil {
					t.Errorf("Prune = %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	n := int64(len(stores) * rounds)
	d := minute.Truncate(24 * time.Hour)
	got, err := stores[0].UsageByKey(t.Context(), "", keystore.StepDay, d, d.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := []keystore.KeyTotal{{KeyID: b.ID, Refused: 2 * n}, {KeyID: a.ID, OK: n}}
	if !slices.Equal(got, want) {
		t.Errorf("days = %+v, want %+v", got, want)
	}
	var minutes int64
	rows, err := stores[0].Usage(t.Context(), a.ID, keystore.StepMinute, minute, minute.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		minutes += r.N
	}
	if minutes != n {
		t.Errorf("minutes of a add up to %d, want %d", minutes, n)
	}
	h := minute.Truncate(time.Hour)
	got, err = stores[0].UsageByKey(t.Context(), "", keystore.StepHour, h, h.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("hours = %+v, want %+v", got, want)
	}
}

// CheckUsageTotals checks that the requests of key id from from to to add
// up to want at every step (the migration tests of each store use it).
func CheckUsageTotals(t *testing.T, s keystore.Store, id string, from, to time.Time, want int64, when string) {
	t.Helper()
	for _, step := range keystore.Steps {
		rows, err := s.Usage(t.Context(), id, step, from, to)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, r := range rows {
			n += r.N
		}
		if n != want {
			t.Errorf("%s: requests at step %v = %d, want %d (each count once)", when, step, n, want)
		}
	}
}
