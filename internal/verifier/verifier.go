// Package verifier turns the value of an Authorization header into a key
// record: it checks the key's format and checksum, looks its digest up in a
// cache and, on a miss, in the key store, and keeps the cache in step with
// the store's change log.
//
// # Cache rules
//
// An entry holds the key's record as the store returned it. It stays
// correct for as long as the verifier follows the store's change log: the
// sync loop drops it when the log names the key (a local admin change, a
// notification from the store, or the periodic poll). So an entry does not
// age: it is trusted while the change log was read successfully within
// CacheTTL (the poll runs at least every CacheTTL/2, so while the store
// answers that is always so), and no request waits for a refetch of a key
// it has in its cache. Once the log has not been read for CacheTTL (the
// store is down or cut off, or the process was paused), no entry is
// trusted: the next request reads the log first (one query shared by
// concurrent requests) and, if the store cannot answer, gets
// key_store_unavailable like an uncached key. The same holds after the
// process was paused (SIGSTOP, a frozen VM) for longer than pauseLimit: a
// goroutine notes every pauseTick that the process runs, and a gap
// larger than pauseLimit means that changes may have been announced
// while nobody listened, so the log is read before the cache answers
// again (a change made meanwhile waited confirm_timeout for this
// instance and named it pending: its first request after resuming must
// not undo that). So during an outage a cached
// key keeps working for CacheTTL after the last successful read of the
// log, and a change the instance cannot hear of takes effect within
// CacheTTL at the latest.
//
// Revocation and expiry are judged against the request time on every call,
// from the cached record: a revoked or expired key is cached like any other
// and answered without a query. Keys the store does not know are remembered
// in a smaller negative cache for NegativeTTL. Store failures are never
// cached.
//
// A fetch that races with an invalidation is answered but not cached: every
// invalidation bumps a generation counter, and a fetched record is kept only
// if no invalidation happened since the fetch began. Concurrent misses for
// one key share one store query, and a request that arrives after an
// invalidation never shares a query that began before it.
//
// At most maxQueries (8) lookups are in the store at once; further misses
// wait for a slot within StoreTimeout, and are answered unavailable if
// none frees up in time. A flood of unknown keys thus cannot occupy more
// of the store, or of database/sql's connection pool, than that: the
// SQLite store keeps 8 idle connections, and every query beyond them would
// open a connection and prepare its statements, then close it.
package verifier

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/metrics"
)

// Store is what the verifier needs of a key store.
type Store interface {
	GetByDigest(ctx context.Context, d apikey.Digest) (apikey.Key, error)
	Changes(ctx context.Context, since int64, limit int) ([]keystore.Change, int64, error)
}

// The defaults of Config's fields.
const (
	DefaultCacheSize    = 100_000
	DefaultCacheTTL     = time.Minute
	DefaultNegativeTTL  = 10 * time.Second
	DefaultSyncInterval = 5 * time.Second
	DefaultStoreTimeout = 2 * time.Second
)

// maxNegative bounds the negative cache. Unknown well-formed keys come from
// misconfigured clients, which repeat a few keys, or from someone trying
// random keys, which the negative cache cannot help with anyway: a small
// bound keeps such traffic from costing memory or evicting known keys.
const maxNegative = 16384

// maxShards is the number of cache shards for large caches. Each shard has
// its own lock, so requests for different keys rarely wait for each other.
const maxShards = 16

// minShardSize is the smallest shard worth splitting a cache into: small
// caches stay one exact LRU.
const minShardSize = 64

// maxQueries bounds the key lookups in flight in the store at once (see
// the package doc). It matches the idle connections the SQLite store
// keeps; the PostgreSQL store's pool holds max(4, cores) connections
// unless its DSN says otherwise.
const maxQueries = 8

// changesPage is how many changes one Changes query reads.
const changesPage = 1000

// pauseTick is how often a goroutine of the verifier notes that the process runs;
// pauseLimit is the gap after which the process counts as having been
// paused, and reads the change log before it trusts its cache again. It
// is well under the default confirm_timeout (2s), so that an instance a
// change named pending reads the log before it answers again.
const (
	pauseTick  = 100 * time.Millisecond
	pauseLimit = time.Second
)

// errLogInterval spaces out repeated warnings about a failing store.
const errLogInterval = 10 * time.Second

// The errors Verify returns besides those of apikey.ParseAuthorization and
// apikey.Format.Check. They are fixed values, so returning one allocates
// nothing.
var (
	ErrUnknownKey  = apikey.NewError(apikey.CodeInvalid, "the API key is not valid: no such key exists")
	ErrRevokedKey  = apikey.NewError(apikey.CodeRevoked, "the API key has been revoked")
	ErrExpiredKey  = apikey.NewError(apikey.CodeExpired, "the API key has expired")
	ErrUnavailable = apikey.NewError(apikey.CodeUnavailable, "the key store cannot be reached: try again shortly")
)

// Config configures a Verifier. Zero fields take their defaults.
type Config struct {
	// Format checks keys before any lookup. Required.
	Format *apikey.Format
	// CacheSize is how many verified keys the cache holds. Default 100000.
	CacheSize int
	// CacheTTL is how long the cache is trusted without a successful read
	// of the change log (see the package doc). Default 1m.
	CacheTTL time.Duration
	// NegativeTTL is how long "no such key" is remembered. Default 10s.
	NegativeTTL time.Duration
	// SyncInterval is how often the store's change log is polled.
	// Default 5s.
	SyncInterval time.Duration
	// StoreTimeout is the deadline of one store query. Default 2s.
	StoreTimeout time.Duration
	// Logger receives warnings about the store; nil discards them.
	Logger *zap.Logger
	// Metrics receives the verifier's counters; nil makes private ones.
	Metrics *metrics.Metrics
	// Now is the clock the cache ages by (not the request time); nil is
	// time.Now.
	Now func() time.Time
	// OnApplied, if set, is called after every successful read of the
	// change log, with the sequence applied (Applied): the instance
	// registry reports it. It runs on the goroutine that applied the
	// changes, with the log's lock held, so it must not block or call
	// back into the verifier's Sync.
	OnApplied func(seq int64)
	// Attach, if set, is called once for every key record fetched from the
	// store, and what it returns is kept with the record and returned with
	// it by VerifyAttached: values a caller derives from a key (boxed
	// strings, lookup functions) are then made once per fetch instead of
	// once per request. It must not modify the key.
	Attach func(k *apikey.Key) any
}

// entry is a cached key record. It is never modified once cached: a
// refetch replaces it.
type entry struct {
	key      apikey.Key
	attached any // Config.Attach's result, nil without it
}

// shard is one part of the cache, chosen by a digest's first byte.
type shard struct {
	keys    *lru.Cache[apikey.Digest, *entry]
	unknown *lru.Cache[apikey.Digest, time.Time] // digest → until when it is remembered
}

// Verifier verifies API keys against a store through a cache. Its methods
// are safe for concurrent use.
type Verifier struct {
	store        Store
	format       *apikey.Format
	now          func() time.Time
	ttl          time.Duration
	negativeTTL  time.Duration
	storeTimeout time.Duration
	logger       *zap.Logger
	attach       func(*apikey.Key) any
	onApplied    func(int64)

	// epoch is the verifier's start by its clock; synced is when the
	// change log was last read successfully, as a duration since epoch
	// (monotonic with time.Now) plus one, or 0 if it never was: entries are
	// trusted while it is within ttl (see the package doc).
	epoch  time.Time
	synced atomic.Int64
	// alive is when the process was last known to run (the pause tick, or
	// a successful read of the log), as synced; checked only when
	// detectPauses (the clock is time.Now: a test's clock does not move
	// with the tick).
	alive        atomic.Int64
	detectPauses bool
	applied      atomic.Int64 // seq, readable without the log's lock
	catchUp      singleflight.Group

	shards []shard
	mask   byte

	// gen counts invalidations; a fetch caches its result only if gen is
	// unchanged since the fetch began.
	gen     atomic.Uint64
	flights singleflight.Group
	queries chan struct{} // one token per lookup in flight, up to maxQueries

	hits, misses, negativeHits  prometheus.Counter
	getErrors, changesErrors    prometheus.Counter
	fromLocal, fromNotify, poll prometheus.Counter
	lastGetErrorLog             atomic.Int64 // UnixNano of the last logged fetch failure

	// syncing serialises applying changes; it is a channel so that Sync can
	// give up waiting when its context ends.
	syncing     chan struct{}
	seq         int64 // guarded by syncing
	seqKnown    bool  // guarded by syncing
	syncFailing bool  // guarded by syncing: the last poll failed (to log only transitions)

	ctx       context.Context // ended by Close; bounds every store query
	cancel    context.CancelFunc
	done      sync.WaitGroup
	closeOnce sync.Once
}

// New returns a verifier over store and starts its sync goroutine, which
// polls the store's changes every SyncInterval and, if store implements
// keystore.Notifier, also on every notice. It reads the store's current
// change sequence first; if the store cannot answer, New still succeeds
// (a gateway must start while its database is down) and the cache is purged
// when the sequence is first read.
func New(store Store, cfg Config) (*Verifier, error) {
	if store == nil {
		return nil, errors.New("verifier: no key store")
	}
	if cfg.Format == nil {
		return nil, errors.New("verifier: no key format")
	}
	if cfg.CacheSize < 0 || cfg.CacheTTL < 0 || cfg.NegativeTTL < 0 || cfg.SyncInterval < 0 || cfg.StoreTimeout < 0 {
		return nil, errors.New("verifier: cache size and durations must not be negative")
	}
	cfg.CacheSize = orDefault(cfg.CacheSize, DefaultCacheSize)
	cfg.CacheTTL = orDefault(cfg.CacheTTL, DefaultCacheTTL)
	cfg.NegativeTTL = orDefault(cfg.NegativeTTL, DefaultNegativeTTL)
	cfg.SyncInterval = orDefault(cfg.SyncInterval, DefaultSyncInterval)
	cfg.StoreTimeout = orDefault(cfg.StoreTimeout, DefaultStoreTimeout)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	detectPauses := cfg.Now == nil
	if cfg.Now == nil {
		cfg.Now = time.Now
	}

	n := shardCount(cfg.CacheSize)
	v := &Verifier{
		store:         store,
		format:        cfg.Format,
		now:           cfg.Now,
		ttl:           cfg.CacheTTL,
		negativeTTL:   cfg.NegativeTTL,
		storeTimeout:  cfg.StoreTimeout,
		logger:        cfg.Logger,
		attach:        cfg.Attach,
		onApplied:     cfg.OnApplied,
		detectPauses:  detectPauses,
		shards:        make([]shard, n),
		mask:          byte(n - 1),
		hits:          cfg.Metrics.CacheLookups.WithLabelValues(metrics.LookupHit),
		misses:        cfg.Metrics.CacheLookups.WithLabelValues(metrics.LookupMiss),
		negativeHits:  cfg.Metrics.CacheLookups.WithLabelValues(metrics.LookupNegativeHit),
		getErrors:     cfg.Metrics.StoreErrors.WithLabelValues(metrics.OpGet),
		changesErrors: cfg.Metrics.StoreErrors.WithLabelValues(metrics.OpChanges),
		fromLocal:     cfg.Metrics.Invalidations.WithLabelValues(metrics.SourceLocal),
		fromNotify:    cfg.Metrics.Invalidations.WithLabelValues(metrics.SourceNotify),
		poll:          cfg.Metrics.Invalidations.WithLabelValues(metrics.SourcePoll),
		syncing:       make(chan struct{}, 1),
		queries:       make(chan struct{}, maxQueries),
	}
	negative := min(cfg.CacheSize, maxNegative)
	for i := range v.shards {
		var err error
		if v.shards[i].keys, err = lru.New[apikey.Digest, *entry](ceilDiv(cfg.CacheSize, n)); err != nil {
			return nil, fmt.Errorf("verifier: making the cache: %w", err)
		}
		if v.shards[i].unknown, err = lru.New[apikey.Digest, time.Time](ceilDiv(negative, n)); err != nil {
			return nil, fmt.Errorf("verifier: making the negative cache: %w", err)
		}
	}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	v.epoch = v.now()
	v.markAlive(v.epoch)

	// The sequence is read before anything is cached, so no change after it
	// can be missed. Nothing is cached yet, so the purge is free.
	if err := v.apply(v.ctx, nil); err != nil {
		v.syncFailing = true
		v.logger.Warn("key store changes unreadable at start: caching until the first successful read", zap.Error(err))
	}

	var notices <-chan struct{}
	if n, ok := store.(keystore.Notifier); ok {
		notices = n.Notices()
	}
	// The poll keeps the log read within CacheTTL while the store answers,
	// so that entries stay trusted without a request waiting for it.
	interval := min(cfg.SyncInterval, cfg.CacheTTL/2)
	v.done.Add(1)
	go v.run(interval, notices)
	if detectPauses {
		v.done.Add(1)
		go v.watchPauses()
	}
	return v, nil
}

// Verify authenticates the value of an Authorization header at request
// time now. It returns the cached key record (shared, read-only: callers
// must not modify it) or an error of type *apikey.Error whose Code() is one
// of: missing_api_key, invalid_auth_scheme, malformed_api_key,
// invalid_api_key, api_key_revoked, api_key_expired, key_store_unavailable.
// With api_key_revoked and api_key_expired it also returns the key, so
// that callers can log which key it was; otherwise the key is nil on error.
//
// A cache hit allocates nothing. A miss waits for the store at most
// StoreTimeout, whatever ctx says, since other requests may share the
// query; ctx's values are not passed to the store.
func (v *Verifier) Verify(ctx context.Context, authorization string, now time.Time) (*apikey.Key, error) {
	k, _, err := v.VerifyAttached(ctx, authorization, now)
	return k, err
}

// VerifyAttached is Verify that also returns what Config.Attach made for
// the key's record (nil without Attach, or when the key is nil).
func (v *Verifier) VerifyAttached(ctx context.Context, authorization string, now time.Time) (*apikey.Key, any, error) {
	secret, err := apikey.ParseAuthorization(authorization)
	if err != nil {
		return nil, nil, err
	}
	if err := v.format.Check(secret); err != nil {
		return nil, nil, err
	}
	d := apikey.DigestOf(secret)
	sh := &v.shards[d[0]&v.mask]
	clock := v.now()
	if e, ok := sh.keys.Get(d); ok {
		if v.trusted(clock) {
			v.hits.Inc()
			return judge(e, now)
		}
		// The log has not been read for CacheTTL: read it now, then
		// trust what is left of the cache.
		if err := v.catchUpLog(); err != nil {
			return nil, nil, ErrUnavailable
		}
		if e, ok := sh.keys.Get(d); ok {
			v.hits.Inc()
			return judge(e, now)
		}
	}
	if until, ok := sh.unknown.Get(d); ok && clock.Before(until) {
		v.negativeHits.Inc()
		return nil, nil, ErrUnknownKey
	}
	v.misses.Inc()
	e, err := v.fetch(d)
	if err != nil {
		return nil, nil, err
	}
	return judge(e, now)
}

// trusted reports whether the cache may be trusted at clock: the change
// log was read successfully within CacheTTL.
func (v *Verifier) trusted(clock time.Time) bool {
	synced := v.synced.Load()
	at := int64(clock.Sub(v.epoch))
	if synced == 0 || at-(synced-1) >= int64(v.ttl) {
		return false
	}
	return !v.detectPauses || at-(v.alive.Load()-1) < int64(pauseLimit)
}

// catchUpLog reads the change log for a request that found the cache
// untrusted, sharing the read with concurrent such requests. It fails if
// the log could not be read, or was read but the cache is still not
// trusted (the clock moved on meanwhile: not expected).
func (v *Verifier) catchUpLog() error {
	_, err, _ := v.catchUp.Do("", func() (any, error) {
		ctx, cancel := context.WithTimeout(v.ctx, v.storeTimeout)
		defer cancel()
		return nil, v.apply(ctx, v.poll)
	})
	if err != nil {
		v.logGetError(err)
		return err
	}
	if !v.trusted(v.now()) {
		return errors.New("the change log was read but the cache is still not trusted")
	}
	return nil
}

// Applied returns the change sequence the cache has applied: every change
// up to it is in force here.
func (v *Verifier) Applied() int64 { return v.applied.Load() }

// Len returns how many key records the cache holds.
func (v *Verifier) Len() int {
	n := 0
	for i := range v.shards {
		n += v.shards[i].keys.Len()
	}
	return n
}

// judge answers for a key record at request time now.
func judge(e *entry, now time.Time) (*apikey.Key, any, error) {
	k := &e.key
	if !k.RevokedAt.IsZero() {
		return k, e.attached, ErrRevokedKey
	}
	if k.Expired(now) {
		return k, e.attached, ErrExpiredKey
	}
	return k, e.attached, nil
}

// fetch gets the record of digest d from the store, sharing the query with
// concurrent fetches of d that began since the last invalidation.
func (v *Verifier) fetch(d apikey.Digest) (*entry, error) {
	gen := v.gen.Load()
	// The flight key holds the generation, so that a request arriving after
	// an invalidation starts a query of its own instead of joining one that
	// may have read the record before the change.
	var fk [len(d) + 8]byte
	copy(fk[:], d[:])
	binary.LittleEndian.PutUint64(fk[len(d):], gen)
	e, err, _ := v.flights.Do(string(fk[:]), func() (any, error) { return v.load(d, gen) })
	if err != nil {
		return nil, err
	}
	return e.(*entry), nil
}

// load queries the store for digest d and caches the answer, unless an
// invalidation happened since generation gen. It returns ErrUnknownKey or
// ErrUnavailable on failure.
func (v *Verifier) load(d apikey.Digest, gen uint64) (*entry, error) {
	ctx, cancel := context.WithTimeout(v.ctx, v.storeTimeout)
	defer cancel()
	select {
	case v.queries <- struct{}{}:
		defer func() { <-v.queries }()
	case <-ctx.Done():
		v.getErrors.Inc()
		v.logGetError(fmt.Errorf("waiting for one of %d key lookups in flight: %w", maxQueries, ctx.Err()))
		return nil, ErrUnavailable
	}
	fetchedAt := v.now()
	k, err := v.store.GetByDigest(ctx, d)
	sh := &v.shards[d[0]&v.mask]
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		if v.gen.Load() == gen {
			sh.keys.Remove(d)
			sh.unknown.Add(d, fetchedAt.Add(v.negativeTTL))
			if v.gen.Load() != gen { // see below
				sh.unknown.Remove(d)
			}
		}
		return nil, ErrUnknownKey
	case err != nil:
		v.getErrors.Inc()
		v.logGetError(err)
		return nil, ErrUnavailable
	}
	e := &entry{key: k}
	if v.attach != nil {
		e.attached = v.attach(&e.key)
	}
	if v.gen.Load() == gen {
		sh.keys.Add(d, e)
		// Invalidations bump gen before removing, so either this sees the
		// new gen or the invalidation removes what was just added. (The
		// removal may drop a newer entry of the same key: a mere miss.)
		if v.gen.Load() != gen {
			sh.keys.Remove(d)
		}
	}
	return e, nil
}

// logGetError warns that a key could not be fetched, at most once per
// errLogInterval, as an outage fails every uncached request.
func (v *Verifier) logGetError(err error) {
	now := time.Now().UnixNano()
	last := v.lastGetErrorLog.Load()
	if now-last < int64(errLogInterval) || !v.lastGetErrorLog.CompareAndSwap(last, now) {
		return
	}
	v.logger.Warn("key store unavailable: uncached keys are refused", zap.Error(err))
}

// Sync applies the store's changes now (used after a local admin change,
// counted with source "local"), returning when the cache no longer holds
// anything they invalidate. If the changes cannot be read (the store
// failed, or ctx ended while another sync was running), it empties the
// whole cache instead, which keeps that promise: a revocation made through
// this instance is in force here once Sync returns, even if the store fails
// right after the change. So Sync returns nil; the error is kept for
// callers that treat a failed invalidation as a failed change.
func (v *Verifier) Sync(ctx context.Context) error {
	if err := v.apply(ctx, v.fromLocal); err != nil {
		v.purge(v.fromLocal)
		v.logger.Warn("key store changes unreadable after a local change: cache emptied", zap.Error(err))
	}
	return nil
}

// markAlive records that the process ran at t, unless it was known to
// run later.
func (v *Verifier) markAlive(t time.Time) {
	at := int64(t.Sub(v.epoch)) + 1
	for {
		old := v.alive.Load()
		if old >= at || v.alive.CompareAndSwap(old, at) {
			return
		}
	}
}

// watchPauses notes every pauseTick that the process runs. It is a
// goroutine of its own, so that a poll stuck on a stalled store does not
// look like a pause.
func (v *Verifier) watchPauses() {
	defer v.done.Done()
	tick := time.NewTicker(pauseTick)
	defer tick.Stop()
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-tick.C:
		}
		now := v.now()
		if int64(now.Sub(v.epoch))-(v.alive.Load()-1) >= int64(pauseLimit) {
			// Back from a pause: read the log before the cache is
			// trusted again (shared with requests doing the same). If
			// it cannot be read, the outage rule holds instead: trusted
			// within CacheTTL of the last read.
			_ = v.catchUpLog()
		}
		v.markAlive(now)
	}
}

// run is the sync goroutine.
func (v *Verifier) run(interval time.Duration, notices <-chan struct{}) {
	defer v.done.Done()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-v.ctx.Done():
			return
		case <-ticker.C:
			v.syncLogged(v.poll)
		case _, ok := <-notices:
			if !ok { // the store was closed; polling goes on and fails
				notices = nil
				continue
			}
			v.syncLogged(v.fromNotify)
		}
	}
}

// syncLogged applies changes for the sync goroutine, logging when reading
// them starts or stops failing.
func (v *Verifier) syncLogged(source prometheus.Counter) {
	err := v.apply(v.ctx, source)
	if v.ctx.Err() != nil {
		return // closing
	}
	// syncFailing is only touched by New, before run starts, and here.
	switch {
	case err != nil && !v.syncFailing:
		v.logger.Warn("key store changes unreadable: cached keys stay trusted for cache_ttl", zap.Error(err))
	case err == nil && v.syncFailing:
		v.logger.Info("key store changes readable again")
	}
	v.syncFailing = err != nil
}

// apply reads the changes after the last one applied and invalidates what
// they name, counting them on source (nil: not counted). On success it
// records when the read began (the cache is trusted from then on) and
// reports the sequence applied.
func (v *Verifier) apply(ctx context.Context, source prometheus.Counter) error {
	select {
	case v.syncing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-v.syncing }()
	began := v.now()
	if err := v.applyLocked(ctx, source); err != nil {
		return err
	}
	// Stored plus one: 0 means never read.
	v.synced.Store(int64(began.Sub(v.epoch)) + 1)
	v.markAlive(began)
	v.applied.Store(v.seq)
	if v.onApplied != nil {
		v.onApplied(v.seq)
	}
	return nil
}

// applyLocked is apply with the log's lock held.
func (v *Verifier) applyLocked(ctx context.Context, source prometheus.Counter) error {
	if !v.seqKnown {
		// Whatever was cached before the sequence was known may predate
		// changes that will never be reported: drop it.
		_, seq, err := v.changes(ctx, 0, 1)
		if err != nil && !errors.Is(err, keystore.ErrTooOld) {
			return err
		}
		v.purge(source)
		v.seq, v.seqKnown = seq, true
		return nil
	}
	for {
		changes, seq, err := v.changes(ctx, v.seq, changesPage)
		if errors.Is(err, keystore.ErrTooOld) {
			v.purge(source)
			v.seq = seq
			return nil
		}
		if err != nil {
			return err
		}
		if len(changes) == 0 {
			if seq < v.seq {
				// The sequence went back: the store was replaced or
				// restored. Nothing cached can be trusted to be current.
				v.purge(source)
				v.seq = seq
			}
			return nil
		}
		v.invalidate(changes, source)
		v.seq = changes[len(changes)-1].Seq
		if len(changes) < changesPage {
			return nil
		}
	}
}

// changes queries the store's change log with a deadline.
func (v *Verifier) changes(ctx context.Context, since int64, limit int) ([]keystore.Change, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, v.storeTimeout)
	defer cancel()
	changes, seq, err := v.store.Changes(ctx, since, limit)
	if err != nil && !errors.Is(err, keystore.ErrTooOld) {
		v.changesErrors.Inc()
		return nil, 0, fmt.Errorf("reading key store changes since %d: %w", since, err)
	}
	return changes, seq, err
}

// invalidate drops the changed keys from both caches.
func (v *Verifier) invalidate(changes []keystore.Change, source prometheus.Counter) {
	v.gen.Add(1) // before removing: see load
	for i := range changes {
		d := changes[i].Digest
		sh := &v.shards[d[0]&v.mask]
		sh.keys.Remove(d)
		sh.unknown.Remove(d)
	}
	if source != nil {
		source.Add(float64(len(changes)))
	}
}

// purge empties both caches.
func (v *Verifier) purge(source prometheus.Counter) {
	v.gen.Add(1) // before removing: see load
	for i := range v.shards {
		v.shards[i].keys.Purge()
		v.shards[i].unknown.Purge()
	}
	if source != nil {
		source.Inc()
	}
}

// Close stops the sync goroutine and waits for it. Verify still answers
// from the cache afterwards, but every miss fails with ErrUnavailable.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		v.cancel()
		v.done.Wait()
	})
	return nil
}

// shardCount returns how many shards a cache of size entries gets: a power
// of two up to maxShards, each holding at least minShardSize entries.
func shardCount(size int) int {
	n := maxShards
	for n > 1 && size < n*minShardSize {
		n /= 2
	}
	return n
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}
