package apikey

import (
	"fmt"
	"time"
)

// Expiry is one of the expiration presets a key is created with.
type Expiry string

// The expiration presets. Months and years are calendar months and years,
// so a 1mo key created on 31 January expires on 3 March (time.AddDate
// normalises the date) and never slides with daylight saving time, as every
// time here is UTC.
const (
	ExpiryHour  Expiry = "1h"
	ExpiryDay   Expiry = "1d"
	ExpiryWeek  Expiry = "1w"
	ExpiryMonth Expiry = "1mo"
	ExpiryYear  Expiry = "1y"
	ExpiryNever Expiry = "never"
)

// Expiries lists every preset, shortest first.
var Expiries = []Expiry{ExpiryHour, ExpiryDay, ExpiryWeek, ExpiryMonth, ExpiryYear, ExpiryNever}

// ParseExpiry returns the preset named s.
func ParseExpiry(s string) (Expiry, error) {
	for _, e := range Expiries {
		if string(e) == s {
			return e, nil
		}
	}
	return "", fmt.Errorf("unknown expiry %s: want one of 1h, 1d, 1w, 1mo, 1y, never", QuoteInput(s))
}

// ExpiresAt returns when a key created at t with this preset expires, and
// the zero time for ExpiryNever.
func (e Expiry) ExpiresAt(t time.Time) time.Time {
	t = t.UTC()
	switch e {
	case ExpiryHour:
		return t.Add(time.Hour)
	case ExpiryDay:
		return t.AddDate(0, 0, 1)
	case ExpiryWeek:
		return t.AddDate(0, 0, 7)
	case ExpiryMonth:
		return t.AddDate(0, 1, 0)
	case ExpiryYear:
		return t.AddDate(1, 0, 0)
	}
	return time.Time{}
}
