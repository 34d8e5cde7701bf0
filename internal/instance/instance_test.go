package instance

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docana/keygate/internal/keystore"
)

type fakeSource struct{ seq atomic.Int64 }

func (s *fakeSource) Applied() int64 { return s.seq.Load() }
func (s *fakeSource) Len() int       { return 42 }

func TestReporterBeatsReportsAtOnceAndDeregisters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := keystore.NewMemoryRegistry(func(context.Context) (int64, error) { return 0, nil }, nil)
		self := keystore.Instance{ID: NewID(), Hostname: Hostname(), Version: "v1", StartedAt: time.Now().UTC()}
		src := &fakeSource{}
		src.seq.Store(3)
		r := New(reg, self, 5*time.Second, nil)
		r.Start(src)
		synctest.Wait()
		read := func() keystore.Instance {
			t.Helper()
			ins, _, _, err := reg.Instances(t.Context())
			if err != nil || len(ins) != 1 {
				t.Fatalf("Instances = %+v, %v; want one", ins, err)
			}
			return ins[0]
		}
		if in := read(); in.ID != self.ID || in.AppliedSeq != 3 || in.CacheEntries != 42 || !in.SeenAt.Equal(time.Now().UTC()) {
			t.Errorf("after start: %+v", in)
		}

		// An applied change is reported at once, not at the next beat.
		time.Sleep(time.Second)
		src.seq.Store(4)
		r.Notify(4)
		synctest.Wait()
		if in := read(); in.AppliedSeq != 4 || !in.SeenAt.Equal(time.Now().UTC()) {
			t.Errorf("after Notify: %+v, want applied 4 seen now", in)
		}

		// Beats go on every interval: the next at 5s.
		time.Sleep(4 * time.Second)
		synctest.Wait()
		if in := read(); !in.SeenAt.Equal(time.Now().UTC()) {
			t.Errorf("after an interval: seen at %v, want now %v", in.SeenAt, time.Now().UTC())
		}

		if err := r.Close(t.Context(), true); err != nil {
			t.Fatal(err)
		}
		ins, _, _, _ := reg.Instances(t.Context())
		if len(ins) != 0 {
			t.Errorf("after Close(deregister): %+v, want none", ins)
		}
	})
}

func TestReporterClosedWithoutDeregisteringStaysListed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := keystore.NewMemoryRegistry(func(context.Context) (int64, error) { return 0, nil }, nil)
		r := New(reg, keystore.Instance{ID: NewID()}, time.Second, nil)
		r.Start(&fakeSource{})
		synctest.Wait()
		if err := r.Close(t.Context(), false); err != nil {
			t.Fatal(err)
		}
		ins, _, _, _ := reg.Instances(t.Context())
		if len(ins) != 1 {
			t.Errorf("after Close without deregistering: %+v, want the instance", ins)
		}
	})
}
