package keyservice

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// Limits of a usage query.
const (
	// DefaultUsageSince is how far back a usage query reaches when it
	// names no since.
	DefaultUsageSince = 24 * time.Hour
	// DefaultUsageStep is the step of a usage query that names none.
	DefaultUsageStep = time.Hour
	// MaxUsagePoints is the most points a usage series may hold.
	MaxUsagePoints = 1000
)

// PendingCounts reports usage counts noted but not yet written to the
// store (lastused.Recorder). The service adds them to what it reads, so
// that an answer includes the requests of the last seconds.
type PendingCounts interface {
	// PendingCounts returns the counts of key id not yet written, of
	// every key if id is "".
	PendingCounts(id string) []keystore.UsageCount
}

// UsagePoint is the requests of one step: admitted (OK) and refused, by
// result.
type UsagePoint struct {
	Start   time.Time        `json:"start"`
	OK      int64            `json:"ok"`
	Refused map[string]int64 `json:"refused"`
}

// Total returns the point's requests, admitted and refused.
func (p UsagePoint) Total() int64 {
	n := p.OK
	for _, r := range p.Refused {
		n += r
	}
	return n
}

// UsageSeries is a key's usage over time, as GET /apikeys/{id}/usage
// answers it.
type UsageSeries struct {
	KeyID  string       `json:"key_id"`
	Step   string       `json:"step"`
	Points []UsagePoint `json:"points"`
}

// KeyUsageJSON is one key's totals in GET /apikeys/usage.
type KeyUsageJSON struct {
	KeyID   string `json:"key_id"`
	OK      int64  `json:"ok"`
	Refused int64  `json:"refused"`
}

// steps are the steps a query may name, by name.
var steps = map[string]time.Duration{"1m": keystore.StepMinute, "1h": keystore.StepHour, "1d": keystore.StepDay}

// stepName is the name of a step.
func stepName(step time.Duration) string {
	for name, d := range steps {
		if d == step {
			return name
		}
	}
	return step.String()
}

// ParseStep reads a step: 1m, 1h or 1d; "" is DefaultUsageStep.
func ParseStep(s string) (time.Duration, error) {
	if s == "" {
		return DefaultUsageStep, nil
	}
	if d, ok := steps[s]; ok {
		return d, nil
	}
	return 0, &InputError{Field: "step", Message: fmt.Sprintf("must be 1m, 1h or 1d, not %s", apikey.QuoteInput(s))}
}

// ParseSince reads since at now: a duration back from now (Go's syntax,
// such as 90m or 24h, or whole days such as 30d), or an RFC 3339 time
// not after now; "" is DefaultUsageSince.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return now.Add(-DefaultUsageSince), nil
	}
	bad := &InputError{Field: "since", Message: fmt.Sprintf("must be a duration such as 24h or 30d, or an RFC 3339 time, not %s", apikey.QuoteInput(s))}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		if t.After(now) {
			return time.Time{}, &InputError{Field: "since", Message: "is in the future"}
		}
		return t.UTC(), nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 100_000 {
			return time.Time{}, bad
		}
		d = time.Duration(n) * keystore.StepDay
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return time.Time{}, bad
		}
	}
	if d <= 0 {
		return time.Time{}, &InputError{Field: "since", Message: "must be a duration longer than zero"}
	}
	return now.Add(-d), nil
}

// KeyUsage returns the usage of key id from the step holding since to
// the step holding now, one point per step with zeros included, counts
// not yet written included. since and step are as ParseSince and
// ParseStep read them; more than MaxUsagePoints points is an InputError.
func (s *Service) KeyUsage(ctx context.Context, id, since, step string) (UsageSeries, error) {
	if err := checkID(id); err != nil {
		return UsageSeries{}, err
	}
	now := s.Now()
	from, st, n, err := usageRange(since, step, now)
	if err != nil {
		return UsageSeries{}, err
	}
	if _, err := s.get(ctx, id, s.errs.get); err != nil {
		return UsageSeries{}, err
	}
	to := from.Add(time.Duration(n) * st)
	rows, err := s.store.Usage(ctx, id, st, from, to)
	if err != nil {
		storeFailed(s.errs.get, err)
		return UsageSeries{}, fmt.Errorf("reading usage of key %s: %w", id, err)
	}
	series := UsageSeries{KeyID: id, Step: stepName(st), Points: make([]UsagePoint, n)}
	for i := range series.Points {
		series.Points[i] = UsagePoint{Start: from.Add(time.Duration(i) * st), Refused: map[string]int64{}}
	}
	add := func(start time.Time, result string, c int64) {
		i := int(start.Sub(from) / st)
		if i < 0 || i >= n || c <= 0 {
			return
		}
		if result == keystore.ResultOK {
			series.Points[i].OK += c
		} else {
			series.Points[i].Refused[result] += c
		}
	}
	for _, r := range rows {
		add(r.Start, r.Result, r.N)
	}
	if pc, ok := s.pending.(PendingCounts); ok {
		for _, c := range pc.PendingCounts(id) {
			add(keystore.StepStart(c.Minute, st), c.Result, c.N)
		}
	}
	return series, nil
}

// usageRange checks since and step at now and returns the start of the
// first step, the step and the number of points.
func usageRange(since, step string, now time.Time) (time.Time, time.Duration, int, error) {
	st, err := ParseStep(step)
	if err != nil {
		return time.Time{}, 0, 0, err
	}
	t, err := ParseSince(since, now)
	if err != nil {
		return time.Time{}, 0, 0, err
	}
	from, last := keystore.StepStart(t, st), keystore.StepStart(now, st)
	n := int(last.Sub(from)/st) + 1
	if n > MaxUsagePoints {
		return time.Time{}, 0, 0, &InputError{Field: "since",
			Message: fmt.Sprintf("asks for %d points of %s; at most %d: ask for a larger step or a shorter range", n, stepName(st), MaxUsagePoints)}
	}
	return from, st, n, nil
}

// Usage returns the keys with requests since since (as ParseSince reads
// it; counted from the start of the hour holding it, or of the day when
// it is more than 90 days back), of owner unless it is "", busiest
// first, counts not yet written included. A view (ForOwner) sees its
// owner's keys only.
func (s *Service) Usage(ctx context.Context, owner, since string) ([]KeyUsageJSON, error) {
	if owner != "" {
		if err := apikey.CheckOwner(owner); err != nil {
			return nil, &InputError{Field: "owner", Message: err.Error()}
		}
	}
	now := s.Now()
	t, err := ParseSince(since, now)
	if err != nil {
		return nil, err
	}
	if s.owned {
		if s.owner == "" || (owner != "" && owner != s.owner) {
			return []KeyUsageJSON{}, nil
		}
		owner = s.owner
	}
	st := keystore.StepHour
	if now.Sub(t) > keystore.DefaultRetention.Hour {
		st = keystore.StepDay
	}
	from, to := keystore.StepStart(t, st), keystore.StepStart(now, st).Add(st)
	totals, err := s.store.UsageByKey(ctx, owner, st, from, to)
	if err != nil {
		storeFailed(s.errs.list, err)
		return nil, fmt.Errorf("reading usage: %w", err)
	}
	byKey := make(map[string]*KeyUsageJSON, len(totals))
	out := make([]*KeyUsageJSON, 0, len(totals))
	for _, t := range totals {
		u := &KeyUsageJSON{KeyID: t.KeyID, OK: t.OK, Refused: t.Refused}
		byKey[t.KeyID] = u
		out = append(out, u)
	}
	if pc, ok := s.pending.(PendingCounts); ok {
		for _, c := range pc.PendingCounts("") {
			if c.Minute.Before(from) || c.N <= 0 {
				continue
			}
			u := byKey[c.KeyID]
			if u == nil {
				if owner != "" {
					// A key the store listed none of: its owner decides.
					k, err := s.store.Get(ctx, c.KeyID)
					if errors.Is(err, keystore.ErrNotFound) || (err == nil && k.Owner != owner) {
						byKey[c.KeyID] = &KeyUsageJSON{} // not one of owner's: skip its other counts
						continue
					}
					if err != nil {
						storeFailed(s.errs.get, err)
						return nil, fmt.Errorf("reading usage: %w", err)
					}
				}
				u = &KeyUsageJSON{KeyID: c.KeyID}
				byKey[c.KeyID] = u
				out = append(out, u)
			}
			if u.KeyID == "" {
				continue
			}
			if c.Result == keystore.ResultOK {
				u.OK += c.N
			} else {
				u.Refused += c.N
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].OK+out[i].Refused, out[j].OK+out[j].Refused
		if a != b {
			return a > b
		}
		return out[i].KeyID < out[j].KeyID
	})
	res := make([]KeyUsageJSON, len(out))
	for i, u := range out {
		res[i] = *u
	}
	return res, nil
}
