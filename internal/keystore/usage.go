package keystore

import (
	"cmp"
	"slices"
	"time"
)

// The steps usage is kept at: counts are written per minute and rolled up
// into hours and days as they are written (UTC hours and days).
const (
	StepMinute = time.Minute
	StepHour   = time.Hour
	StepDay    = 24 * time.Hour
)

// Steps lists the steps, finest first.
var Steps = []time.Duration{StepMinute, StepHour, StepDay}

// UsageCount is a number of requests of one key in one minute with one
// result ("ok", or the code of the refusal).
type UsageCount struct {
	KeyID string
	// Minute is the start of the minute, UTC.
	Minute time.Time
	Result string
	N      int64
}

// UsageRow is the count of one result in one step of one key.
type UsageRow struct {
	Start  time.Time
	Result string
	N      int64
}

// UsageBucket is one row as stored: a count of one key, at one step, from
// one start, with one result.
type UsageBucket struct {
	KeyID  string
	Step   time.Duration
	Start  time.Time
	Result string
	N      int64
}

// KeyTotal is how many requests of a key were admitted (OK) and refused
// in a range.
type KeyTotal struct {
	KeyID       string
	OK, Refused int64
}

// ResultOK is the result of an admitted request.
const ResultOK = "ok"

// Retention says how long stores keep usage at each step, and audit
// events.
type Retention struct {
	Minute, Hour, Day, Audit time.Duration
}

// DefaultRetention is what DESIGN names: minutes for 48 hours, hours for
// 90 days, days and audit events for 400 days.
var DefaultRetention = Retention{
	Minute: 48 * time.Hour,
	Hour:   90 * 24 * time.Hour,
	Day:    400 * 24 * time.Hour,
	Audit:  400 * 24 * time.Hour,
}

// Rollup returns the rows that counts add to, at every step, each (key,
// step, start, result) once, sorted by key, step, start and result: the
// order in which stores lock rows, so that two writers never deadlock.
// Counts of zero or less are left out.
func Rollup(counts []UsageCount) []UsageBucket {
	type at struct {
		key    string
		step   time.Duration
		start  int64
		result string
	}
	sums := make(map[at]int64, 3*len(counts))
	for _, c := range counts {
		if c.N <= 0 {
			continue
		}
		for _, step := range Steps {
			sums[at{c.KeyID, step, StepStart(c.Minute, step).Unix(), c.Result}] += c.N
		}
	}
	out := make([]UsageBucket, 0, len(sums))
	for a, n := range sums {
		out = append(out, UsageBucket{KeyID: a.key, Step: a.step, Start: time.Unix(a.start, 0).UTC(), Result: a.result, N: n})
	}
	slices.SortFunc(out, func(a, b UsageBucket) int {
		return cmp.Or(cmp.Compare(a.KeyID, b.KeyID), cmp.Compare(a.Step, b.Step),
			a.Start.Compare(b.Start), cmp.Compare(a.Result, b.Result))
	})
	return out
}

// StepStart returns the start of the step holding t: t truncated to the
// minute, hour or UTC day.
func StepStart(t time.Time, step time.Duration) time.Time {
	return t.UTC().Truncate(step)
}
