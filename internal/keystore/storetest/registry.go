package storetest

import (
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// RunRegistry checks a keystore.Registry: open returns a fresh, empty
// store and the registry over it (the same value for postgres, a
// MemoryRegistry over the store for SQLite), both closed by t.Cleanup.
// The registry's clock may differ from the test's by up to a minute.
func RunRegistry(t *testing.T, open func(t *testing.T) (keystore.Store, keystore.Registry)) {
	t.Helper()
	start := time.Date(2026, 11, 30, 6, 0, 0, 123456000, time.UTC)
	in := func(id string, applied int64) keystore.Instance {
		return keystore.Instance{ID: id, Hostname: "host-" + id, Version: "v1.2.3", StartedAt: start, AppliedSeq: applied, CacheEntries: 7}
	}
	instances := func(t *testing.T, r keystore.Registry) ([]keystore.Instance, int64, time.Time) {
		t.Helper()
		ins, seq, now, err := r.Instances(t.Context())
		if err != nil {
			t.Fatalf("Instances: %v", err)
		}
		return ins, seq, now
	}

	t.Run("BeatRegisters", func(t *testing.T) {
		s, r := open(t)
		if ins, _, _ := instances(t, r); len(ins) != 0 {
			t.Fatalf("a fresh registry lists %d instances, want none", len(ins))
		}
		before := time.Now()
		for _, id := range []string{"inst_b", "inst_a"} {
			if err := r.Beat(t.Context(), in(id, 0)); err != nil {
				t.Fatalf("Beat: %v", err)
			}
		}
		ins, seq, now := instances(t, r)
		if len(ins) != 2 || ins[0].ID != "inst_a" || ins[1].ID != "inst_b" {
			t.Fatalf("Instances = %+v, want inst_a then inst_b", ins)
		}
		got := ins[0]
		want := in("inst_a", 0)
		want.SeenAt = got.SeenAt
		if got != want {
			t.Errorf("instance = %+v, want %+v", got, want)
		}
		if d := got.SeenAt.Sub(before); d < -time.Minute || d > time.Minute {
			t.Errorf("SeenAt %v is %v from the time of the beat", got.SeenAt, d)
		}
		if now.Before(got.SeenAt) {
			t.Errorf("the registry's now %v is before the instance's SeenAt %v", now, got.SeenAt)
		}
		if seq != 0 {
			t.Errorf("seq of a fresh store = %d, want 0", seq)
		}
		f, err := apikey.NewFormat(apikey.DefaultPrefix)
		if err != nil {
			t.Fatal(err)
		}
		_, k, err := f.New("registry", apikey.ScopeFull, apikey.ExpiryNever, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Create(t.Context(), k, keystore.Audit{}); err != nil {
			t.Fatal(err)
		}
		if _, seq, _ := instances(t, r); seq != 1 {
			t.Errorf("seq after one change = %d, want 1", seq)
		}
	})

	t.Run("AppliedNeverBackwards", func(t *testing.T) {
		_, r := open(t)
		if err := r.Beat(t.Context(), in("inst_a", 5)); err != nil {
			t.Fatal(err)
		}
		wake := r.AppliedNotices()
		if err := r.Applied(t.Context(), "inst_a", 9); err != nil {
			t.Fatalf("Applied: %v", err)
		}
		select {
		case <-wake:
		case <-time.After(30 * time.Second):
			t.Fatal("AppliedNotices was not closed after Applied")
		}
		for _, step := range []func() error{
			func() error { return r.Applied(t.Context(), "inst_a", 3) },
			func() error { return r.Beat(t.Context(), in("inst_a", 4)) },
		} {
			if err := step(); err != nil {
				t.Fatal(err)
			}
			if ins, _, _ := instances(t, r); len(ins) != 1 || ins[0].AppliedSeq != 9 {
				t.Fatalf("Instances = %+v, want inst_a at applied seq 9", ins)
			}
		}
		if err := r.Applied(t.Context(), "inst_unknown", 3); err != nil {
			t.Errorf("Applied of an unknown instance: %v, want nil", err)
		}
		if ins, _, _ := instances(t, r); len(ins) != 1 {
			t.Errorf("Applied of an unknown instance registered it: %+v", ins)
		}
	})

	t.Run("Deregister", func(t *testing.T) {
		_, r := open(t)
		for _, id := range []string{"inst_a", "inst_b"} {
			if err := r.Beat(t.Context(), in(id, 1)); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Deregister(t.Context(), "inst_a"); err != nil {
			t.Fatalf("Deregister: %v", err)
		}
		if err := r.Deregister(t.Context(), "inst_a"); err != nil {
			t.Errorf("Deregister of an unknown instance: %v, want nil", err)
		}
		if ins, _, _ := instances(t, r); len(ins) != 1 || ins[0].ID != "inst_b" {
			t.Errorf("Instances after Deregister = %+v, want inst_b alone", ins)
		}
	})
}
