package lastused

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/docana/keygate/internal/metrics"
)

func TestATickWithFewKeysPendingWritesEverything(t *testing.T) {
	w := &scriptedWriter{}
	r, _ := newRecorder(t, w, Config{Now: func() time.Time { return t0.Add(30 * time.Second) }})
	r.Use("a", t0.Add(10*time.Second), ResultOK)
	r.Use("a", t0.Add(20*time.Second), ResultOK)
	if err := r.tick(); err != nil {
		t.Fatal(err)
	}
	if len(w.batches) != 1 || !w.batches[0]["a"].Equal(t0.Add(20*time.Second)) {
		t.Fatalf("tick wrote uses %v, want a at 12:00:20", w.batches)
	}
	if got, want := countLines(w.counts[0]), []string{"a 12:00 ok 2"}; !slices.Equal(got, want) {
		t.Errorf("tick wrote counts %q, want the current minute's %q", got, want)
	}
}

// holdingRecorder returns a recorder whose ticks hold back as if many
// keys were pending, with a recent window of 10 s, at the time *clock.
func holdingRecorder(t *testing.T, w Writer, clock *time.Time) (*Recorder, *metrics.Metrics) {
	t.Helper()
	r, m := newRecorder(t, w, Config{Now: func() time.Time { return *clock }})
	r.holdBackAbove = 0
	r.recentWindow = 10 * time.Second
	return r, m
}

func TestATickHoldsBackTheCurrentMinuteAndCloseWritesIt(t *testing.T) {
	w := &scriptedWriter{}
	clock := t0.Add(30 * time.Second)
	r, m := holdingRecorder(t, w, &clock)
	r.Use("a", t0.Add(10*time.Second), ResultOK)
	r.Use("a", t0.Add(20*time.Second), ResultOK)
	r.Use("b", t0.Add(5*time.Second), 1) // insufficient_scope

	// 12:00 is current: a's first use of it is written, no count is.
	if err := r.tick(); err != nil {
		t.Fatal(err)
	}
	if len(w.batches) != 1 || len(w.batches[0]) != 1 || !w.batches[0]["a"].Equal(t0.Add(20*time.Second)) || len(w.counts[0]) != 0 {
		t.Fatalf("first tick wrote uses %v and counts %v, want a's use at 12:00:20 and no count", w.batches, w.counts)
	}
	if got, want := countLines(r.PendingCounts("")), []string{"a 12:00 ok 2", "b 12:00 insufficient_scope 1"}; !slices.Equal(got, want) {
		t.Errorf("pending counts = %q, want %q (held, still visible)", got, want)
	}

	// A further use of 12:00 waits for the minute's end, visible meanwhile.
	r.Use("a", t0.Add(40*time.Second), ResultOK)
	if err := r.tick(); err != nil {
		t.Fatal(err)
	}
	if len(w.batches) != 1 {
		t.Fatalf("second tick in 12:00 wrote %v, want nothing", w.batches[1:])
	}
	if at, ok := r.Pending("a"); !ok || !at.Equal(t0.Add(40*time.Second)) {
		t.Errorf("Pending(a) = %v, %v; want 12:00:40, true", at, ok)
	}
	if got := pendingGauge(m); got != 1 {
		t.Errorf("pending gauge = %d, want 1 (a)", got)
	}

	// 12:01: the counts of 12:00 go, and a's latest use, as the last one
	// written (12:00:20) is more than the window (10 s) older than 12:01;
	// 12:01's counts stay.
	r.Use("a", t0.Add(70*time.Second), ResultOK)
	clock = t0.Add(75 * time.Second)
	if err := r.tick(); err != nil {
		t.Fatal(err)
	}
	if got := w.batches[1]; len(got) != 1 || !got["a"].Equal(t0.Add(70*time.Second)) {
		t.Errorf("tick in 12:01 wrote uses %v, want a at 12:01:10", got)
	}
	if got, want := countLines(w.counts[1]), []string{"a 12:00 ok 3", "b 12:00 insufficient_scope 1"}; !slices.Equal(got, want) {
		t.Errorf("tick in 12:01 wrote counts %q, want %q", got, want)
	}

	// Close writes what is held back.
	if err := r.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := countLines(w.counts[len(w.counts)-1]), []string{"a 12:01 ok 1"}; !slices.Equal(got, want) {
		t.Errorf("Close wrote counts %q, want %q", got, want)
	}
	if got := pendingGauge(m); got != 0 || r.pendingCounts.Load() != 0 {
		t.Errorf("after Close: pending gauge %d, pending count rows %d; want 0 and 0", got, r.pendingCounts.Load())
	}
}

func TestALargeBatchIsWrittenInChunksAndAFailedChunkIsKept(t *testing.T) {
	w := &scriptedWriter{}
	w.during = func() {
		w.mu.Lock()
		if len(w.batches) == 1 {
			w.fail = 1 // the second chunk fails
		}
		w.mu.Unlock()
	}
	r, m := newRecorder(t, w, Config{})
	n := ChunkKeys + 5
	for i := range n {
		r.Use(fmt.Sprintf("key%05d", i), t0, ResultOK)
	}
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("Flush = nil, want the second chunk's error")
	}
	if len(w.batches) != 2 || len(w.batches[0]) != ChunkKeys || len(w.batches[1]) != 5 {
		t.Fatalf("writes of %d chunks, want 2 of %d and 5 keys", len(w.batches), ChunkKeys)
	}
	for id := range w.batches[0] {
		if len(w.counts[0]) != ChunkKeys {
			t.Fatalf("first chunk: %d count rows for %d keys", len(w.counts[0]), ChunkKeys)
		}
		if _, ok := r.Pending(id); ok {
			t.Fatalf("%s, written in the first chunk, is still pending", id)
		}
		break
	}
	if got := pendingGauge(m); got != 5 || r.pendingCounts.Load() != 5 {
		t.Errorf("after the failure: pending gauge %d, pending count rows %d; want 5 and 5 (the failed chunk)", got, r.pendingCounts.Load())
	}
	if got := len(r.PendingCounts("")); got != 5 {
		t.Errorf("PendingCounts has %d rows, want the failed chunk's 5", got)
	}
	w.during = nil
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := w.last(); len(got) != 5 {
		t.Errorf("the retry wrote %d keys, want the failed chunk's 5", len(got))
	}
	for id := range w.batches[1] {
		if _, ok := w.last()[id]; !ok {
			t.Errorf("%s of the failed chunk was not written again", id)
		}
	}
	if got := pendingGauge(m); got != 0 {
		t.Errorf("pending gauge = %d after the retry, want 0", got)
	}
}

func TestAKeyWrittenAtTheEndOfAMinuteWaitsForTheEndOfTheNext(t *testing.T) {
	w := &scriptedWriter{}
	clock := t0.Add(65 * time.Second)
	r, _ := holdingRecorder(t, w, &clock)
	r.Use("a", t0.Add(55*time.Second), ResultOK) // 12:00:55
	r.Use("b", t0.Add(45*time.Second), ResultOK) // 12:00:45

	// 12:01:05: 12:00 has ended, both last uses are written.
	if err := r.tick(); err != nil {
		t.Fatal(err)
	}
	if len(w.batches) != 1 || len(w.batches[0]) != 2 {
		t.Fatalf("tick at 12:01:05 wrote %v, want a and b", w.batches)
	}

	// 12:01:15: a's use of 12:01 waits, its last use written (12:00:55)
	// being within 10 s of 12:01; b's (12:00:45) is not, so b's goes.
	r.Use("a", t0.Add(70*time.Second), ResultOK)
	r.Use("b", t0.Add(71*time.Second), ResultOK)
	clock = t0.Add(75 * time.Second)
	if err := r.tick(); err != nil {
		t.Fatal(err)
	}
	if len(w.batches) != 2 || len(w.batches[1]) != 1 || !w.batches[1]["b"].Equal(t0.Add(71*time.Second)) {
		t.Fatalf("tick at 12:01:15 wrote %v, want b's use at 12:01:11 only", w.batches[1:])
	}
	if at, ok := r.Pending("a"); !ok || !at.Equal(t0.Add(70*time.Second)) {
		t.Errorf("Pending(a) = %v, %v; want 12:01:10, true (held, still visible)", at, ok)
	}

	// 12:02:05: 12:01 has ended: a's use of it is written.
	clock = t0.Add(125 * time.Second)
	if err := r.tick(); err != nil {
		t.Fatal(err)
	}
	if len(w.batches) != 3 || !w.batches[2]["a"].Equal(t0.Add(70*time.Second)) {
		t.Fatalf("tick at 12:02:05 wrote %v, want a's use at 12:01:10", w.batches[2:])
	}
}
