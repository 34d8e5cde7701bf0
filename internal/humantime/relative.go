// Package humantime says how far a time is from now in the words the CLI
// and the console show people: "in 7 days", "3 minutes ago".
package humantime

import (
	"strconv"
	"time"
)

const (
	day   = 24 * time.Hour
	month = 30 * day
	year  = 365 * day
)

// units are the units Relative counts in, smallest first; next is how
// many of a unit make the next one.
var units = []struct {
	size time.Duration
	name string
	next int64
}{
	{time.Minute, "minute", 60},
	{time.Hour, "hour", 24},
	{day, "day", 30},
	{month, "month", 12},
	{year, "year", 0},
}

// Relative says how far t is from now: "just now" or "in less than a
// minute" within a minute, else a count of minutes, hours, days, months
// (30 days) or years (365 days), "ago" or "in". The count is rounded to
// the nearest whole unit, half up, and a count that rounds up to the next
// unit's size is said in that unit: a key that expires in 23h59m reads "in
// 1 day", in 6d12h "in 7 days", in 59m30s "in 1 hour".
func Relative(t, now time.Time) string {
	d := now.Sub(t)
	future := d < 0
	if future {
		// -d overflows for the smallest Duration, which Sub returns for
		// anything more than 292 years ahead.
		d = max(-d, -(d + 1))
	}
	if d < time.Minute {
		if future {
			return "in less than a minute"
		}
		return "just now"
	}
	var s string
	for _, u := range units {
		// d/size rounded half up, without adding to d, which may be
		// the largest Duration.
		n := int64(d / u.size)
		if d%u.size >= u.size/2 {
			n++
		}
		if u.next == 0 || n < u.next {
			s = strconv.FormatInt(max(n, 1), 10) + " " + u.name
			if n > 1 {
				s += "s"
			}
			break
		}
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}
