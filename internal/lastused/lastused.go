// Package lastused records when each key was last used and how: requests
// note uses in memory, per key the latest time wins, and count them per
// key, per minute and per result (Results); a flusher writes both to the
// store in batches (keystore.Store.RecordUsage, one transaction per chunk
// of at most ChunkKeys keys) every Interval and at Close. A failed write
// keeps its uses and counts for the next flush, so an outage loses nothing
// but what exceeds MaxPending, and Close tries again until its deadline.
// The flusher also rolls usage up and prunes old usage and audit events
// (keystore.Store.Prune) every PruneInterval.
//
// What a write costs grows with the keys in it, not with the requests. So
// when more than HoldBackAbove keys or count rows are pending, a tick
// writes each key and minute about once: the counts of a minute when it
// has ended, and a key's last use when its minute has ended or when the
// last use written of the key is older than the current minute by more
// than an Interval (a key in constant use gets one write a minute instead
// of one per tick; a key used after a pause is still written at the next
// tick). Close writes everything. What is held back stays visible to
// Pending and PendingCounts, so the instance holding it answers as if it
// were written; another instance reading the store sees the current
// minute's counts up to a minute and an Interval late, a busy key's last
// use up to a minute and two Intervals late, and a SIGKILL loses them.
// With fewer keys pending a tick writes everything, as holding back would
// save little.
package lastused

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/metrics"
)

// Writer stores last-used times and usage counts in one transaction:
// keystore.Store.RecordUsage. It ignores times older than the stored ones
// and unknown IDs.
type Writer interface {
	RecordUsage(ctx context.Context, uses map[string]time.Time, counts []keystore.UsageCount) error
}

// Pruner deletes old usage and audit events: keystore.Store.Prune. A
// Writer that is also a Pruner is pruned every PruneInterval.
type Pruner interface {
	Prune(ctx context.Context, now time.Time, r keystore.Retention) error
}

// Result is the result of a request of a found key, as usage counts it:
// an index of Results.
type Result uint8

// Results are the results usage is counted by: admitted (ok), then each
// refusal after the key was found. One line per result, so a refusal
// added to the handler is one line here.
var Results = [...]string{
	keystore.ResultOK, // ResultOK, first
	"insufficient_scope",
	"owner_mismatch",
	"ip_not_allowed",
	"origin_not_allowed",
	"rate_limited",
	"api_key_revoked",
	"api_key_expired",
}

// ResultOK is the result of an admitted request.
const ResultOK Result = 0

// numResults is how many results a count row holds.
const numResults = len(Results)

// ResultOf returns the result named code (an apikey.Code, or "ok"), and
// false if usage does not count it (a refusal before the key was found,
// or a store failure). It allocates nothing.
func ResultOf(code string) (Result, bool) {
	for i := range Results {
		if Results[i] == code {
			return Result(i), true
		}
	}
	return 0, false
}

// The defaults of Config's fields.
const (
	DefaultInterval      = 10 * time.Second
	DefaultMaxPending    = 1_000_000
	DefaultTimeout       = 5 * time.Second
	DefaultPruneInterval = 10 * time.Minute
)

// ChunkKeys is the most keys one write holds: a larger batch is written
// in several transactions, each within Timeout, so that a batch of many
// keys neither holds the store's write lock for long (other writes, such
// as revocations, wait for it) nor fails its deadline as a whole and comes
// back ever larger.
const ChunkKeys = 10_000

// HoldBackAbove is how many keys, or count rows, must be pending for a
// tick to hold back the current minute (see the package doc): below it,
// writing everything every Interval costs little (1,000 keys: about 30 ms
// of CPU on SQLite).
const HoldBackAbove = 1_000

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
	// MaxPendingCounts bounds how many (key, minute) count rows can be
	// pending, including those of a write in progress or failed; beyond
	// it, counts of further rows are dropped (logged once per flush).
	// Default: MaxPending.
	MaxPendingCounts int
	// PruneInterval is how often the Writer, if a Pruner, is pruned
	// (which rolls usage up first: keystore.RollupTarget moves every ten
	// minutes); the first prune runs after one Interval. Default 10m.
	PruneInterval time.Duration
	// Retention is what pruning keeps; zero fields take
	// keystore.DefaultRetention's.
	Retention keystore.Retention
	// Now is the clock of pruning and of the flusher's current minute;
	// nil means time.Now.
	Now func() time.Time
	// Logger receives warnings about failed writes; nil discards them.
	Logger *zap.Logger
	// Metrics receives the recorder's metrics; nil makes private ones.
	Metrics *metrics.Metrics
}

// shard is one part of the pending set. Times are Unix nanoseconds, which
// compare and store cheaper than time.Time.
type shard struct {
	mu sync.Mutex
	// keys holds what is pending of each key but its older count rows:
	// one map lookup per request (see Use).
	keys map[string]*pendingKey
	// older holds the count rows of minutes before their key's latest
	// (counted before a minute's end, not yet written) and rows put back
	// after a failed write. A key and minute may have a row here and in
	// keys at once: a flush adds them up.
	older map[countKey]countRow
	// written holds, while ticks hold back, the keys whose last use
	// moved to a batch is recent (see flush), with that use (Unix
	// nanoseconds): their further uses of the current minute wait for
	// its end.
	written map[string]int64
	// spare are records a flush emptied, reused for the next keys so
	// that a key's first request after a flush allocates nothing.
	spare []*pendingKey
	_     [8]byte // keeps neighbouring shards' locks off one cache line
}

// pendingKey is what a shard holds of one key: its latest use not yet
// written and its count row of the latest minute it was counted in.
type pendingKey struct {
	used    int64    // the latest use; 0 if none is pending
	minute  int64    // Unix minutes: the minute of row
	row     countRow // requests of minute by Result
	counted bool     // row is a pending count row
}

// key returns id's record, made (or reused) if it has none. s.mu must be
// held.
func (s *shard) key(id string) *pendingKey {
	if p := s.keys[id]; p != nil {
		return p
	}
	var p *pendingKey
	if n := len(s.spare); n > 0 {
		p, s.spare = s.spare[n-1], s.spare[:n-1]
	} else {
		p = new(pendingKey)
	}
	s.keys[id] = p
	return p
}

// addRow adds row to m's row of ck and reports whether m had one: the
// two are then one row, which the caller's count of pending rows must say.
func addRow(m map[countKey]countRow, ck countKey, row countRow) (merged bool) {
	cur, ok := m[ck]
	for i := range cur {
		cur[i] += row[i]
	}
	m[ck] = cur
	return ok
}

// countKey names a count row: a key and a minute (Unix minutes).
type countKey struct {
	id     string
	minute int64
}

// countRow holds a minute's requests of a key by Result.
type countRow [numResults]uint32

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
	// pendingCounts counts the count rows in the shards and in flight,
	// bounded by maxCounts.
	pendingCounts atomic.Int64
	droppedCounts atomic.Int64
	maxCounts     int64
	holdBackAbove int64 // HoldBackAbove; tests lower it
	// recentWindow is how much older than the current minute a key's last
	// use written may be for its further uses to be held back: Interval;
	// tests, which tick by hand with an Interval of an hour, set it.
	recentWindow   time.Duration
	pruneInterval  time.Duration
	retention      keystore.Retention
	now            func() time.Time
	inflightCounts map[countKey]countRow

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
	if cfg.MaxPendingCounts <= 0 {
		cfg.MaxPendingCounts = cfg.MaxPending
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = DefaultPruneInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	def := keystore.DefaultRetention
	for _, d := range []struct{ dst, def *time.Duration }{
		{&cfg.Retention.Minute, &def.Minute}, {&cfg.Retention.Hour, &def.Hour},
		{&cfg.Retention.Day, &def.Day}, {&cfg.Retention.Audit, &def.Audit},
	} {
		if *d.dst <= 0 {
			*d.dst = *d.def
		}
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

		maxCounts:     int64(cfg.MaxPendingCounts),
		holdBackAbove: HoldBackAbove,
		recentWindow:  cfg.Interval,
		pruneInterval: cfg.PruneInterval,
		retention:     cfg.Retention,
		now:           cfg.Now,
	}
	for i := range r.shards {
		r.shards[i].keys = make(map[string]*pendingKey)
		r.shards[i].older = make(map[countKey]countRow)
		r.shards[i].written = make(map[string]int64)
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
// nothing for a key that is pending, nor for a new one while a flush has
// left records to reuse.
func (r *Recorder) Note(id string, t time.Time) {
	s := r.shard(id)
	s.mu.Lock()
	r.use(s, s.key(id), t.UnixNano())
	s.mu.Unlock()
}

// Use records a request of key id at t with result res: a count of its
// minute and, for ResultOK, a use (as Note). It looks id up once and
// allocates nothing for a key already pending, nor for a new one while a
// flush has left records to reuse: the handler calls it on every request.
func (r *Recorder) Use(id string, t time.Time, res Result) {
	ns := t.UnixNano()
	minute := ns / int64(time.Minute)
	s := r.shard(id)
	s.mu.Lock()
	p := s.key(id)
	if p.counted && p.minute == minute {
		p.row[res]++
	} else {
		r.countOther(s, id, p, minute, res)
	}
	if res == ResultOK {
		r.use(s, p, ns)
	}
	s.mu.Unlock()
}

// countOther counts a request of key id, record p of s, in a minute
// other than its row's: a new minute (the row then waits in older), or an
// earlier one of a request that finished late (counted in older). A row of
// that minute waiting in older is added to, or becomes p's row again.
// s.mu must be held.
func (r *Recorder) countOther(s *shard, id string, p *pendingKey, minute int64, res Result) {
	if p.counted && minute > p.minute {
		if addRow(s.older, countKey{id, p.minute}, p.row) {
			r.pendingCounts.Add(-1)
		}
		p.counted = false
	}
	ck := countKey{id, minute}
	row, ok := s.older[ck]
	if !ok && r.pendingCounts.Add(1) > r.maxCounts {
		r.pendingCounts.Add(-1)
		r.droppedCounts.Add(1)
		return
	}
	row[res]++
	if p.counted {
		s.older[ck] = row
		return
	}
	if ok {
		delete(s.older, ck)
	}
	p.minute, p.row, p.counted = minute, row, true
}

// use notes a use at ns in p, a record of s. s.mu must be held.
func (r *Recorder) use(s *shard, p *pendingKey, ns int64) {
	if p.used != 0 {
		p.used = max(p.used, ns)
		return
	}
	if r.pending.Add(1) > r.maxPending {
		r.pending.Add(-1)
		r.dropped.Add(1)
		return
	}
	p.used = ns
	r.gauge.Inc()
}

// PendingCounts returns the counts noted and not yet written of key id,
// of every key if id is "" (keyservice.PendingCounts).
func (r *Recorder) PendingCounts(id string) []keystore.UsageCount {
	var out []keystore.UsageCount
	add := func(ck countKey, row countRow) {
		if id != "" && ck.id != id {
			return
		}
		for res, n := range row {
			if n > 0 {
				out = append(out, keystore.UsageCount{KeyID: ck.id, Minute: time.Unix(ck.minute*60, 0).UTC(), Result: Results[res], N: int64(n)})
			}
		}
	}
	// Like Pending: the shard, then the batch in flight, under
	// inflightMu so that a row moving between them is seen once.
	r.inflightMu.RLock()
	defer r.inflightMu.RUnlock()
	shards := r.shards[:]
	if id != "" {
		shards = shards[maphash.String(r.seed, id)%shardCount:][:1]
	}
	for i := range shards {
		s := &shards[i]
		s.mu.Lock()
		for id, p := range s.keys {
			if p.counted {
				add(countKey{id, p.minute}, p.row)
			}
		}
		for ck, row := range s.older {
			add(ck, row)
		}
		s.mu.Unlock()
	}
	for ck, row := range r.inflightCounts {
		add(ck, row)
	}
	return out
}

// Pending returns the latest use of id noted and not yet written.
func (r *Recorder) Pending(id string) (time.Time, bool) {
	var (
		ns int64
		ok bool
	)
	s := r.shard(id)
	s.mu.Lock()
	if p := s.keys[id]; p != nil && p.used != 0 {
		ns, ok = p.used, true
	}
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

// Flush writes everything pending now, uses and counts, in chunks of at
// most ChunkKeys keys, each with a deadline of Timeout. If a write fails,
// its chunk and those not yet written are kept for the next flush, merged
// with what was noted meanwhile (the latest use wins, counts add up), and
// the error returned.
func (r *Recorder) Flush(ctx context.Context) error {
	return r.flush(ctx, math.MaxInt64)
}

// flush writes what is pending, holding back the minute current (Unix
// minutes) and those after it: their counts, and the uses of keys whose
// last use written is recent (see the package doc). math.MaxInt64 holds
// back nothing.
func (r *Recorder) flush(ctx context.Context, current int64) error {
	r.flushing.Lock()
	defer r.flushing.Unlock()

	if n := r.dropped.Swap(0); n > 0 {
		r.logger.Warn("too many keys with pending last-used times: uses of further keys dropped",
			zap.Int64("dropped", n), zap.Int64("max_pending", r.maxPending))
	}
	if n := r.droppedCounts.Swap(0); n > 0 {
		r.logger.Warn("too many pending usage counts: requests of further keys and minutes not counted",
			zap.Int64("dropped", n), zap.Int64("max_pending_counts", r.maxCounts))
	}
	// Held back: a use of the current minute or later of a key whose
	// last use written is recent, at most an Interval older than the
	// current minute, so that the store lags a busy key's last use by at
	// most a minute and two Intervals. A key written at the end of the
	// minute before (its last use of it) then waits for this minute's
	// end: one write a minute, not two.
	holding := current != math.MaxInt64
	var recent int64
	if holding {
		recent = current*int64(time.Minute) - int64(r.recentWindow)
	}
	// Each shard moves to the batch under inflightMu, so that Pending and
	// PendingCounts, which look in the shard and then in the batch, never
	// miss a use.
	batch := make(map[string]int64)
	counts := make(map[countKey]countRow)
	for i := range r.shards {
		s := &r.shards[i]
		r.inflightMu.Lock()
		s.mu.Lock()
		for id, p := range s.keys {
			if ns := p.used; ns != 0 {
				if !holding || ns/int64(time.Minute) < current || s.written[id] < recent {
					if holding {
						s.written[id] = ns
					}
					batch[id] = ns
					p.used = 0
				}
			}
			if p.counted && p.minute < current {
				if addRow(counts, countKey{id, p.minute}, p.row) {
					r.pendingCounts.Add(-1)
				}
				p.counted = false
			}
			if p.used == 0 && !p.counted {
				delete(s.keys, id)
				s.spare = append(s.spare, p)
			}
		}
		for ck, row := range s.older {
			if ck.minute < current {
				if addRow(counts, ck, row) {
					r.pendingCounts.Add(-1)
				}
				delete(s.older, ck)
			}
		}
		for id, ns := range s.written {
			if !holding || ns < recent {
				delete(s.written, id)
			}
		}
		s.mu.Unlock()
		r.inflight, r.inflightCounts = batch, counts
		r.inflightMu.Unlock()
	}
	defer func() {
		r.inflightMu.Lock()
		r.inflight, r.inflightCounts = nil, nil
		r.inflightMu.Unlock()
	}()
	if len(batch) == 0 && len(counts) == 0 {
		return nil
	}

	chunks := split(batch, counts)
	// A chunk leaves the batch in flight as it is written, or as it goes
	// back to the shards, under inflightMu, so that Pending and
	// PendingCounts count it once.
	leave := func(c chunk) {
		for id := range c.uses {
			delete(batch, id)
		}
		for ck := range c.counts {
			delete(counts, ck)
		}
	}
	for i, c := range chunks {
		if err := r.write(ctx, c); err != nil {
			var keys, rows int
			r.inflightMu.Lock()
			for _, rest := range chunks[i:] {
				leave(rest)
				r.restore(rest.uses, rest.counts)
				keys += len(rest.uses)
				rows += len(rest.counts)
			}
			r.inflightMu.Unlock()
			r.logger.Warn("writing last-used times and usage counts failed: kept for the next flush",
				zap.Int("keys", keys), zap.Int("count_rows", rows), zap.Error(err))
			return fmt.Errorf("writing last-used times of %d keys and %d usage rows: %w", keys, rows, err)
		}
		r.inflightMu.Lock()
		leave(c)
		r.inflightMu.Unlock()
		r.pending.Add(-int64(len(c.uses)))
		r.gauge.Sub(float64(len(c.uses)))
		r.pendingCounts.Add(-int64(len(c.counts)))
	}
	return nil
}

// tick is the flusher's periodic flush: everything, or with the current
// minute held back when many keys are pending (see the package doc).
func (r *Recorder) tick() error {
	current := int64(math.MaxInt64)
	if max(r.pending.Load(), r.pendingCounts.Load()) > r.holdBackAbove {
		current = r.now().UnixNano() / int64(time.Minute)
	}
	return r.flush(context.Background(), current)
}

// chunk is the part of a batch one write holds: the uses and counts of at
// most ChunkKeys keys.
type chunk struct {
	uses   map[string]int64
	counts map[countKey]countRow
}

// split cuts a batch into chunks, each key's use and counts in one.
func split(batch map[string]int64, counts map[countKey]countRow) []chunk {
	var (
		chunks []chunk
		of     = make(map[string]int, len(batch)) // key → its chunk
	)
	place := func(id string) *chunk {
		i, ok := of[id]
		if !ok {
			if len(chunks) == 0 || len(of) >= len(chunks)*ChunkKeys {
				chunks = append(chunks, chunk{uses: map[string]int64{}, counts: map[countKey]countRow{}})
			}
			i = len(chunks) - 1
			of[id] = i
		}
		return &chunks[i]
	}
	for id, ns := range batch {
		place(id).uses[id] = ns
	}
	for ck, row := range counts {
		place(ck.id).counts[ck] = row
	}
	return chunks
}

// write stores one chunk within Timeout.
func (r *Recorder) write(ctx context.Context, c chunk) error {
	uses := make(map[string]time.Time, len(c.uses))
	for id, ns := range c.uses {
		uses[id] = time.Unix(0, ns).UTC()
	}
	rows := make([]keystore.UsageCount, 0, len(c.counts))
	for ck, row := range c.counts {
		for res, n := range row {
			if n > 0 {
				rows = append(rows, keystore.UsageCount{KeyID: ck.id, Minute: time.Unix(ck.minute*60, 0).UTC(), Result: Results[res], N: int64(n)})
			}
		}
	}
	wctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	if err := r.w.RecordUsage(wctx, uses, rows); err != nil {
		r.writeErr.Inc()
		r.storeErr.Inc()
		return err
	}
	r.writesOK.Inc()
	return nil
}

// restore merges a batch that could not be written back into the shards.
// Its keys and rows are still counted as pending; one noted again
// meanwhile is there twice, so it is counted once less.
func (r *Recorder) restore(batch map[string]int64, counts map[countKey]countRow) {
	var dups, countDups int64
	for id, ns := range batch {
		s := r.shard(id)
		s.mu.Lock()
		p := s.key(id)
		if p.used != 0 {
			dups++
		}
		p.used = max(p.used, ns)
		s.mu.Unlock()
	}
	for ck, row := range counts {
		s := r.shard(ck.id)
		s.mu.Lock()
		if addRow(s.older, ck, row) {
			countDups++
		}
		s.mu.Unlock()
	}
	r.pending.Add(-dups)
	r.gauge.Sub(float64(dups))
	r.pendingCounts.Add(-countDups)
}

// prune deletes old usage and audit events, if the writer can.
func (r *Recorder) prune() {
	p, ok := r.w.(Pruner)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	if err := p.Prune(ctx, r.now(), r.retention); err != nil {
		r.logger.Warn("pruning old usage and audit events failed: tried again at the next interval", zap.Error(err))
	}
}

// run is the flusher goroutine.
func (r *Recorder) run() {
	defer r.done.Done()
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	// The first prune comes after one interval, not at start: a gateway
	// reloading often need not prune each time.
	nextPrune := time.Now().Add(r.interval)
	for {
		select {
		case <-r.stop:
			return
		case <-ticker.C:
			// tick logs its failure and keeps the batch.
			_ = r.tick()
			if now := time.Now(); !now.Before(nextPrune) {
				nextPrune = now.Add(r.pruneInterval)
				r.prune()
			}
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
	var n, rows int64
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for _, p := range s.keys {
			if p.used != 0 {
				n++
			}
			if p.counted {
				rows++
			}
		}
		rows += int64(len(s.older))
		clear(s.keys)
		clear(s.older)
		clear(s.written)
		s.mu.Unlock()
	}
	if n == 0 && rows == 0 {
		return
	}
	r.pending.Add(-n)
	r.gauge.Sub(float64(n))
	r.pendingCounts.Add(-rows)
	r.logger.Error("closing: last-used times and usage counts could not be written and are lost",
		zap.Int64("keys", n), zap.Int64("count_rows", rows), zap.Error(cause))
}
