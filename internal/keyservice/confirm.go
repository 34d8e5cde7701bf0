package keyservice

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/docana/keygate/internal/keystore"
)

// DefaultConfirmTimeout is how long a change waits for every live instance
// when the configuration says nothing.
const DefaultConfirmTimeout = 2 * time.Second

// confirmPoll is how often a waiting Confirm reads the registry although
// no instance announced an applied change: notifications are lost while
// the registry's connection is down, and an instance may die while it is
// waited for. Announcements wake it sooner.
const confirmPoll = 100 * time.Millisecond

// Propagation says which live instances applied a change.
type Propagation struct {
	Confirmed []string `json:"confirmed"` // instance IDs
	Pending   []string `json:"pending"`
}

// Fleet is what Confirm and Instances need: the store's registry, this
// instance, and how long to wait.
type Fleet struct {
	// Registry is where instances report themselves.
	Registry keystore.Registry
	// Self is this instance's ID, and Applied the change sequence its
	// cache applied (verifier.Applied): this instance is confirmed as
	// soon as its own cache applied a change, without waiting for its
	// report to reach the registry.
	Self    string
	Applied func() int64
	// Timeout is confirm_timeout: how long Confirm waits (0: it answers
	// from one reading of the registry).
	Timeout time.Duration
	// Live is how recently an instance must have reported to be waited
	// for: three sync intervals.
	Live time.Duration
	// Unconfirmed, if set, counts the changes Confirm answered with a
	// live instance still pending (caddy_apikey_changes_unconfirmed_total):
	// what an operator alerts on when an instance stops following.
	Unconfirmed prometheus.Counter
}

// SetFleet makes the service confirm changes with f. Call it before the
// service is used; without it, Confirm confirms nothing and waits for
// nothing.
func (s *Service) SetFleet(f Fleet) { s.fleet = &f }

// WithConfirmTimeout returns a view of the service whose Confirm waits at
// most d (confirm_timeout: it belongs to a loaded config, while the
// service outlives reloads).
func (s *Service) WithConfirmTimeout(d time.Duration) *Service {
	v := *s
	if v.fleet != nil {
		f := *v.fleet
		f.Timeout = d
		v.fleet = &f
	}
	return &v
}

// Confirm waits until every live instance applied the store's change
// sequence as of the call, or the fleet's timeout (confirm_timeout) passed,
// and says which did and which did not. The admin API and the console
// call it after every change, so that "revoked" means revoked everywhere,
// or names where not yet. An error means the registry could not be read:
// the change is stored all the same.
func (s *Service) Confirm(ctx context.Context) (Propagation, error) {
	f := s.fleet
	if f == nil {
		return Propagation{Confirmed: []string{}, Pending: []string{}}, nil
	}
	deadline := time.Now().Add(f.Timeout)
	for first, target := true, int64(0); ; first = false {
		// Taken before reading, so that an announcement made after the
		// reading wakes the wait below.
		wake := f.Registry.AppliedNotices()
		ins, seq, now, err := f.Registry.Instances(ctx)
		if err != nil {
			return Propagation{}, err
		}
		if first {
			target = seq
		}
		p := f.propagation(ins, target, now)
		left := time.Until(deadline)
		if len(p.Pending) == 0 {
			return p, nil
		}
		if left <= 0 {
			f.countUnconfirmed()
			return p, nil
		}
		t := time.NewTimer(min(left, confirmPoll))
		select {
		case <-ctx.Done():
			t.Stop()
			f.countUnconfirmed()
			return p, nil
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// countUnconfirmed counts a change answered with an instance pending.
func (f *Fleet) countUnconfirmed() {
	if f.Unconfirmed != nil {
		f.Unconfirmed.Inc()
	}
}

// propagation sorts the live instances of ins (read at now) by whether
// they applied target.
func (f *Fleet) propagation(ins []keystore.Instance, target int64, now time.Time) Propagation {
	p := Propagation{Confirmed: []string{}, Pending: []string{}}
	for _, in := range ins {
		if now.Sub(in.SeenAt) >= f.Live {
			continue
		}
		applied := in.AppliedSeq
		if in.ID == f.Self && f.Applied != nil {
			applied = max(applied, f.Applied())
		}
		if applied >= target {
			p.Confirmed = append(p.Confirmed, in.ID)
		} else {
			p.Pending = append(p.Pending, in.ID)
		}
	}
	return p
}

// InstanceJSON is an instance as GET /apikeys/instances shows it.
type InstanceJSON struct {
	ID           string    `json:"id"`
	Hostname     string    `json:"hostname"`
	Version      string    `json:"version"`
	StartedAt    time.Time `json:"started_at"`
	SeenAt       time.Time `json:"seen_at"`
	AppliedSeq   int64     `json:"applied_seq"`
	CacheEntries int       `json:"cache_entries"`
	// Live: it reported within three sync intervals.
	Live bool `json:"live"`
}

// InstancesJSON is the answer of GET /apikeys/instances: every registered
// instance, and the store's change sequence to compare AppliedSeq with.
type InstancesJSON struct {
	Instances []InstanceJSON `json:"instances"`
	Seq       int64          `json:"seq"`
}

// Instances lists the instances registered on the store. Without a fleet
// it lists none.
func (s *Service) Instances(ctx context.Context) (InstancesJSON, error) {
	out := InstancesJSON{Instances: []InstanceJSON{}}
	f := s.fleet
	if f == nil {
		return out, nil
	}
	ins, seq, now, err := f.Registry.Instances(ctx)
	if err != nil {
		storeFailed(s.errs.list, err)
		return InstancesJSON{}, err
	}
	out.Seq = seq
	for _, in := range ins {
		out.Instances = append(out.Instances, InstanceJSON{
			ID: in.ID, Hostname: in.Hostname, Version: in.Version,
			StartedAt: in.StartedAt.UTC(), SeenAt: in.SeenAt.UTC(),
			AppliedSeq: in.AppliedSeq, CacheEntries: in.CacheEntries,
			Live: now.Sub(in.SeenAt) < f.Live,
		})
	}
	return out, nil
}

// Describe says in words on how many instances a change is in force,
// done being its verb ("Revoked"): "Revoked on 3 of 3 instances." or
// "Revoked on 2 of 3 instances; not confirmed yet by inst_…: it may be
// paused or cut off from the database." It is "" when no live instance is
// known.
func (p Propagation) Describe(done string) string {
	n := len(p.Confirmed) + len(p.Pending)
	if n == 0 {
		return ""
	}
	noun := "instances"
	if n == 1 {
		noun = "instance"
	}
	s := fmt.Sprintf("%s on %d of %d %s.", done, len(p.Confirmed), n, noun)
	if len(p.Pending) > 0 {
		s = strings.TrimSuffix(s, ".") + "; not confirmed yet by " + strings.Join(p.Pending, ", ") +
			": it may be paused or cut off from the database, and applies the change when it catches up."
	}
	return s
}
