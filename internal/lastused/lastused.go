// Package lastused records when each key was last used. Requests note uses
// in memory, per key the latest wins; a flusher writes them to the store in
// one batch every Interval and at Close. A failed write keeps its uses for
// the next flush, so an outage loses nothing but what exceeds MaxPending,
// and Close tries again until its deadline.
package lastused

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/metrics"
)

// Writer stores last-used times: keystore.Store.TouchLastUsed. It ignores
// times older than the stored ones and unknown IDs.
type Writer interface {
	TouchLastUsed(ctx context.Context, uses map[string]time.Time) error
}

// The defaults of Config's fields.
const (
	DefaultInterval   = 10 * time.Second
	DefaultMaxPending = 1_000_000
	DefaultTimeout    = 5 * time.Second
)

// shardCount is the number of independently locked parts of the pending
// set, so that requests for different keys rarely wait for each other.
const shardCount = 32

// Config configures a Recorder. Zero fields take their defaults.
type Config struct {
	// Interval is how often pending uses are written. Default 10s.
	Interval time.Duration
	// MaxPending bounds how many keys can have a pending use, including
	// those of a write in progress or failed. Beyond it, uses of further
	// keys are dropped (counted, and logged once per flush). Default
	// 1000000.
	MaxPending int
	// Timeout is the deadline of one write. Default 5s.
	Timeout time.Duration
	// Logger receives warnings about failed writes; nil discards them.
	Logger *zap.Logger
	// Metrics receives the recorder's metrics; nil makes private ones.
	Metrics *metrics.Metrics
}

// shard is one part of the pending set. Times are Unix nanoseconds, which
// compare and store cheaper than time.Time.
type shard struct {
	mu   sync.Mutex
	uses map[string]int64
	_    [48]byte // keeps neighbouring shards' locks off one cache line
}

// Recorder notes key uses and writes them in batches. Its methods are safe
// for concurrent use.
type Recorder struct {
	w          Writer
	interval   time.Duration
	timeout    time.Duration
	maxPending int64
	logger     *zap.Logger
	seed       maphash.Seed
	shards     [shardCount]shard

	// pending counts the keys in the shards plus those of the batch being
	// written, which may come back; it is what MaxPending bounds.
	pending atomic.Int64
	dropped atomic.Int64

	flushing sync.Mutex // one flush at a time
	// inflight is the batch being written, so Pending still sees it.
	inflightMu sync.RWMutex
	inflight   map[string]int64

	gauge              prometheus.Gauge
	writesOK, writeErr prometheus.Counter
	storeErr           prometheus.Counter // store errors{op="touch"}

	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once
}

// New returns a recorder writing to w and starts its flusher.
func New(w Writer, cfg Config) *Recorder {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	r := &Recorder{
		w:          w,
		interval:   cfg.Interval,
		timeout:    cfg.Timeout,
		maxPending: int64(cfg.MaxPending),
		logger:     cfg.Logger,
		seed:       maphash.MakeSeed(),
		gauge:      cfg.Metrics.LastUsedPending,
		writesOK:   cfg.Metrics.LastUsedWrites.WithLabelValues(metrics.WriteOK),
		writeErr:   cfg.Metrics.LastUsedWrites.WithLabelValues(metrics.WriteError),
		storeErr:   cfg.Metrics.StoreErrors.WithLabelValues(metrics.OpTouch),
		stop:       make(chan struct{}),
	}
	for i := range r.shards {
		r.shards[i].uses = make(map[string]int64)
	}
	r.done.Add(1)
	go r.run()
	return r
}

func (r *Recorder) shard(id string) *shard {
	return &r.shards[maphash.String(r.seed, id)%shardCount]
}

// Note records that key id was used at t. A time not after the one pending
// for id changes nothing, so last use never moves backwards. It allocates
// nothing for a key that is pending or was pending before (the shard's map
// keeps its room after a flush).
func (r *Recorder) Note(id string, t time.Time) {
	ns := t.UnixNano()
	s := r.shard(id)
	s.mu.Lock()
	if cur, ok := s.uses[id]; ok {
		if ns > cur {
			s.uses[id] = ns
		}
		s.mu.Unlock()
		return
	}
	if r.pending.Add(1) > r.maxPending {
		r.pending.Add(-1)
		s.mu.Unlock()
		r.dropped.Add(1)
		return
	}
	s.uses[id] = ns
	s.mu.Unlock()
	r.gauge.Inc()
}

// Pending returns the latest use of id noted and not yet written.
func (r *Recorder) Pending(id string) (time.Time, bool) {
	s := r.shard(id)
	s.mu.Lock()
	ns, ok := s.uses[id]
	s.mu.Unlock()
	r.inflightMu.RLock()
	if f, found := r.inflight[id]; found && (!ok || f > ns) {
		ns, ok = f, true
	}
	r.inflightMu.RUnlock()
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, ns).UTC(), true
}

// Flush writes what is pending now, in one batch with a deadline of
// Timeout. If the write fails, the batch is kept for the next flush, merged
// with the uses noted meanwhile (the latest wins), and the error returned.
func (r *Recorder) Flush(ctx context.Context) error {
	r.flushing.Lock()
	defer r.flushing.Unlock()

	if n := r.dropped.Swap(0); n > 0 {
		r.logger.Warn("too many keys with pending last-used times: uses of further keys dropped",
			zap.Int64("dropped", n), zap.Int64("max_pending", r.maxPending))
	}
	// Each shard moves to the batch under inflightMu, so that Pending,
	// which looks in the shard and then in the batch, never misses a use.
	batch := make(map[string]int64)
	for i := range r.shards {
		s := &r.shards[i]
		r.inflightMu.Lock()
		s.mu.Lock()
		for id, ns := range s.uses {
			batch[id] = ns
		}
		clear(s.uses)
		s.mu.Unlock()
		r.inflight = batch
		r.inflightMu.Unlock()
	}
	if len(batch) == 0 {
		r.inflightMu.Lock()
		r.inflight = nil
		r.inflightMu.Unlock()
		return nil
	}

	uses := make(map[string]time.Time, len(batch))
	for id, ns := range batch {
		uses[id] = time.Unix(0, ns).UTC()
	}
	wctx, cancel := context.WithTimeout(ctx, r.timeout)
	err := r.w.TouchLastUsed(wctx, uses)
	cancel()

	if err == nil {
		r.writesOK.Inc()
		r.pending.Add(-int64(len(batch)))
		r.gauge.Sub(float64(len(batch)))
	} else {
		r.writeErr.Inc()
		r.storeErr.Inc()
		r.restore(batch)
		r.logger.Warn("writing last-used times failed: kept for the next flush",
			zap.Int("keys", len(batch)), zap.Error(err))
	}
	r.inflightMu.Lock()
	r.inflight = nil
	r.inflightMu.Unlock()
	if err != nil {
		return fmt.Errorf("writing last-used times of %d keys: %w", len(batch), err)
	}
	return nil
}

// restore merges a batch that could not be written back into the shards.
// Its keys are still counted in pending; a key noted again meanwhile is
// there twice, so it is counted once less.
func (r *Recorder) restore(batch map[string]int64) {
	var dups int64
	for id, ns := range batch {
		s := r.shard(id)
		s.mu.Lock()
		if cur, ok := s.uses[id]; ok {
			dups++
			if ns > cur {
				s.uses[id] = ns
			}
		} else {
			s.uses[id] = ns
		}
		s.mu.Unlock()
	}
	r.pending.Add(-dups)
	r.gauge.Sub(float64(dups))
}

// run is the flusher goroutine.
func (r *Recorder) run() {
	defer r.done.Done()
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-ticker.C:
			// Flush logs its failure and keeps the batch.
			_ = r.Flush(context.Background())
		}
	}
}

// The pauses between Close's attempts to write: the first, doubling up to
// the last.
const (
	closeRetryFirst = 50 * time.Millisecond
	closeRetryMax   = time.Second
)

// Close stops the flusher, waits for it and writes what is pending. A
// failed write is tried again, after a pause that grows from 50ms to 1s,
// until it succeeds or ctx ends (if ctx has no deadline, for at most
// Timeout), so that a store failing for a moment at shutdown or reload (a
// full disk, a database failover) costs no last-used time. A closed store
// (keystore.ErrClosed) is not tried again. If the uses still cannot be
// written they are dropped, logged by count and taken off the pending
// gauge, which every recorder of the process shares, and the last error is
// returned. Uses noted after Close are kept in memory but never written
// unless Flush or Close is called again.
func (r *Recorder) Close(ctx context.Context) error {
	r.closeOnce.Do(func() {
		close(r.stop)
		r.done.Wait()
	})
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.timeout)
		defer cancel()
	}
	pause := closeRetryFirst
	for {
		err := r.Flush(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, keystore.ErrClosed) {
			r.drop(err)
			return err
		}
		select {
		case <-ctx.Done():
			r.drop(err)
			return err
		case <-time.After(pause):
		}
		pause = min(2*pause, closeRetryMax)
	}
}

// drop forgets every pending use, after Close failed to write them.
func (r *Recorder) drop(cause error) {
	var n int64
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		n += int64(len(s.uses))
		clear(s.uses)
		s.mu.Unlock()
	}
	if n == 0 {
		return
	}
	r.pending.Add(-n)
	r.gauge.Sub(float64(n))
	r.logger.Error("closing: last-used times could not be written and are lost",
		zap.Int64("keys", n), zap.Error(cause))
}
