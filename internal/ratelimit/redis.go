package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Defaults of the Redis limiter.
const (
	// DefaultSyncInterval is how often the counts admitted locally are sent
	// to Redis, and the shared counts read back, in one pipeline.
	DefaultSyncInterval = 100 * time.Millisecond
	// DefaultRedisTimeout bounds one call to Redis.
	DefaultRedisTimeout = 500 * time.Millisecond
)

// budgetShare is the share of a key's remaining quota, as last read from
// Redis, that an instance may admit by itself before it reads the count
// again: 1/16. Each read gives a new budget; a limit with less than half
// of N remaining gives none (near the limit every request asks Redis).
// What Redis does not see when it judges is the budgets spent and not yet
// sent, so with k instances at most k*N/16 are admitted over N, and only
// when a key's traffic spends half its limit within one sync interval
// (else the budgets were sent before Redis judges near the limit).
const budgetShare = 16

// staleAfter is how many sync intervals a key's counts read from Redis are
// trusted for local decisions: a key not synced for that long (it had no
// local traffic, so the flusher skipped it) is read again first.
const staleAfter = 10

// downBackoff is how long after a failed call the limiter answers
// ErrUnavailable without calling Redis: during an outage requests fail at
// once instead of each waiting for a timeout. The flusher keeps trying.
const downBackoff = time.Second

// ErrUnavailable is returned by Redis.Allow while Redis cannot be reached.
var ErrUnavailable = errors.New("the shared rate-limit store cannot be reached")

// RedisConfig configures a Redis limiter.
type RedisConfig struct {
	// URL is the Redis URL, redis://[user:password@]host:port/db (or
	// rediss:// for TLS). It may hold a password: it is never logged.
	URL string
	// SyncInterval: DefaultSyncInterval if 0.
	SyncInterval time.Duration
	// Timeout bounds one call: DefaultRedisTimeout if 0.
	Timeout time.Duration
	// Logger logs failures, at most one line per downBackoff.
	Logger *zap.Logger
	// Errors, if set, counts failed calls.
	Errors prometheus.Counter
}

// Redis counts requests in Redis, one count shared by every instance
// configured with the same Redis. It keeps a copy of each key's shared
// counts and decides locally while the key is far from its limits:
// admitting up to 1/budgetShare of the remaining quota it last read, and
// sending what it admitted in batches every SyncInterval (as Unkey does).
// Near a limit (that budget spent) or with counts older than staleAfter
// intervals, it asks Redis, which judges and counts the request
// atomically in a Lua script. See docs/DESIGN.md for the error bound.
type Redis struct {
	client  *redis.Client
	script  *redis.Script
	shards  [shards]rshard
	timeout time.Duration
	stale   int64 // staleAfter intervals, in nanoseconds
	logger  *zap.Logger
	errs    prometheus.Counter
	// downUntil is the Unix nanoseconds until which calls are not tried.
	downUntil atomic.Int64
	lastLog   atomic.Int64
	stop      chan struct{}
	done      chan struct{}
}

// rshard is one locked part of the Redis limiter's state.
type rshard struct {
	mu      sync.Mutex
	entries map[string]*rentry
	// dirty are the IDs of entries with unsent counts, in the order they
	// became dirty; swapped with spare by the flusher.
	dirty, spare []string
	_            [16]byte
}

// rentry is one key's copy of its shared counts, plus what this instance
// admitted and has not sent yet (counted in the windows too).
type rentry struct {
	entry
	// unsent are requests admitted here and not yet sent, by slot of
	// entry.windows.
	unsent [MaxLimits]int64
	// inflight are requests sent in calls not answered yet, by slot:
	// counted in Redis once the call runs, and in the windows here until
	// the call's answer replaces them, so that an answer to another call
	// does not drop them meanwhile.
	inflight [MaxLimits]int64
	// budget is how many more requests may be admitted without asking
	// Redis.
	budget int64
	// synced is when the counts were last read (Unix nanoseconds); 0
	// never.
	synced int64
	dirty  bool
	// policy is the key's policy of its last request, for the budget the
	// flusher's reads give.
	policy *Policy
	// judged is the policy of the last request Redis judged: local
	// decisions are made only under it, so that a window the key did not
	// have then (its limits changed) is read from Redis before it counts.
	judged *Policy
}

// NewRedis returns a limiter over the Redis at cfg.URL. It does not
// connect: a gateway starts while Redis is down, and its limited keys get
// ErrUnavailable until Redis answers.
func NewRedis(cfg RedisConfig) (*Redis, error) {
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		// ParseURL's errors can quote the URL, password and all.
		return nil, errors.New("rate_limit_store redis: the URL is not a redis:// or rediss:// URL")
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultRedisTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	// A failed call is answered by rate_limit_on_error, not retried: a
	// retry would hold the request for another timeout.
	opts.MaxRetries = -1
	opts.DialTimeout = cfg.Timeout
	opts.ReadTimeout = cfg.Timeout
	opts.WriteTimeout = cfg.Timeout
	opts.ContextTimeoutEnabled = true
	r := &Redis{
		client:  redis.NewClient(opts),
		script:  redis.NewScript(countScript),
		timeout: cfg.Timeout,
		stale:   int64(staleAfter * cfg.SyncInterval),
		logger:  cfg.Logger,
		errs:    cfg.Errors,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for i := range r.shards {
		r.shards[i].entries = make(map[string]*rentry)
	}
	go r.run(cfg.SyncInterval)
	return r, nil
}

// countScript adds a key's unsent requests to its windows in Redis, drops
// the buckets that left them, and, when asked (ARGV[1] = 1), admits and
// counts one more request if every limit allows it. Each window is a hash
// keygate:rl:{<key ID>}:<seconds>, bucket index → count. It returns
// {admitted, buckets of window 1, ...}, each a flat list of index, count.
//
// ARGV per window i, from 2+(i-1)*4: head bucket, N (0: not judged), to
// add, expiry in milliseconds.
var countScript = `
local admit = tonumber(ARGV[1])
local ok = 1
local heads, lists = {}, {}
for i, key in ipairs(KEYS) do
  local o = 2 + (i - 1) * 4
  local head, n, add = tonumber(ARGV[o]), tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
  heads[i] = ARGV[o]
  if add > 0 then redis.call('HINCRBY', key, ARGV[o], add) end
  local all = redis.call('HGETALL', key)
  local sum, kept = 0, {}
  for j = 1, #all, 2 do
    local b = tonumber(all[j])
    if b <= head - ` + ringString + ` then
      redis.call('HDEL', key, all[j])
    else
      local c = tonumber(all[j + 1])
      sum = sum + c
      kept[#kept + 1] = b
      kept[#kept + 1] = c
    end
  end
  lists[i] = kept
  if n > 0 and sum >= n then ok = 0 end
  redis.call('PEXPIRE', key, ARGV[o + 3])
end
if admit == 1 and ok == 1 then
  for i, key in ipairs(KEYS) do
    redis.call('HINCRBY', key, heads[i], 1)
    local l = lists[i]
    l[#l + 1] = tonumber(heads[i])
    l[#l + 1] = 1
  end
else
  ok = 0
end
local out = {ok}
for i = 1, #KEYS do out[#out + 1] = lists[i] end
return out
`

var ringString = strconv.Itoa(ring)

// syncCalls counts the calls made for a request, for tests.
var syncCalls atomic.Int64

// Allow judges a request of the key id at now against p. Far from the
// key's limits it decides locally; near them it asks Redis. It returns
// ErrUnavailable (and no decision) while Redis cannot be reached.
func (r *Redis) Allow(id string, p *Policy, now time.Time) (Decision, error) {
	t := now.UnixNano()
	if t < r.downUntil.Load() {
		return Decision{}, ErrUnavailable
	}
	sh := &r.shards[shardOf(id)]
	sh.mu.Lock()
	e := sh.entries[id]
	if e == nil {
		e = &rentry{}
		sh.entries[id] = e
	}
	e.policy = p
	if e.judged == p && t-e.synced < r.stale && e.budget > 0 {
		var ws [MaxLimits]*window
		allowed := e.windowsOf(p, t, &ws)
		if allowed {
			// Counted in the copy, to be sent by the flusher.
			for i := range p.limits {
				ws[i].add(1)
				e.unsent[e.slotIndex(ws[i])]++
			}
			e.budget--
			if !e.dirty {
				e.dirty = true
				sh.dirty = append(sh.dirty, id)
			}
		}
		// A refusal needs no call either: the shared count only grew
		// since it was read, but for what left the window, which the
		// copy drops as time passes.
		d := report(p, t, &ws, allowed)
		sh.mu.Unlock()
		return d, nil
	}
	// Near the limit, or counts too old: Redis judges. What this instance
	// admitted and did not send goes with the call.
	call := r.callFor(id, e, p, t, true)
	sh.mu.Unlock()
	res, err := r.run1(call)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if err != nil {
		e.restore(call)
		return Decision{}, err
	}
	e.apply(call, res, t)
	e.judged = p
	var ws [MaxLimits]*window
	e.windowsOf(p, t, &ws)
	return report(p, t, &ws, res.admitted), nil
}

// slotIndex returns the index of w in e.windows.
func (e *entry) slotIndex(w *window) int {
	for i := range e.windows {
		if &e.windows[i] == w {
			return i
		}
	}
	return 0
}

// call is one key's script call: its windows, their unsent counts (taken
// from the entry) and whether to judge a request.
type call struct {
	id    string
	admit bool
	n     int
	slots [MaxLimits]int
	len   [MaxLimits]time.Duration
	head  [MaxLimits]int64
	limit [MaxLimits]int64
	add   [MaxLimits]int64
}

// result is a script call's answer.
type result struct {
	admitted bool
	buckets  [MaxLimits][]int64
}

// callFor prepares the call for e, the entry of key id, at t, taking its unsent counts. With
// admit, the windows are p's; else every window e holds.
func (r *Redis) callFor(id string, e *rentry, p *Policy, t int64, admit bool) *call {
	c := &call{id: id, admit: admit}
	if admit {
		for _, l := range p.limits {
			w := e.slot(l.Window, p, t)
			w.advance(t)
			i := e.slotIndex(w)
			c.slots[c.n], c.len[c.n], c.head[c.n], c.limit[c.n] = i, l.Window, w.head, l.N
			c.n++
		}
	} else {
		for i := range e.windows {
			w := &e.windows[i]
			if w.length == 0 {
				continue
			}
			w.advance(t)
			c.slots[c.n], c.len[c.n], c.head[c.n] = i, w.length, w.head
			c.n++
		}
	}
	for j := 0; j < c.n; j++ {
		c.add[j] = e.unsent[c.slots[j]]
		e.unsent[c.slots[j]] = 0
		e.inflight[c.slots[j]] += c.add[j]
	}
	return c
}

// restore gives back the unsent counts of a call that failed.
func (e *rentry) restore(c *call) {
	for j := 0; j < c.n; j++ {
		e.inflight[c.slots[j]] -= c.add[j]
		if e.windows[c.slots[j]].length == c.len[j] {
			e.unsent[c.slots[j]] += c.add[j]
		}
	}
}

// apply sets e's windows to the shared counts of res, plus what was
// admitted here and not sent or not answered yet, and gives it a new
// budget.
func (e *rentry) apply(c *call, res *result, t int64) {
	for j := 0; j < c.n; j++ {
		e.inflight[c.slots[j]] -= c.add[j]
		w := &e.windows[c.slots[j]]
		if w.length != c.len[j] {
			continue // the slot went to another window meanwhile
		}
		w.advance(t)
		w.counts = [ring]uint32{}
		list := res.buckets[j]
		for k := 0; k+1 < len(list); k += 2 {
			b, n := list[k], list[k+1]
			switch {
			case b <= w.head-ring:
				// Left the window since the call.
			case b > w.head:
				// Counted by an instance whose clock is ahead: kept
				// in the newest bucket, which leaves last.
				w.counts[w.head%ring] += uint32(n)
			default:
				w.counts[b%ring] += uint32(n)
			}
		}
		w.add(e.unsent[c.slots[j]] + e.inflight[c.slots[j]])
	}
	e.synced = t
	e.budget = 0
	if p := e.policy; p != nil {
		e.budget = -1
		for _, l := range p.limits {
			for i := range e.windows {
				if e.windows[i].length == l.Window {
					h := max(l.N-e.windows[i].sum(), 0)
					b := h / budgetShare
					if 2*h < l.N {
						b = 0
					}
					if e.budget < 0 || b < e.budget {
						e.budget = b
					}
				}
			}
		}
		e.budget = max(e.budget, 0)
	}
}

// redisKey is the hash of one key's window: the key ID in braces, so that
// a Redis Cluster keeps a key's windows on one node.
func redisKey(id string, window time.Duration) string {
	return "keygate:rl:{" + id + "}:" + strconv.FormatInt(int64(window/time.Second), 10)
}

// args returns the script's keys and arguments for c.
func (c *call) args() ([]string, []any) {
	keys := make([]string, c.n)
	args := make([]any, 1, 1+4*c.n)
	args[0] = 0
	if c.admit {
		args[0] = 1
	}
	for j := 0; j < c.n; j++ {
		keys[j] = redisKey(c.id, c.len[j])
		// A bucket more than the window, so that the hash outlives its
		// last bucket; and a second for clocks a little apart.
		ttl := (c.len[j] + c.len[j]/Buckets + time.Second) / time.Millisecond
		args = append(args, c.head[j], c.limit[j], c.add[j], int64(ttl))
	}
	return keys, args
}

// run1 makes one call.
func (r *Redis) run1(c *call) (*result, error) {
	syncCalls.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	keys, args := c.args()
	v, err := r.script.Run(ctx, r.client, keys, args...).Result()
	if err != nil {
		r.failed(err)
		return nil, ErrUnavailable
	}
	return parseResult(v, c.n)
}

// parseResult reads the script's answer.
func parseResult(v any, n int) (*result, error) {
	top, ok := v.([]any)
	if !ok || len(top) != 1+n {
		return nil, fmt.Errorf("rate-limit script answered %T of %d entries, want %d", v, len(top), 1+n)
	}
	res := &result{}
	if a, ok := top[0].(int64); ok && a == 1 {
		res.admitted = true
	}
	for j := 0; j < n; j++ {
		list, _ := top[1+j].([]any)
		res.buckets[j] = make([]int64, 0, len(list))
		for _, x := range list {
			i, _ := x.(int64)
			res.buckets[j] = append(res.buckets[j], i)
		}
	}
	return res, nil
}

// failed counts and logs a failed call, and stops calls for downBackoff.
func (r *Redis) failed(err error) {
	now := time.Now().UnixNano()
	r.downUntil.Store(now + int64(downBackoff))
	if r.errs != nil {
		r.errs.Inc()
	}
	last := r.lastLog.Load()
	if now-last >= int64(downBackoff) && r.lastLog.CompareAndSwap(last, now) {
		// go-redis errors name the address, never the password.
		r.logger.Error("rate-limit store call failed", zap.Error(err))
	}
}

// run sends the unsent counts every interval until Close, and forgets
// idle keys every DefaultSweepInterval.
func (r *Redis) run(interval time.Duration) {
	defer close(r.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	lastSweep := time.Now()
	for {
		select {
		case <-r.stop:
			r.flush(time.Now())
			return
		case now := <-t.C:
			r.flush(now)
			if now.Sub(lastSweep) >= DefaultSweepInterval {
				r.Sweep(now)
				lastSweep = now
			}
		}
	}
}

// flush sends every dirty key's unsent counts in one pipeline and reads
// their shared counts back. While Redis is down it only pings, to learn
// when it is back.
func (r *Redis) flush(now time.Time) {
	t := now.UnixNano()
	if t < r.downUntil.Load() {
		return
	}
	var calls []*call
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		sh.dirty, sh.spare = sh.spare[:0], sh.dirty
		for _, id := range sh.spare {
			e := sh.entries[id]
			if e == nil {
				continue
			}
			e.dirty = false
			c := r.callFor(id, e, nil, t, false)
			calls = append(calls, c)
		}
		sh.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	if len(calls) == 0 {
		if r.downUntil.Load() != 0 {
			// Down before: a ping says whether it is back.
			if err := r.client.Ping(ctx).Err(); err != nil {
				r.failed(err)
				return
			}
			r.downUntil.Store(0)
		}
		return
	}
	pipe := r.client.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		keys, args := c.args()
		cmds[i] = r.script.EvalSha(ctx, pipe, keys, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The first flush after Redis (re)started: load the script and
		// send again.
		if err = r.script.Load(ctx, r.client).Err(); err == nil {
			pipe = r.client.Pipeline()
			for i, c := range calls {
				keys, args := c.args()
				cmds[i] = r.script.EvalSha(ctx, pipe, keys, args...)
			}
			_, _ = pipe.Exec(ctx)
		}
	}
	failed := false
	for i, c := range calls {
		sh := &r.shards[shardOf(c.id)]
		v, err := cmds[i].Result()
		var res *result
		if err == nil {
			res, err = parseResult(v, c.n)
		}
		sh.mu.Lock()
		e := sh.entries[c.id]
		if e != nil {
			if err != nil {
				e.restore(c)
				if !e.dirty {
					e.dirty = true
					sh.dirty = append(sh.dirty, c.id)
				}
			} else {
				e.apply(c, res, t)
			}
		}
		sh.mu.Unlock()
		if err != nil && !failed {
			failed = true
			r.failed(err)
		}
	}
	if !failed {
		r.downUntil.Store(0)
	}
}

// Sweep forgets the keys whose every window has passed at now and that
// have nothing left to send.
func (r *Redis) Sweep(now time.Time) {
	t := now.UnixNano()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for id, e := range sh.entries {
			if !e.dirty && e.unsent == [MaxLimits]int64{} && e.inflight == [MaxLimits]int64{} && e.idle(t) {
				delete(sh.entries, id)
			}
		}
		sh.mu.Unlock()
	}
}

// Close sends what is unsent, stops the flusher and closes the client.
func (r *Redis) Close() error {
	close(r.stop)
	<-r.done
	return r.client.Close()
}
