package ratelimit

import (
	"sync"
	"time"
)

// shards is how many independently locked parts the local state has: a
// request locks one, chosen by its key's ID, so requests of different keys
// seldom wait for each other.
const shards = 64

// DefaultSweepInterval is how often a Local forgets the keys whose every
// window has passed.
const DefaultSweepInterval = time.Minute

// Local counts requests in this process's memory: each gateway instance
// admits a key's whole limit by itself. Its Allow allocates nothing for a
// key it already counts.
type Local struct {
	shards [shards]shard
	stop   chan struct{}
	done   chan struct{}
}

// shard is one locked part of the state, padded so that two shards'
// locks do not share a cache line.
type shard struct {
	mu      sync.Mutex
	entries map[string]*entry
	_       [48]byte
}

// NewLocal returns a Local that forgets idle keys every sweep interval (a
// background goroutine, until Close); 0 means DefaultSweepInterval, and a
// negative interval starts no goroutine (tests call Sweep).
func NewLocal(sweep time.Duration) *Local {
	l := &Local{}
	for i := range l.shards {
		l.shards[i].entries = make(map[string]*entry)
	}
	if sweep < 0 {
		return l
	}
	if sweep == 0 {
		sweep = DefaultSweepInterval
	}
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	go l.sweepEvery(sweep)
	return l
}

func (l *Local) sweepEvery(d time.Duration) {
	defer close(l.done)
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case now := <-t.C:
			l.Sweep(now)
		}
	}
}

// Allow judges a request of the key id at now against p and counts it if
// admitted. It never fails: the error is always nil (it is there for the
// Limiter interface).
func (l *Local) Allow(id string, p *Policy, now time.Time) (Decision, error) {
	sh := &l.shards[shardOf(id)]
	t := now.UnixNano()
	sh.mu.Lock()
	e := sh.entries[id]
	if e == nil {
		e = new(entry)
		sh.entries[id] = e
	}
	d := e.decide(p, t)
	sh.mu.Unlock()
	return d, nil
}

// Sweep forgets the keys whose every window has passed at now: they count
// nothing, and cost no memory until they are used again.
func (l *Local) Sweep(now time.Time) {
	t := now.UnixNano()
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for id, e := range sh.entries {
			if e.idle(t) {
				delete(sh.entries, id)
			}
		}
		sh.mu.Unlock()
	}
}

// Len returns how many keys l holds state for.
func (l *Local) Len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

// Close stops the background sweep.
func (l *Local) Close() error {
	if l.stop != nil {
		close(l.stop)
		<-l.done
		l.stop = nil
	}
	return nil
}

// shardOf returns the shard of a key ID: FNV-1a, which allocates nothing.
func shardOf(id string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return h % shards
}
