package lastused

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/sqlite"
	"github.com/docana/keygate/internal/metrics"
)

// openStore opens a fresh SQLite store holding n keys and returns it and
// their IDs.
func openStore(t testing.TB, n int) (*sqlite.Store, []string) {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatalf("opening the SQLite store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	f, err := apikey.NewFormat("dk")
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		_, k, err := f.New(fmt.Sprintf("key %d", i), apikey.ScopeFull, apikey.ExpiryNever, t0.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Create(ctx, k, keystore.Audit{}); err != nil {
			t.Fatalf("Create: %v", err)
		}
		ids[i] = k.ID
	}
	return s, ids
}

func storedLastUse(t *testing.T, s *sqlite.Store, id string) time.Time {
	t.Helper()
	k, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return k.LastUsedAt
}

func TestNotesSurviveClose(t *testing.T) {
	store, ids := openStore(t, 3)
	m := metrics.New()
	r := New(store, Config{Interval: time.Hour, Metrics: m})
	for i, id := range ids {
		r.Note(id, t0.Add(time.Duration(i)*time.Second))
	}
	if err := r.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, id := range ids {
		if got, want := storedLastUse(t, store, id), t0.Add(time.Duration(i)*time.Second); !got.Equal(want) {
			t.Errorf("key %d: stored last use %v, want %v", i, got, want)
		}
	}
	if got := writes(m, metrics.WriteOK); got != 1 {
		t.Errorf("writes: got %d, want 1 (one batch)", got)
	}
	if got := pendingGauge(m); got != 0 {
		t.Errorf("pending gauge: got %d, want 0", got)
	}
}

func TestTheFlusherWritesEveryInterval(t *testing.T) {
	store, ids := openStore(t, 1)
	r, m := newRecorder(t, store, Config{Interval: 10 * time.Millisecond})
	r.Note(ids[0], t0)
	// Wait for the flusher (the outcome is checked, not the time taken).
	deadline := time.Now().Add(30 * time.Second)
	for writes(m, metrics.WriteOK) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no flush within 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := storedLastUse(t, store, ids[0]); !got.Equal(t0) {
		t.Errorf("stored last use: got %v, want %v", got, t0)
	}
	if _, ok := r.Pending(ids[0]); ok {
		t.Error("Pending after the flush: got true, want false")
	}
}

// A write never moves a stored last use backwards, even when the pending
// time is older than the stored one (another instance wrote a later use).
func TestAnOlderPendingUseDoesNotMoveTheStoredOneBack(t *testing.T) {
	store, ids := openStore(t, 1)
	r, _ := newRecorder(t, store, Config{})
	ctx := context.Background()
	r.Note(ids[0], t0.Add(time.Minute))
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	r.Note(ids[0], t0)
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got, want := storedLastUse(t, store, ids[0]), t0.Add(time.Minute); !got.Equal(want) {
		t.Errorf("stored last use: got %v, want %v", got, want)
	}
}

// With the store closed (down), uses stay pending and the failed writes are
// counted; nothing is lost.
func TestUsesStayPendingWhileTheStoreIsDown(t *testing.T) {
	store, ids := openStore(t, 1)
	r, m := newRecorder(t, store, Config{})
	r.Note(ids[0], t0)
	store.Close()
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("Flush to a closed store: got nil, want an error")
	}
	if got, ok := r.Pending(ids[0]); !ok || !got.Equal(t0) {
		t.Errorf("Pending: got (%v, %v), want (%v, true)", got, ok, t0)
	}
	if got := writes(m, metrics.WriteError); got != 1 {
		t.Errorf("failed writes: got %d, want 1", got)
	}
	if got := testutil.ToFloat64(m.StoreErrors.WithLabelValues(metrics.OpTouch)); got != 1 {
		t.Errorf("store errors{op=touch}: got %v, want 1", got)
	}
	if got := pendingGauge(m); got != 1 {
		t.Errorf("pending gauge: got %d, want 1", got)
	}
}

// Many goroutines note uses of many keys while flushes run; every key ends
// with the latest time noted for it, in the store.
func TestConcurrentNotesAndFlushesKeepTheLatestUse(t *testing.T) {
	const keys, workers, notes = 40, 4, 2000
	store, ids := openStore(t, keys)
	r, _ := newRecorder(t, store, Config{Interval: time.Millisecond})
	var wg sync.WaitGroup
	latest := make([][]time.Time, workers) // per worker, per key
	for w := range workers {
		latest[w] = make([]time.Time, keys)
		wg.Go(func() {
			for i := range notes {
				k := (i*13 + w) % keys
				// Times go up and down: a late older time must not win.
				at := t0.Add(time.Duration((i*7919+w*31)%5000) * time.Microsecond)
				r.Note(ids[k], at)
				if at.After(latest[w][k]) {
					latest[w][k] = at
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if err := r.Flush(context.Background()); err != nil {
				t.Errorf("Flush: %v", err)
			}
		}
	})
	wg.Wait()
	if err := r.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for k, id := range ids {
		var want time.Time
		for w := range workers {
			if latest[w][k].After(want) {
				want = latest[w][k]
			}
		}
		if got := storedLastUse(t, store, id); !got.Equal(want) {
			t.Errorf("key %d: stored %v, want %v", k, got, want)
		}
	}
}

func TestCloseLeavesNoGoroutine(t *testing.T) {
	store, _ := openStore(t, 0)
	before := runtime.NumGoroutine()
	r := New(store, Config{Interval: time.Millisecond})
	time.Sleep(5 * time.Millisecond) // let a few flushes run
	if err := r.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before New, %d after Close", before, runtime.NumGoroutine())
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkNote notes a use of a pending key, as every request after a
// key's first in an interval does.
func BenchmarkNote(b *testing.B) {
	store, ids := openStore(b, 1)
	r := New(store, Config{Interval: time.Hour})
	b.Cleanup(func() { r.Close(context.Background()) })
	at := t0
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(time.Nanosecond)
		r.Note(ids[0], at)
	}
}

// BenchmarkNoteParallel notes uses from every core, of one hot key and of
// 1024 keys spread over the shards.
func BenchmarkNoteParallel(b *testing.B) {
	for _, n := range []int{1, 1024} {
		b.Run(fmt.Sprintf("%d_keys", n), func(b *testing.B) {
			store, ids := openStore(b, n)
			r := New(store, Config{Interval: time.Hour})
			b.Cleanup(func() { r.Close(context.Background()) })
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					r.Note(ids[i%n], time.Now())
					i++
				}
			})
		})
	}
}

func TestUsageCountsSurviveCloseInTheBatchOfLastUses(t *testing.T) {
	store, ids := openStore(t, 2)
	m := metrics.New()
	r := New(store, Config{Interval: time.Hour, Metrics: m})
	for i := range 5 {
		r.Use(ids[0], t0.Add(time.Duration(i)*time.Second), ResultOK)
	}
	r.Use(ids[1], t0, 3) // ip_not_allowed
	if err := r.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := writes(m, metrics.WriteOK); got != 1 {
		t.Errorf("writes = %d, want 1: counts go in the batch of the last uses", got)
	}
	if got, want := storedLastUse(t, store, ids[0]), t0.Add(4*time.Second); !got.Equal(want) {
		t.Errorf("last use = %v, want %v", got, want)
	}
	for _, c := range []struct {
		id     string
		result string
		n      int64
	}{{ids[0], "ok", 5}, {ids[1], "ip_not_allowed", 1}} {
		rows, err := store.Usage(context.Background(), c.id, time.Minute, t0, t0.Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].Result != c.result || rows[0].N != c.n {
			t.Errorf("usage of %s = %+v, want %d %s", c.id, rows, c.n, c.result)
		}
	}
}

// BenchmarkUse counts an admitted request of a pending key and minute, as
// the handler does on every request after the first of a minute.
func BenchmarkUse(b *testing.B) {
	store, ids := openStore(b, 1)
	r := New(store, Config{Interval: time.Hour})
	b.Cleanup(func() { r.Close(context.Background()) })
	at := t0
	b.ReportAllocs()
	for b.Loop() {
		at = at.Add(time.Nanosecond)
		r.Use(ids[0], at, ResultOK)
	}
}

// BenchmarkUseParallel is BenchmarkUse from every core, of one hot key,
// of 1024 keys spread over the shards, and of 100,000 keys round-robin, as
// under the load benchmark's cached100k: more records than the CPU's
// caches hold (their IDs need not be keys: nothing is written).
func BenchmarkUseParallel(b *testing.B) {
	for _, n := range []int{1, 1024, 100_000} {
		b.Run(fmt.Sprintf("%d_keys", n), func(b *testing.B) {
			store, ids := openStore(b, min(n, 1024))
			for i := len(ids); i < n; i++ {
				ids = append(ids, fmt.Sprintf("key_%022d", i))
			}
			r := New(store, Config{Interval: time.Hour})
			b.Cleanup(func() { r.Close(context.Background()) })
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					r.Use(ids[i%n], time.Now(), ResultOK)
					i++
				}
			})
		})
	}
}
