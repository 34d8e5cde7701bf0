package lastused

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// countLines describes counts as sorted "key minute result n" lines, each
// (key, minute, result) summed.
func countLines(counts []keystore.UsageCount) []string {
	sum := map[string]int64{}
	for _, c := range counts {
		sum[fmt.Sprintf("%s %s %s", c.KeyID, c.Minute.Format("15:04"), c.Result)] += c.N
	}
	var out []string
	for k, n := range sum {
		out = append(out, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(out)
	return out
}

func TestUseCountsByKeyMinuteAndResultAndNotesOnlyAdmittedUses(t *testing.T) {
	w := &scriptedWriter{}
	r, _ := newRecorder(t, w, Config{})
	r.Use("a", t0, ResultOK)
	r.Use("a", t0.Add(30*time.Second), ResultOK)
	r.Use("a", t0.Add(time.Minute), 5) // rate_limited
	r.Use("b", t0.Add(2*time.Minute), 6)
	want := []string{"a 12:00 ok 2", "a 12:01 rate_limited 1", "b 12:02 api_key_revoked 1"}
	if got := countLines(r.PendingCounts("")); !slices.Equal(got, want) {
		t.Errorf("PendingCounts(\"\") = %q, want %q", got, want)
	}
	if got := countLines(r.PendingCounts("b")); !slices.Equal(got, want[2:]) {
		t.Errorf("PendingCounts(b) = %q, want %q", got, want[2:])
	}
	if _, ok := r.Pending("b"); ok {
		t.Error("a refused request noted a last use")
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := countLines(w.counts[0]); !slices.Equal(got, want) {
		t.Errorf("written counts = %q, want %q", got, want)
	}
	if got := w.batches[0]; len(got) != 1 || !got["a"].Equal(t0.Add(30*time.Second)) {
		t.Errorf("written uses = %v, want a's latest admitted use, in the same batch", got)
	}
	if got := r.PendingCounts(""); len(got) != 0 {
		t.Errorf("PendingCounts after the write = %v, want none", got)
	}
}

func TestAFailedWriteKeepsCountsAndAddsThoseNotedMeanwhile(t *testing.T) {
	w := &scriptedWriter{fail: 1}
	r, _ := newRecorder(t, w, Config{})
	r.Use("a", t0, ResultOK)
	w.during = func() { r.Use("a", t0, ResultOK) } // noted while the write fails
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("Flush = nil, want the write's error")
	}
	w.during = nil
	if got, want := countLines(r.PendingCounts("a")), []string{"a 12:00 ok 2"}; !slices.Equal(got, want) {
		t.Errorf("pending after the failure = %q, want %q", got, want)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := countLines(w.counts[len(w.counts)-1]), []string{"a 12:00 ok 2"}; !slices.Equal(got, want) {
		t.Errorf("written = %q, want %q", got, want)
	}
	if n := r.pendingCounts.Load(); n != 0 {
		t.Errorf("pending count rows = %d, want 0", n)
	}
}

func TestARequestFinishingInTheNextMinuteCountsInItsOwnAndRowsAreWrittenOnce(t *testing.T) {
	w := &scriptedWriter{fail: 1}
	r, _ := newRecorder(t, w, Config{})
	r.Use("a", t0, ResultOK)
	r.Use("a", t0.Add(time.Minute), ResultOK)
	r.Use("a", t0.Add(59*time.Second), 1) // began at 12:00:59, done after 12:01's first
	if err := r.Flush(context.Background()); err == nil {
		t.Fatal("Flush = nil, want the write's error")
	}
	// The rows put back meet new counts of both minutes.
	r.Use("a", t0.Add(time.Minute+time.Second), ResultOK)
	r.Use("a", t0.Add(10*time.Second), ResultOK)
	want := []string{"a 12:00 insufficient_scope 1", "a 12:00 ok 2", "a 12:01 ok 2"}
	if got := countLines(r.PendingCounts("a")); !slices.Equal(got, want) {
		t.Errorf("pending = %q, want %q", got, want)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	written := w.counts[len(w.counts)-1]
	if got := countLines(written); !slices.Equal(got, want) || len(written) != len(want) {
		t.Errorf("written = %v, want %q, each key, minute and result once", written, want)
	}
	if n := r.pendingCounts.Load(); n != 0 {
		t.Errorf("pending count rows = %d, want 0", n)
	}
}

func TestMaxPendingCountsDropsFurtherRows(t *testing.T) {
	r, _ := newRecorder(t, &scriptedWriter{}, Config{MaxPendingCounts: 2})
	for i := range 4 {
		r.Use("a", t0.Add(time.Duration(i)*time.Minute), ResultOK)
	}
	r.Use("a", t0, ResultOK) // a pending row still counts
	if got, want := countLines(r.PendingCounts("")), []string{"a 12:00 ok 2", "a 12:01 ok 1"}; !slices.Equal(got, want) {
		t.Errorf("pending = %q, want %q", got, want)
	}
}

func TestUseAllocatesNothingForAPendingKeyAndMinute(t *testing.T) {
	r, _ := newRecorder(t, &scriptedWriter{}, Config{})
	id := strings.Repeat("k", 26)
	r.Use(id, t0, ResultOK)
	if n := testing.AllocsPerRun(1000, func() { r.Use(id, t0, ResultOK); r.Use(id, t0, 1) }); n != 0 {
		t.Errorf("Use allocates %v times, want 0", n)
	}
	// A new minute after a flush reuses the record the flush left.
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	minute := 0
	if n := testing.AllocsPerRun(100, func() {
		minute++
		r.Use(id, t0.Add(time.Duration(minute)*time.Minute), ResultOK)
		r.flushing.Lock()
		forget(r, id) // as a flush does
		r.pendingCounts.Store(0)
		r.pending.Store(0)
		r.flushing.Unlock()
	}); n != 0 {
		t.Errorf("Use of a new minute allocates %v times, want 0", n)
	}
}

func TestResultsNameTheHandlersCodes(t *testing.T) {
	for _, code := range []apikey.Code{apikey.CodeScope, apikey.CodeOwner, apikey.CodeIP, apikey.CodeOrigin,
		apikey.CodeRevoked, apikey.CodeExpired, "rate_limited"} {
		if r, ok := ResultOf(string(code)); !ok || Results[r] != string(code) {
			t.Errorf("ResultOf(%s) = %d, %v; want its index", code, r, ok)
		}
	}
	for _, code := range []apikey.Code{apikey.CodeMissing, apikey.CodeInvalid, apikey.CodeMalformed, apikey.CodeUnavailable, "rate_limit_unavailable"} {
		if _, ok := ResultOf(string(code)); ok {
			t.Errorf("ResultOf(%s) = true, want false: the key was not found, or the store failed", code)
		}
	}
	if r, ok := ResultOf("ok"); !ok || r != ResultOK {
		t.Errorf("ResultOf(ok) = %d, %v", r, ok)
	}
}

type pruningWriter struct {
	scriptedWriter
	prunes atomic.Int32
	got    atomic.Pointer[keystore.Retention]
}

func (w *pruningWriter) Prune(_ context.Context, _ time.Time, r keystore.Retention) error {
	w.got.Store(&r)
	w.prunes.Add(1)
	return nil
}

func TestTheFlusherPrunesWithTheRetentionGiven(t *testing.T) {
	w := &pruningWriter{}
	r := New(w, Config{Interval: 10 * time.Millisecond, PruneInterval: 20 * time.Millisecond, Retention: keystore.Retention{Audit: time.Hour}})
	defer r.Close(context.Background())
	deadline := time.Now().Add(10 * time.Second)
	for w.prunes.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if w.prunes.Load() < 2 {
		t.Fatal("the flusher did not prune twice within 10s")
	}
	want := keystore.DefaultRetention
	want.Audit = time.Hour
	if got := *w.got.Load(); got != want {
		t.Errorf("retention = %+v, want %+v", got, want)
	}
}
