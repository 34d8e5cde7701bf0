package keystore

import (
	"cmp"
	"slices"
	"time"
)

// The steps usage is kept at: counts are written per minute and rolled up
// into hours and days by the instances (RollupState; UTC hours and days).
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

// RollupState says which minute rows the hour and day rows include: the
// minutes before Until of every key and, while a rollup runs from Until to
// Target key by key, the minutes before Target of the keys up to DoneKey
// (byte order). Counts of any other minute are in its minute row only, and
// a query at the hour or day step adds them (stores evaluate Rolled in
// SQL too, with the same rule). A store keeps one state; its rollup moves
// it forward in short transactions of RollupChunkKeys keys, and writers
// read it in their transaction, so that every count is in the hour and day
// rows exactly once: written there by a writer that found its minute
// rolled, or added by the rollup, never both.
type RollupState struct {
	Until, Target time.Time
	DoneKey       string
}

// Rolled reports whether counts of key's minute belong in the hour and
// day rows as they are written.
func (s RollupState) Rolled(key string, minute time.Time) bool {
	return minute.Before(s.Until) || (minute.Before(s.Target) && key <= s.DoneKey)
}

// Start returns the state with a rollup to target begun, if none is under
// way, and false if there is nothing to roll up (target is not after
// Until).
func (s RollupState) Start(target time.Time) (RollupState, bool) {
	if s.Target.Equal(s.Until) { // idle
		if !target.After(s.Until) {
			return s, false
		}
		s.Target, s.DoneKey = target, ""
	}
	return s, true
}

// Done returns the state after a rollup transaction added the minutes of
// the keys up to upper, or of all the rest if last, and whether the
// rollup is complete.
func (s RollupState) Done(upper string, last bool) (RollupState, bool) {
	if last {
		s.Until, s.DoneKey = s.Target, ""
		return s, true
	}
	s.DoneKey = upper
	return s, false
}

// RollupChunkKeys is how many keys one rollup transaction takes;
// RollupChunksPerPrune, if more than 0, stops a Prune's rollup after that
// many (the next Prune goes on). Variables so that the store tests can
// stop a rollup in the middle and look at the state in between.
var (
	RollupChunkKeys      = 5000
	RollupChunksPerPrune = 0
)

// RollupTarget is where a rollup starting at now rolls minutes up to: the
// ten minutes that ended at least two minutes ago, so that the minutes
// instances still hold back (lastused) are rarely rolled before they are
// written. Rolling up every ten minutes writes a busy key's hour and day
// rows six times an hour instead of sixty.
func RollupTarget(now time.Time) time.Time {
	return now.Add(-2 * time.Minute).UTC().Truncate(10 * time.Minute)
}

// Rollup returns the rows that counts add to, each (key, step, start,
// result) once, sorted by key, step, start and result: the order in which
// stores lock rows, so that two writers never deadlock. Every count adds
// to its minute row; one whose minute state says is rolled adds to its
// hour and day rows too. Counts of zero or less are left out.
func Rollup(counts []UsageCount, state RollupState) []UsageBucket {
	type at struct {
		key    string
		step   time.Duration
		start  int64
		result string
	}
	sums := make(map[at]int64, len(counts))
	for _, c := range counts {
		if c.N <= 0 {
			continue
		}
		steps := Steps[:1]
		if state.Rolled(c.KeyID, c.Minute) {
			steps = Steps
		}
		for _, step := range steps {
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

// StepCeil returns the start of the first step at or after t.
func StepCeil(t time.Time, step time.Duration) time.Time {
	s := StepStart(t, step)
	if s.Before(t) {
		s = s.Add(step)
	}
	return s
}

// StepStart returns the start of the step holding t: t truncated to the
// minute, hour or UTC day.
func StepStart(t time.Time, step time.Duration) time.Time {
	return t.UTC().Truncate(step)
}
