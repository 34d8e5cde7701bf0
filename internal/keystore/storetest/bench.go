package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// BenchmarkUsage measures the usage queries of the admin API and the
// console on a store holding, for one key, a year and a month of days
// and a day of minutes of requests (two results each, as a key that is
// sometimes rate limited has), and 1000 other keys used in the last day.
// open must return a fresh, empty store.
func BenchmarkUsage(b *testing.B, open func(b *testing.B) keystore.Store) {
	s := open(b)
	now := time.Date(2031, time.March, 4, 12, 0, 0, 0, time.UTC)
	_, k, err := format.New("busy", apikey.ScopeFull, apikey.ExpiryNever, now.Add(-400*24*time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Create(b.Context(), k, keystore.Audit{}); err != nil {
		b.Fatal(err)
	}
	var counts []keystore.UsageCount
	flush := func() {
		if err := s.RecordUsage(b.Context(), nil, counts); err != nil {
			b.Fatal(err)
		}
		counts = counts[:0]
	}
	// A year and a month of days: one count per day makes one day row,
	// one hour row and one minute row each (rolled up as written).
	for d := 400; d >= 1; d-- {
		at := now.Add(-time.Duration(d) * 24 * time.Hour)
		counts = append(counts, keystore.UsageCount{KeyID: k.ID, Minute: at, Result: "ok", N: 1000},
			keystore.UsageCount{KeyID: k.ID, Minute: at, Result: "rate_limited", N: 10})
	}
	flush()
	// A day of minutes.
	for m := 24 * 60; m >= 1; m-- {
		at := now.Add(-time.Duration(m) * time.Minute)
		counts = append(counts, keystore.UsageCount{KeyID: k.ID, Minute: at, Result: "ok", N: 5},
			keystore.UsageCount{KeyID: k.ID, Minute: at, Result: "rate_limited", N: 1})
		if len(counts) >= 1000 {
			flush()
		}
	}
	flush()
	for i := range 1000 {
		counts = append(counts, keystore.UsageCount{KeyID: fmt.Sprintf("key_other%017d", i), Minute: now.Add(-time.Duration(i) * time.Minute), Result: "ok", N: 3})
	}
	flush()

	day := keystore.StepStart(now, keystore.StepDay)
	for _, q := range []struct {
		name     string
		step     time.Duration
		from, to time.Time
		want     int
	}{
		{"400 days by day", keystore.StepDay, day.Add(-400 * 24 * time.Hour), day.Add(24 * time.Hour), 802},
		{"24 hours by hour", keystore.StepHour, now.Add(-24 * time.Hour), now.Add(time.Hour), 48},
		{"1000 minutes by minute", keystore.StepMinute, now.Add(-1000 * time.Minute), now.Add(time.Minute), 2000},
	} {
		b.Run("Usage/"+q.name, func(b *testing.B) {
			for b.Loop() {
				rows, err := s.Usage(b.Context(), k.ID, q.step, q.from, q.to)
				if err != nil {
					b.Fatal(err)
				}
				if len(rows) < q.want {
					b.Fatalf("%d rows, want at least %d", len(rows), q.want)
				}
			}
		})
	}
	b.Run("UsageByKey/1001 keys, 24 hours by hour", func(b *testing.B) {
		for b.Loop() {
			totals, err := s.UsageByKey(b.Context(), "", keystore.StepHour, now.Add(-24*time.Hour), now.Add(time.Hour))
			if err != nil {
				b.Fatal(err)
			}
			if len(totals) != 1001 {
				b.Fatalf("%d keys, want 1001", len(totals))
			}
		}
	})
}
