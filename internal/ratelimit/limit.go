// Package ratelimit is keygate's per-key rate limiting (issue 12): the
// syntax of a key's rate_limits ("N/WINDOW"), their compiled form, and the
// limiters that count requests in sliding windows, in memory (Local) or
// shared by several gateway instances through Redis (Redis).
//
// Limits are checked and normalised once, when a key is created or updated
// or a Caddyfile is read (NormalizeLimit, CheckLimits), and compiled once
// per cached key (Compile) into a Policy that the request path uses without
// parsing or allocating.
//
// Counting state is keyed by the key's ID and a window's length, never by
// the limit list: changing a key's N keeps what it used, and so does
// adding or removing another window.
package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/policy"
)

// MaxLimits is the most limits a key (or a scope's default) holds.
const MaxLimits = 4

// MaxN is the largest N of a limit.
const MaxN = 1_000_000_000

// Window bounds.
const (
	MinWindow = time.Second
	MaxWindow = 30 * 24 * time.Hour
)

// Limit is one parsed rate limit: at most N requests in any span of Window.
type Limit struct {
	N      int64
	Window time.Duration
}

// units are the window units, largest first, as normalised forms use them.
var units = [...]struct {
	suffix byte
	d      time.Duration
}{{'d', 24 * time.Hour}, {'h', time.Hour}, {'m', time.Minute}, {'s', time.Second}}

// String returns l's normal form, "N/WINDOW" with the window in the
// largest unit that divides it: 100/1m, not 100/60s.
func (l Limit) String() string {
	return strconv.FormatInt(l.N, 10) + "/" + WindowString(l.Window)
}

// WindowString returns w in the largest unit that divides it: 1m, 90s, 1d.
func WindowString(w time.Duration) string {
	for _, u := range units {
		if w%u.d == 0 {
			return strconv.FormatInt(int64(w/u.d), 10) + string(u.suffix)
		}
	}
	return w.String() // not a whole number of seconds: no limit has it
}

// errSyntax is the error of an entry that is not N/WINDOW at all.
var errSyntax = errors.New("must be N/WINDOW, N requests in a WINDOW of a whole number of s, m, h or d, such as 100/1m")

// ParseLimit parses "N/WINDOW": N from 1 to MaxN, WINDOW a whole number
// of s, m, h or d from MinWindow to MaxWindow. Errors quote at most 12
// bytes of s.
func ParseLimit(s string) (Limit, error) {
	ns, ws, ok := strings.Cut(s, "/")
	if !ok || ns == "" || len(ws) < 2 {
		return Limit{}, fmt.Errorf("%s %w", apikey.QuoteInput(s), errSyntax)
	}
	n, ok := digits(ns)
	if !ok {
		return Limit{}, fmt.Errorf("%s %w", apikey.QuoteInput(s), errSyntax)
	}
	if n < 1 || n > MaxN {
		return Limit{}, fmt.Errorf("%s: N must be from 1 to %d", apikey.QuoteInput(s), MaxN)
	}
	count, ok := digits(ws[:len(ws)-1])
	if !ok {
		return Limit{}, fmt.Errorf("%s %w", apikey.QuoteInput(s), errSyntax)
	}
	var unit time.Duration
	for _, u := range units {
		if ws[len(ws)-1] == u.suffix {
			unit = u.d
		}
	}
	if unit == 0 {
		return Limit{}, fmt.Errorf("%s: the window's unit must be s, m, h or d", apikey.QuoteInput(s))
	}
	// count is at most 10^18 (digits caps it), so compare before
	// multiplying, which could overflow.
	if count < 1 || count > int64(MaxWindow/unit) {
		return Limit{}, fmt.Errorf("%s: WINDOW must be from 1s to 30d", apikey.QuoteInput(s))
	}
	return Limit{N: n, Window: time.Duration(count) * unit}, nil
}

// digits parses s, one to 18 ASCII digits, as a decimal number; more
// digits than that are no valid N or WINDOW anyway.
func digits(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// NormalizeLimit returns s, a limit as ParseLimit accepts it, in normal
// form (Limit.String).
func NormalizeLimit(s string) (string, error) {
	l, err := ParseLimit(s)
	if err != nil {
		return "", err
	}
	return l.String(), nil
}

// CheckLimits returns list normalised, in the same order: at most
// MaxLimits entries, each accepted by ParseLimit, no two with the same
// window (they would count the same requests: give the smaller N only).
// An entry's error is a *policy.EntryError naming its index from 0. An
// empty or nil list returns nil: no limit of the key's own.
func CheckLimits(list []string) ([]string, error) {
	ls, err := ParseLimits(list)
	if err != nil || len(ls) == 0 {
		return nil, err
	}
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.String()
	}
	return out, nil
}

// ParseLimits parses list as CheckLimits checks it.
func ParseLimits(list []string) ([]Limit, error) {
	if len(list) > MaxLimits {
		return nil, fmt.Errorf("must hold at most %d limits, not %d", MaxLimits, len(list))
	}
	if len(list) == 0 {
		return nil, nil
	}
	out := make([]Limit, 0, len(list))
	for i, s := range list {
		l, err := ParseLimit(s)
		if err != nil {
			return nil, &policy.EntryError{Index: i, Err: err}
		}
		for j, prev := range out {
			if prev.Window == l.Window {
				return nil, &policy.EntryError{Index: i, Err: fmt.Errorf(
					"%s has the window of entry %d (%s): give each window once", apikey.QuoteInput(s), j, WindowString(l.Window))}
			}
		}
		out = append(out, l)
	}
	return out, nil
}
