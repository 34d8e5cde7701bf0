package ratelimit

import (
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Policy is a key's limits compiled for the request path: parsed once per
// cached key record, with the RateLimit-Policy field value made once.
type Policy struct {
	limits []Limit
	// names are the policies' names as Structured Field strings, by limit:
	// the window (`"1m"`), unique within a key.
	names []string
	// header is the RateLimit-Policy field value: every limit, such as
	// `"1m";q=100;w=60, "1d";q=10000;w=86400`.
	header string
	// longest is the longest window, how long an idle key's counts matter.
	longest time.Duration
}

// Compile returns the policy of list, limits as ParseLimits accepts them;
// nil for an empty list (no limit).
func Compile(list []string) (*Policy, error) {
	ls, err := ParseLimits(list)
	if err != nil || len(ls) == 0 {
		return nil, err
	}
	return NewPolicy(ls), nil
}

// NewPolicy returns the policy of ls: 1 to MaxLimits limits of distinct
// windows, as ParseLimits returns them.
func NewPolicy(ls []Limit) *Policy {
	p := &Policy{limits: append([]Limit(nil), ls...), names: make([]string, len(ls))}
	var b strings.Builder
	for i, l := range ls {
		p.names[i] = `"` + WindowString(l.Window) + `"`
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.names[i])
		b.WriteString(";q=")
		b.WriteString(strconv.FormatInt(l.N, 10))
		b.WriteString(";w=")
		b.WriteString(strconv.FormatInt(int64(l.Window/time.Second), 10))
		p.longest = max(p.longest, l.Window)
	}
	p.header = b.String()
	return p
}

// Limits returns the policy's limits; the caller must not modify them.
func (p *Policy) Limits() []Limit { return p.limits }

// PolicyHeader returns the RateLimit-Policy field value: every limit as a
// quota policy item of draft-ietf-httpapi-ratelimit-headers-10, named by
// its window, with q (N) and w (the window in seconds).
func (p *Policy) PolicyHeader() string { return p.header }

// Strings returns the limits in normal form.
func (p *Policy) Strings() []string {
	out := make([]string, len(p.limits))
	for i, l := range p.limits {
		out[i] = l.String()
	}
	return out
}

// Decision is a limiter's answer to one request.
type Decision struct {
	// Allowed says the request was admitted, and counted against every
	// limit; a refused request counts against none.
	Allowed bool
	// Limit is the index in the policy of the limit reported: when
	// admitted, the one closest to exhaustion (least remaining as a
	// share of N); when refused, the exhausted one that frees up last.
	Limit int
	// Remaining is what that limit still admits, after this request.
	Remaining int64
	// Reset is how long until that limit admits more than it does now
	// (its oldest counted requests leave the window); 0 if it counts
	// nothing.
	Reset time.Duration
	// RetryAfter, when refused, is how long until every limit admits a
	// request again.
	RetryAfter time.Duration
}

// AppendRateLimit appends the RateLimit field value of d, for the policy
// it was decided under: the reported limit as a service limit item of
// draft-ietf-httpapi-ratelimit-headers-10, `"1m";r=57;t=3` (t, the reset
// in whole seconds rounded up, is left out when the limit counts
// nothing: no quota is waiting to come back).
func (p *Policy) AppendRateLimit(b []byte, d Decision) []byte {
	b = append(b, p.names[d.Limit]...)
	b = append(b, ";r="...)
	b = strconv.AppendInt(b, d.Remaining, 10)
	if d.Reset > 0 {
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, Seconds(d.Reset), 10)
	}
	return b
}

// Seconds returns d in whole seconds, rounded up, at least 1: the form of
// Retry-After and of a RateLimit reset, which must not tell a client to
// come back before the quota is there.
func Seconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// slab is a run of memory that RateLimitValue carves header values from:
// an admitted answer's RateLimit field then costs no allocation of its
// own, only a share of the slab's (one allocation per slabStrings
// values). A slab is kept alive by the answers whose headers use it.
type slab struct {
	buf  []byte
	strs []string
}

// Slab sizes: a value is at most ~40 bytes ("30d" names, 10-digit r,
// 7-digit t).
const (
	slabBytes   = 8 << 10
	slabStrings = 256
	maxValueLen = 64
)

var slabs = sync.Pool{New: func() any { return new(slab) }}

// RateLimitValue returns the RateLimit field value of d under p as a
// one-element header value list, without allocating per call (see slab).
// The caller must not modify the slice or append to it.
func (p *Policy) RateLimitValue(d Decision) []string {
	s := slabs.Get().(*slab)
	if cap(s.buf)-len(s.buf) < maxValueLen {
		s.buf = make([]byte, 0, slabBytes)
	}
	if len(s.strs) == cap(s.strs) {
		s.strs = make([]string, 0, slabStrings)
	}
	start := len(s.buf)
	s.buf = p.AppendRateLimit(s.buf, d)
	// The bytes from start on are never written again: later values are
	// appended after them, and a full slab is replaced, not reused.
	v := unsafe.String(&s.buf[start], len(s.buf)-start)
	s.strs = append(s.strs, v)
	n := len(s.strs)
	out := s.strs[n-1 : n : n]
	slabs.Put(s)
	return out
}
