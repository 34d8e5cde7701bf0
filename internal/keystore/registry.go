package keystore

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// Instance is what a gateway instance reports of itself in a Registry.
type Instance struct {
	// ID names the instance; it is made once per process.
	ID string
	// Hostname and Version say where it runs and which keygate it is.
	Hostname, Version string
	// StartedAt is when its process started.
	StartedAt time.Time
	// SeenAt is when it last reported (set by the registry, by its own
	// clock: instances on several hosts are compared on one clock).
	SeenAt time.Time
	// AppliedSeq is the change sequence its cache has applied.
	AppliedSeq int64
	// CacheEntries is how many keys its cache holds.
	CacheEntries int
}

// Registry is where the instances sharing a store report themselves, and
// where a change waits for them. Its methods are safe for concurrent use.
// keystore.Store does not include it: the postgres store implements it,
// and a single SQLite host uses a MemoryRegistry.
type Registry interface {
	// Beat records in, setting its SeenAt to now by the registry's clock.
	// Its AppliedSeq never moves backwards. It also deletes the instances
	// not seen for DeadAfter.
	Beat(ctx context.Context, in Instance) error
	// Applied records that instance id has applied every change up to seq
	// (never backwards) and counts as a beat; waiters on AppliedNotices
	// hear of it.
	Applied(ctx context.Context, id string, seq int64) error
	// Deregister deletes the instance id; an unknown id is no error.
	Deregister(ctx context.Context, id string) error
	// Instances returns every registered instance ordered by ID, the
	// store's current change sequence, and the registry's clock at the
	// time of the reading (to judge SeenAt by).
	Instances(ctx context.Context) (ins []Instance, seq int64, now time.Time, err error)
	// AppliedNotices returns a channel that is closed at the next Applied
	// of any instance (possibly of another process): a waiter takes the
	// channel, reads Instances, and waits on it if it must. Notices may
	// be lost while the registry's connection is down, so waiters also
	// poll.
	AppliedNotices() <-chan struct{}
}

// DeadAfter is how long an instance that stopped beating stays listed
// (not live) before a beat of another instance deletes it: long enough for
// an operator to see which one died overnight.
const DeadAfter = 24 * time.Hour

// Broadcast is a notice that can be waited on by many: Wait returns a
// channel that Notify closes. The zero value is ready to use.
type Broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// Wait returns the channel the next Notify closes.
func (b *Broadcast) Wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Notify wakes every waiter.
func (b *Broadcast) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}

// MemoryRegistry is a Registry held in memory, for a store that one
// process uses alone (SQLite): its instances are those of this process.
type MemoryRegistry struct {
	seq     func(ctx context.Context) (int64, error)
	now     func() time.Time
	mu      sync.Mutex
	byID    map[string]Instance
	applied Broadcast
}

// NewMemoryRegistry returns an empty registry whose Instances reports the
// change sequence seq returns (the store's), judged by the clock now (nil:
// time.Now).
func NewMemoryRegistry(seq func(ctx context.Context) (int64, error), now func() time.Time) *MemoryRegistry {
	if now == nil {
		now = time.Now
	}
	return &MemoryRegistry{seq: seq, now: now, byID: map[string]Instance{}}
}

// Beat implements Registry.
func (r *MemoryRegistry) Beat(_ context.Context, in Instance) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now().UTC()
	if old, ok := r.byID[in.ID]; ok {
		in.AppliedSeq = max(in.AppliedSeq, old.AppliedSeq)
	}
	in.SeenAt = now
	r.byID[in.ID] = in
	for id, other := range r.byID {
		if now.Sub(other.SeenAt) > DeadAfter {
			delete(r.byID, id)
		}
	}
	return nil
}

// Applied implements Registry.
func (r *MemoryRegistry) Applied(_ context.Context, id string, seq int64) error {
	r.mu.Lock()
	in, ok := r.byID[id]
	if ok {
		in.AppliedSeq = max(in.AppliedSeq, seq)
		in.SeenAt = r.now().UTC()
		r.byID[id] = in
	}
	r.mu.Unlock()
	if ok {
		r.applied.Notify()
	}
	return nil
}

// Deregister implements Registry.
func (r *MemoryRegistry) Deregister(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byID, id)
	return nil
}

// Instances implements Registry.
func (r *MemoryRegistry) Instances(ctx context.Context) ([]Instance, int64, time.Time, error) {
	seq, err := r.seq(ctx)
	if err != nil {
		return nil, 0, time.Time{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ins := make([]Instance, 0, len(r.byID))
	for _, in := range r.byID {
		ins = append(ins, in)
	}
	slices.SortFunc(ins, func(a, b Instance) int { return cmp.Compare(a.ID, b.ID) })
	return ins, seq, r.now().UTC(), nil
}

// AppliedNotices implements Registry.
func (r *MemoryRegistry) AppliedNotices() <-chan struct{} { return r.applied.Wait() }

var _ Registry = (*MemoryRegistry)(nil)
