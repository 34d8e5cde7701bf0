package keyservice_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

// fleetFixture is a service confirming over a MemoryRegistry whose store
// sequence the test sets.
type fleetFixture struct {
	svc   *keyservice.Service
	reg   *keystore.MemoryRegistry
	seq   atomic.Int64
	local atomic.Int64 // this instance's applied sequence
}

func newFleetFixture(t *testing.T, timeout time.Duration) *fleetFixture {
	t.Helper()
	f := &fleetFixture{}
	f.reg = keystore.NewMemoryRegistry(func(context.Context) (int64, error) { return f.seq.Load(), nil }, nil)
	fx := newFixture(t)
	f.svc = fx.svc
	f.svc.SetFleet(keyservice.Fleet{Registry: f.reg, Self: "inst_self", Applied: f.local.Load, Timeout: timeout, Live: 15 * time.Second})
	return f
}

func (f *fleetFixture) beat(t *testing.T, id string, applied int64) {
	t.Helper()
	if err := f.reg.Beat(t.Context(), keystore.Instance{ID: id, Hostname: "h", Version: "v", StartedAt: time.Now(), AppliedSeq: applied}); err != nil {
		t.Fatal(err)
	}
}

func checkPropagation(t *testing.T, got keyservice.Propagation, confirmed, pending []string) {
	t.Helper()
	if !slices.Equal(got.Confirmed, confirmed) || !slices.Equal(got.Pending, pending) {
		t.Errorf("propagation = %+v, want confirmed %v, pending %v", got, confirmed, pending)
	}
}

func TestConfirmAnswersAtOnceWhenEveryLiveInstanceApplied(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleetFixture(t, 2*time.Second)
		f.seq.Store(7)
		f.local.Store(7)
		f.beat(t, "inst_self", 3) // its row lags: its own cache is what counts
		f.beat(t, "inst_b", 7)
		start := time.Now()
		p, err := f.svc.Confirm(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		checkPropagation(t, p, []string{"inst_b", "inst_self"}, []string{})
		if d := time.Since(start); d != 0 {
			t.Errorf("Confirm took %v, want no wait", d)
		}
	})
}

// An instance that applies the change wakes the waiting Confirm through
// the registry's notice, not at the next poll.
func TestConfirmWakesWhenTheLastInstanceApplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleetFixture(t, 2*time.Second)
		f.seq.Store(7)
		f.local.Store(7)
		f.beat(t, "inst_self", 7)
		f.beat(t, "inst_b", 6)
		go func() {
			time.Sleep(250 * time.Millisecond)
			f.reg.Applied(context.Background(), "inst_b", 7)
		}()
		start := time.Now()
		p, err := f.svc.Confirm(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		checkPropagation(t, p, []string{"inst_b", "inst_self"}, []string{})
		if d := time.Since(start); d != 250*time.Millisecond {
			t.Errorf("Confirm took %v, want 250ms (woken by the instance's report)", d)
		}
	})
}

// A change made after Confirm read the sequence is not waited for.
func TestConfirmWaitsForTheSequenceAsOfTheCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleetFixture(t, 2*time.Second)
		f.seq.Store(7)
		f.local.Store(7)
		f.beat(t, "inst_self", 7)
		f.beat(t, "inst_b", 6)
		go func() {
			time.Sleep(100 * time.Millisecond)
			f.seq.Store(9) // another change meanwhile
			f.reg.Applied(context.Background(), "inst_b", 7)
		}()
		p, err := f.svc.Confirm(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		checkPropagation(t, p, []string{"inst_b", "inst_self"}, []string{})
	})
}

func TestConfirmNamesThePendingAfterTheTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleetFixture(t, 2*time.Second)
		f.seq.Store(7)
		f.local.Store(7)
		f.beat(t, "inst_self", 7)
		f.beat(t, "inst_paused", 6)
		start := time.Now()
		p, err := f.svc.Confirm(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		checkPropagation(t, p, []string{"inst_self"}, []string{"inst_paused"})
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("Confirm took %v, want confirm_timeout (2s)", d)
		}
		if got, want := p.Describe("Revoked"), "Revoked on 1 of 2 instances; not confirmed yet by inst_paused: it may be paused or cut off from the database, and applies the change when it catches up."; got != want {
			t.Errorf("Describe = %q, want %q", got, want)
		}

		// 0s answers at once.
		start = time.Now()
		p, err = f.svc.WithConfirmTimeout(0).Confirm(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		checkPropagation(t, p, []string{"inst_self"}, []string{"inst_paused"})
		if d := time.Since(start); d != 0 {
			t.Errorf("Confirm with confirm_timeout 0s took %v, want no wait", d)
		}
	})
}

// An instance that has not reported within Live (three sync intervals) is
// not waited for, and is not live in the instance list.
func TestConfirmIgnoresInstancesThatAreNotLive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleetFixture(t, 2*time.Second)
		f.seq.Store(7)
		f.local.Store(7)
		f.beat(t, "inst_dead", 2)
		time.Sleep(15 * time.Second)
		f.beat(t, "inst_self", 7)
		p, err := f.svc.Confirm(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		checkPropagation(t, p, []string{"inst_self"}, []string{})
		if got := p.Describe("Revoked"); got != "Revoked on 1 of 1 instance." {
			t.Errorf("Describe = %q", got)
		}
		list, err := f.svc.Instances(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if list.Seq != 7 || len(list.Instances) != 2 || list.Instances[0].ID != "inst_dead" || list.Instances[0].Live || !list.Instances[1].Live {
			t.Errorf("Instances = %+v, want inst_dead not live and inst_self live, at seq 7", list)
		}
	})
}

func TestConfirmWithoutAFleetConfirmsNothing(t *testing.T) {
	f := newFixture(t)
	p, err := f.svc.Confirm(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	checkPropagation(t, p, []string{}, []string{})
	if got := p.Describe("Revoked"); got != "" {
		t.Errorf("Describe = %q, want \"\"", got)
	}
}

// caddy_apikey_changes_unconfirmed_total counts the answers that name a
// pending instance, and only those.
func TestConfirmCountsTheChangesAnsweredWithAnInstancePending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFleetFixture(t, time.Second)
		unconfirmed := prometheus.NewCounter(prometheus.CounterOpts{Name: "changes_unconfirmed_total", Help: "test"})
		f.svc.SetFleet(keyservice.Fleet{Registry: f.reg, Self: "inst_self", Applied: f.local.Load, Timeout: time.Second, Live: 15 * time.Second, Unconfirmed: unconfirmed})
		f.seq.Store(3)
		f.local.Store(3)
		f.beat(t, "inst_self", 3)
		f.beat(t, "inst_b", 3)
		if _, err := f.svc.Confirm(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(unconfirmed); got != 0 {
			t.Fatalf("after a change every instance applied: unconfirmed = %v, want 0", got)
		}
		f.seq.Store(4)
		f.local.Store(4)
		for _, d := range []time.Duration{time.Second, 0} {
			if _, err := f.svc.WithConfirmTimeout(d).Confirm(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if got := testutil.ToFloat64(unconfirmed); got != 2 {
			t.Errorf("after two answers naming inst_b pending: unconfirmed = %v, want 2", got)
		}
	})
}
