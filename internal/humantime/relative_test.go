package humantime

import (
	"testing"
	"time"
)

func TestRelativeRoundsToTheNearestUnit(t *testing.T) {
	now := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	const (
		day   = 24 * time.Hour
		month = 30 * day
	)
	// Each want is worked out by hand: the unit is the largest whose
	// rounded count is at least 1 below the next unit's size, and the count
	// is rounded half up.
	tests := []struct {
		name string
		ago  time.Duration // t = now - ago; negative is the future
		want string
	}{
		{"now", 0, "just now"},
		{"59s ago is under a minute", 59 * time.Second, "just now"},
		{"59s ahead is under a minute", -59 * time.Second, "in less than a minute"},
		{"60s", time.Minute, "1 minute ago"},
		{"89s is 1.48 minutes", 89 * time.Second, "1 minute ago"},
		{"90s is 1.5 minutes, rounded up", 90 * time.Second, "2 minutes ago"},
		{"90s ahead", -90 * time.Second, "in 2 minutes"},
		{"59m29s is 59.48 minutes", 59*time.Minute + 29*time.Second, "59 minutes ago"},
		{"59m30s rounds to 60 minutes: an hour", 59*time.Minute + 30*time.Second, "1 hour ago"},
		{"23h29m is 23.48 hours", 23*time.Hour + 29*time.Minute, "23 hours ago"},
		{"23h30m rounds to 24 hours: a day", 23*time.Hour + 30*time.Minute, "1 day ago"},
		{"a 1-day key a second after creation", -(day - time.Second), "in 1 day"},
		{"6d11h is 6.46 days", 6*day + 11*time.Hour, "6 days ago"},
		{"6d12h is 6.5 days, rounded up", 6*day + 12*time.Hour, "7 days ago"},
		{"a 1-week key a second after creation", -(7*day - time.Second), "in 7 days"},
		{"29d", 29 * day, "29 days ago"},
		{"29d11h59m is 29.5 days less a minute", 29*day + 11*time.Hour + 59*time.Minute, "29 days ago"},
		{"29d12h rounds to 30 days: a month", 29*day + 12*time.Hour, "1 month ago"},
		{"30d", 30 * day, "1 month ago"},
		{"a 31-day month ahead", -31 * day, "in 1 month"},
		{"44d is 1.47 months", 44 * day, "1 month ago"},
		{"45d is 1.5 months, rounded up", 45 * day, "2 months ago"},
		{"11 months", 11 * month, "11 months ago"},
		{"344d is 11.47 months", 344 * day, "11 months ago"},
		{"345d rounds to 12 months: a year", 345 * day, "1 year ago"},
		{"12 months (360d)", 12 * month, "1 year ago"},
		{"a 1-year key a second after creation", -(365*day - time.Second), "in 1 year"},
		{"547d is 1.499 years", 547 * day, "1 year ago"},
		{"548d is 1.501 years", 548 * day, "2 years ago"},
		{"3 years ahead", -3 * 365 * day, "in 3 years"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Relative(now.Add(-tt.ago), now); got != tt.want {
				t.Errorf("Relative(now - %v) = %q, want %q", tt.ago, got, tt.want)
			}
		})
	}
}

func TestRelativeOfTimesBeyondADuration(t *testing.T) {
	now := time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)
	// Sub saturates at ±(2^63-1)ns, 292.47 years of 365 days.
	tests := []struct {
		name string
		t    time.Time
		want string
	}{
		{"year 9999", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), "in 292 years"},
		{"year 1", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), "292 years ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Relative(tt.t, now); got != tt.want {
				t.Errorf("Relative(%v) = %q, want %q", tt.t, got, tt.want)
			}
		})
	}
}
