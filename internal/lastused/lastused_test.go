package lastused

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/metrics"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// scriptedWriter is an in-test Writer for what the real stores cannot be
// made to do on cue: fail a given number of times, or run a hook while a
// write is in progress. It records the batches it was given.
type scriptedWriter struct {
	mu      sync.Mutex
	fail    int // the next fail writes fail
	during  func()
	batches []map[string]time.Time
	counts  [][]keystore.UsageCount
}

func (w *scriptedWriter) RecordUsage(ctx context.Context, uses map[string]time.Time, counts []keystore.UsageCount) error {
	w.mu.Lock()
	during := w.during
	w.mu.Unlock()
	if during != nil {
		during()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.batches = append(w.batches, uses)
	w.counts = append(w.counts, counts)
	if w.fail > 0 {
		w.fail--
		return errors.New("database is locked")
	}
	return nil
}

func (w *scriptedWriter) last() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.batches) == 0 {
		return nil
	}
	return w.batches[len(w.batches)-1]
}

// newRecorder returns a recorder that flushes only when told (its
// interval is an hour), closed when the test ends.
func newRecorder(t *testing.T, w Writer, cfg Config) (*Recorder, *metrics.Metrics) {
	t.Helper()
	if cfg.Interval == 0 {
		cfg.Interval = time.Hour
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	r := New(w, cfg)
	t.Cleanup(func() { r.Close(context.Background()) })
	return r, cfg.Metrics
}

func pendingGauge(m *metrics.Metrics) int { return int(testutil.ToFloat64(m.LastUsedPending)) }

func writes(m *metrics.Metrics, result string) int {
	return int(testutil.ToFloat64(m.LastUsedWrites.WithLabelValues(result)))
}

func TestNoteKeepsTheLatestTimeAndNeverMovesBackwards(t *testing.T) {
	tests := []struct {
		name  string
		notes []time.Duration // offsets from t0
		want  time.Duration
	}{
		{"one", []time.Duration{5}, 5},
		{"increasing", []time.Duration{1, 2, 3}, 3},
		{"decreasing", []time.Duration{3, 2, 1}, 3},
		{"equal", []time.Duration{time.Second, time.Second}, time.Second},
		{"nanoseconds apart", []time.Duration{7, 8, 6}, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRecorder(t, &scriptedWriter{}, Config{})
			for _, d := range tt.notes {
				r.Note("key_a", t0.Add(d))
			}
			got, ok := r.Pending("key_a")
			if want := t0.Add(tt.want); !ok || !got.Equal(want) {
				t.Errorf("Pending: got (%v, %v), want (%v, true)", got, ok, want)
			}
		})
	}
}

func TestPendingOfAnUnknownKeyIsFalse(t *testing.T) {
	r, _ := newRecorder(t, &scriptedWriter{}, Config{})
	r.Note("key_a", t0)
	if got, ok := r.Pending("key_b"); ok {
		t.Errorf("Pending(key_b): got (%v, true), want false", got)
	}
}

func TestPendingIsUTC(t *testing.T) {
	r, _ := newRecorder(t, &scriptedWriter{}, Config{})
	r.Note("key_a", t0.In(time.FixedZone("CET", 3600)))
	if got, _ := r.Pending("key_a"); got.Location() != time.UTC || !got.Equal(t0) {
		t.Errorf("Pending: got %v, want %v in UTC", got, t0)
	}
}

// The writer fails twice on cue, which a real store does not do on demand.
func TestAFailedWriteIsKeptMergedAndRetried(t *testing.T) {
	w := &scriptedWriter{fail: 2}
	r, m := newRecorder(t, w, Config{})
	ctx := context.Background()

	r.Note("key_a", t0.Add(2*time.Second))
	if err := r.Flush(ctx); err == nil {
		t.Fatal("first Flush: got nil, want the writer's error")
	}
	if got, ok := r.Pending("key_a"); !ok || !got.Equal(t0.Add(2*time.Second)) {
		t.Errorf("Pending after a failed write: got (%v, %v), want (%v, true)", got, ok, t0.Add(2*time.Second))
	}
	r.Note("key_a", t0.Add(time.Second)) // older: ignored
	r.Note("key_b", t0)
	if err := r.Flush(ctx); err == nil {
		t.Fatal("second Flush: got nil, want the writer's error")
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("third Flush: %v", err)
	}
	want := map[string]time.Time{"key_a": t0.Add(2 * time.Second), "key_b": t0}
	if got := w.last(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("written: got %v, want %v", got, want)
	}
	for _, id := range []string{"key_a", "key_b"} {
		if _, ok := r.Pending(id); ok {
			t.Errorf("Pending(%s) after a successful write: got true, want false", id)
		}
	}
	if got := writes(m, metrics.WriteError); got != 2 {
		t.Errorf("failed writes: got %d, want 2", got)
	}
	if got := writes(m, metrics.WriteOK); got != 1 {
		t.Errorf("successful writes: got %d, want 1", got)
	}
	if got := pendingGauge(m); got != 0 {
		t.Errorf("pending gauge: got %d, want 0", got)
	}
}

// The writer runs a hook during the write, which is the only way to act
// while a batch is in flight.
func TestUsesNotedDuringAFailedWriteMergeWithItLatestWins(t *testing.T) {
	w := &scriptedWriter{fail: 1}
	r, m := newRecorder(t, w, Config{})
	w.during = func() {
		if got, ok := r.Pending("key_a"); !ok || !got.Equal(t0) {
			t.Errorf("Pending during the write: got (%v, %v), want (%v, true)", got, ok, t0)
		}
		r.Note("key_a", t0.Add(time.Minute)) // newer than the batch's
		r.Note("key_b", t0.Add(time.Minute)) // older than the batch's
		r.Note("key_c", t0)                  // new
	}
	r.Note("key_a", t0)
	r.Note("key_b", t0.Add(time.Hour))
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("Flush: got nil, want the writer's error")
	}
	w.during = nil
	tests := []struct {
		id   string
		want time.Time
	}{
		{"key_a", t0.Add(time.Minute)},
		{"key_b", t0.Add(time.Hour)},
		{"key_c", t0},
	}
	for _, tt := range tests {
		if got, ok := r.Pending(tt.id); !ok || !got.Equal(tt.want) {
			t.Errorf("Pending(%s): got (%v, %v), want (%v, true)", tt.id, got, ok, tt.want)
		}
	}
	if got := pendingGauge(m); got != 3 {
		t.Errorf("pending gauge: got %d, want 3", got)
	}
}

// The writer's hook notes a key while the batch is in flight.
func TestMaxPendingCountsTheBatchInFlightAndDropsNewKeys(t *testing.T) {
	w := &scriptedWriter{fail: 1}
	r, m := newRecorder(t, w, Config{MaxPending: 2})
	r.Note("key_a", t0)
	r.Note("key_b", t0)
	r.Note("key_c", t0) // over the bound
	r.Note("key_a", t0.Add(time.Second))
	if _, ok := r.Pending("key_c"); ok {
		t.Error("Pending(key_c): got true, want false (dropped)")
	}
	w.during = func() { r.Note("key_d", t0) } // a and b are still pending
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("Flush: got nil, want the writer's error")
	}
	if _, ok := r.Pending("key_d"); ok {
		t.Error("Pending(key_d): got true, want false (dropped while the batch was in flight)")
	}
	if got, ok := r.Pending("key_a"); !ok || !got.Equal(t0.Add(time.Second)) {
		t.Errorf("Pending(key_a): got (%v, %v), want (%v, true)", got, ok, t0.Add(time.Second))
	}
	if got := pendingGauge(m); got != 2 {
		t.Errorf("pending gauge: got %d, want 2", got)
	}
	w.during = nil
	if err := r.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	r.Note("key_c", t0) // room again
	if _, ok := r.Pending("key_c"); !ok {
		t.Error("Pending(key_c) after a write made room: got false, want true")
	}
}

func TestNoteAllocatesNothingForAKeyPendingOrSeenBefore(t *testing.T) {
	r, _ := newRecorder(t, &scriptedWriter{}, Config{})
	id := "key_0123456789abcdefghijkl"
	r.Note(id, t0)
	at := t0
	if n := testing.AllocsPerRun(1000, func() { at = at.Add(time.Nanosecond); r.Note(id, at) }); n != 0 {
		t.Errorf("Note of a pending key: got %v allocs, want 0", n)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		at = at.Add(time.Nanosecond)
		r.Note(id, at)
		forget(r, id) // as a flush does
		r.pending.Add(-1)
		r.gauge.Dec()
	}); n != 0 {
		t.Errorf("Note of a key seen before a flush: got %v allocs, want 0", n)
	}
}

// forget takes key id's record out of the pending set for reuse, as a
// flush does once it wrote what the record held.
func forget(r *Recorder, id string) {
	s := r.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.keys[id]; p != nil {
		delete(s.keys, id)
		*p = pendingKey{}
		s.spare = append(s.spare, p)
	}
}

func TestCloseIsIdempotentAndFlushesEachTime(t *testing.T) {
	w := &scriptedWriter{}
	r := New(w, Config{Interval: time.Hour})
	ctx := context.Background()
	r.Note("key_a", t0)
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	r.Note("key_b", t0)
	if err := r.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := len(w.batches); got != 2 {
		t.Errorf("batches written: got %d, want 2", got)
	}
}

// A store that fails for a moment at shutdown or reload (disk full, a
// failover) must not cost the last-used times noted since the last flush:
// Close retries until its context ends.
func TestCloseRetriesAFailingWrite(t *testing.T) {
	w := &scriptedWriter{fail: 2}
	m := metrics.New()
	r := New(w, Config{Interval: time.Hour, Metrics: m})
	r.Note("key_a", t0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := w.last(); !got["key_a"].Equal(t0) {
		t.Errorf("last batch written: %v, want key_a at %v", got, t0)
	}
	if got := len(w.batches); got != 3 {
		t.Errorf("writes: got %d, want 3 (two failed, one written)", got)
	}
	if got := pendingGauge(m); got != 0 {
		t.Errorf("pending gauge: got %d, want 0", got)
	}
}

// When Close gives up, the uses it could not write are gone with the
// recorder: the pending gauge, which every recorder of the process shares,
// must not count them forever.
func TestCloseGivingUpTakesItsUsesOffThePendingGauge(t *testing.T) {
	tests := []struct {
		name string
		err  error // what every write fails with
	}{
		{"store unavailable", errors.New("database or disk is full")},
		{"store closed", keystore.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			other := New(&scriptedWriter{}, Config{Interval: time.Hour, Metrics: m})
			defer other.Close(context.Background())
			other.Note("key_other", t0)

			r := New(failingWriter{tt.err}, Config{Interval: time.Hour, Metrics: m})
			r.Note("key_a", t0)
			r.Note("key_b", t0)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if err := r.Close(ctx); !errors.Is(err, tt.err) {
				t.Fatalf("Close: got %v, want %v", err, tt.err)
			}
			if got := pendingGauge(m); got != 1 {
				t.Errorf("pending gauge: got %d, want 1 (the other recorder's key)", got)
			}
		})
	}
}

// failingWriter fails every write with err.
type failingWriter struct{ err error }

func (w failingWriter) RecordUsage(context.Context, map[string]time.Time, []keystore.UsageCount) error {
	return w.err
}
