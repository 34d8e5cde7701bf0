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
	// A year and a month of days: one count per day makes one minute
	// row, and one hour and one day row once rolled up (below).
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
		_, other, err := format.New(fmt.Sprintf("other %d", i), apikey.ScopeFull, apikey.ExpiryNever, now.Add(-48*time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Create(b.Context(), other, keystore.Audit{}); err != nil {
			b.Fatal(err)
		}
		counts = append(counts, keystore.UsageCount{KeyID: other.ID, Minute: now.Add(-time.Duration(i) * time.Minute), Result: "ok", N: 3})
	}
	flush()
	// As the instances keep it: rolled up to ten minutes ago, minutes
	// older than 48 hours and hours older than 90 days deleted (days
	// kept here beyond the default 400, so that all 400 are read).
	keep := keystore.DefaultRetention
	keep.Day = 401 * 24 * time.Hour
	if err := s.Prune(b.Context(), now, keep); err != nil {
		b.Fatal(err)
	}

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

// BenchmarkRollup measures what rolling usage up costs the instances:
// keys keys each used in every minute of ten (one minute row each, as a
// busy gateway writes them), then one Prune rolls those ten minutes into
// the hour and day rows, as every ten minutes. It reports the time per
// key-minute rolled. open must return a fresh, empty store.
func BenchmarkRollup(b *testing.B, open func(b *testing.B) keystore.Store, keys int) {
	s := open(b)
	start := time.Date(2031, time.March, 4, 12, 0, 0, 0, time.UTC)
	ids := make([]string, keys)
	for i := range ids {
		_, k, err := format.New(fmt.Sprintf("rolled %d", i), apikey.ScopeFull, apikey.ExpiryNever, start)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Create(b.Context(), k, keystore.Audit{}); err != nil {
			b.Fatal(err)
		}
		ids[i] = k.ID
	}
	var at time.Time
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		at = start.Add(time.Duration(i) * 10 * time.Minute)
		for m := range 10 {
			counts := make([]keystore.UsageCount, 0, keys)
			for _, id := range ids {
				counts = append(counts, keystore.UsageCount{KeyID: id, Minute: at.Add(time.Duration(m) * time.Minute), Result: "ok", N: 5})
			}
			if err := s.RecordUsage(b.Context(), nil, counts); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := s.Prune(b.Context(), at.Add(12*time.Minute), keystore.DefaultRetention); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	rows, err := s.Usage(b.Context(), ids[0], keystore.StepDay, start.Truncate(24*time.Hour), at.Add(24*time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, r := range rows {
		n += r.N
	}
	if want := int64(b.N) * 10 * 5; n != want {
		b.Fatalf("a key's days add up to %d requests, want %d", n, want)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*keys*10), "ns/key-minute")
}
