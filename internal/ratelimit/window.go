package ratelimit

import "time"

// Buckets is how many sub-windows ("buckets") a window is counted in.
//
// The algorithm is a sliding window of buckets with conservative
// accounting: a window of length W is cut into buckets of W/Buckets
// aligned on the Unix epoch, and a request at time t is admitted only if
// the requests counted in the bucket of t and the Buckets buckets before
// it number fewer than N. Those Buckets+1 buckets cover every instant of
// (t-W, t] and a little more, so:
//
//   - never more than N requests are admitted in any span of W (a request
//     admitted at t saw every earlier admitted request of (t-W, t]);
//   - a request is always admitted if fewer than N were admitted in the
//     span of W + W/Buckets before it: the limiter may refuse early, by
//     counting requests at most W/Buckets (5%) older than the window, but
//     never admits late.
//
// A key's state is Buckets+1 counters per window: bounded whatever N is,
// unlike a log of timestamps, and exact in the direction that matters,
// unlike the two-bucket approximation (which admits more than N across a
// boundary when requests are uneven).
const Buckets = 20

// ring is the number of counters a window keeps: the current bucket and
// the Buckets before it.
const ring = Buckets + 1

// window counts one key's requests in one window length.
type window struct {
	// length is the window; 0 marks a free slot.
	length time.Duration
	// head is the index of the newest bucket (Unix nanoseconds divided by
	// the bucket size); counts[b%ring] holds bucket b for b in
	// (head-ring, head].
	head   int64
	counts [ring]uint32
}

// size returns the bucket length of w, in nanoseconds. Windows are whole
// seconds, so this is exact (1s/20 = 50ms).
func (w *window) size() int64 { return int64(w.length) / Buckets }

// reset makes w a fresh window of length l at time t (Unix nanoseconds).
func (w *window) reset(l time.Duration, t int64) {
	*w = window{length: l}
	w.head = t / w.size()
}

// advance moves w's head to the bucket of t, zeroing the buckets that
// left the window. A clock that went back leaves the head where it is:
// the requests stay counted, which can only refuse, never over-admit.
func (w *window) advance(t int64) {
	c := t / w.size()
	if c <= w.head {
		return
	}
	if c-w.head >= ring {
		w.counts = [ring]uint32{}
	} else {
		for b := w.head + 1; b <= c; b++ {
			w.counts[b%ring] = 0
		}
	}
	w.head = c
}

// idle reports whether every bucket of w has left the window at t: w then
// counts nothing and may be forgotten.
func (w *window) idle(t int64) bool {
	return w.length == 0 || t/w.size()-w.head >= ring
}

// sum returns the requests w counts (after advance).
func (w *window) sum() int64 {
	var s int64
	for _, c := range w.counts {
		s += int64(c)
	}
	return s
}

// add counts n more requests in the current bucket, saturating.
func (w *window) add(n int64) {
	i := w.head % ring
	v := int64(w.counts[i]) + n
	w.counts[i] = uint32(min(v, 1<<32-1))
}

// untilBelow returns how long after t the count of w falls below n, as its
// oldest buckets leave the window: bucket b leaves when the head reaches
// b+ring, at (b+ring)*size.
// 0 if the count is already below n.
func (w *window) untilBelow(n int64, t int64) time.Duration {
	s := w.sum()
	if s < n {
		return 0
	}
	size := w.size()
	for b := w.head - Buckets; b <= w.head; b++ {
		s -= int64(w.counts[b%ring])
		if s < n {
			return time.Duration((b+ring)*size - t)
		}
	}
	return time.Duration((w.head+ring)*size - t) // n <= 0: no limit has it
}

// resetIn returns how long after t the oldest request w counts leaves the
// window, so that more quota comes back; 0 if it counts nothing.
func (w *window) resetIn(t int64) time.Duration {
	size := w.size()
	for b := w.head - Buckets; b <= w.head; b++ {
		if w.counts[b%ring] != 0 {
			return time.Duration((b+ring)*size - t)
		}
	}
	return 0
}

// entry is one key's counting state: a window per window length its
// limits have, in MaxLimits slots.
type entry struct {
	windows [MaxLimits]window
}

// slot returns the window of length l at t, taking a free slot, or one
// whose length p no longer has, if there is none yet. Counts are kept by
// window length, so changing a limit's N keeps them.
func (e *entry) slot(l time.Duration, p *Policy, t int64) *window {
	var spare *window
	for i := range e.windows {
		w := &e.windows[i]
		if w.length == l {
			return w
		}
		if spare == nil && (w.length == 0 || w.idle(t) || !p.has(w.length)) {
			spare = w
		}
	}
	// p has at most MaxLimits distinct windows, so a slot whose length
	// it lacks exists whenever no slot has l.
	spare.reset(l, t)
	return spare
}

// idle reports whether e counts nothing at t.
func (e *entry) idle(t int64) bool {
	for i := range e.windows {
		if !e.windows[i].idle(t) {
			return false
		}
	}
	return true
}

// has reports whether p has a limit of window l.
func (p *Policy) has(l time.Duration) bool {
	for _, x := range p.limits {
		if x.Window == l {
			return true
		}
	}
	return false
}

// decide judges one request at t (Unix nanoseconds) against p, counting
// it in every window of e if admitted.
func (e *entry) decide(p *Policy, t int64) Decision {
	var ws [MaxLimits]*window
	allowed := e.windowsOf(p, t, &ws)
	if allowed {
		for i := range p.limits {
			ws[i].add(1)
		}
	}
	return report(p, t, &ws, allowed)
}

// windowsOf sets ws to e's windows of p's limits, advanced to t, and
// reports whether every limit admits one more request.
func (e *entry) windowsOf(p *Policy, t int64, ws *[MaxLimits]*window) bool {
	allowed := true
	for i, l := range p.limits {
		w := e.slot(l.Window, p, t)
		w.advance(t)
		ws[i] = w
		if w.sum() >= l.N {
			allowed = false
		}
	}
	return allowed
}

// report returns the decision for a request at t under p whose windows
// ws count it already if it was allowed.
func report(p *Policy, t int64, ws *[MaxLimits]*window, allowed bool) Decision {
	d := Decision{Allowed: allowed}
	if allowed {
		// The limit closest to exhaustion: least remaining as a share
		// of N (r1/n1 < r2/n2 without division).
		best := -1
		var br, bn int64
		for i, l := range p.limits {
			r := max(l.N-ws[i].sum(), 0)
			if best < 0 || r*bn < br*l.N {
				best, br, bn = i, r, l.N
			}
		}
		d.Limit, d.Remaining = best, br
		d.Reset = ws[best].resetIn(t)
		return d
	}
	for i, l := range p.limits {
		if ws[i].sum() < l.N {
			continue
		}
		if r := ws[i].untilBelow(l.N, t); r >= d.RetryAfter {
			d.Limit, d.RetryAfter = i, r
		}
	}
	d.Reset = d.RetryAfter
	return d
}
