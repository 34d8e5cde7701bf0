package caddymodule

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keyservice"
)

func TestSparklineScalesToTheLargestAndShowsAnyRequest(t *testing.T) {
	for _, c := range []struct {
		in   []int64
		want string
	}{
		{[]int64{0, 0, 0}, "   "},
		{[]int64{0, 1, 8}, " ▁█"},
		{[]int64{1, 1000}, "▁█"},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8}, "▁▂▃▄▅▆▇█"},
		{nil, ""},
	} {
		if got := sparkline(c.in); got != c.want {
			t.Errorf("sparkline(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestPrintSeriesShowsTheSparklineTotalsAndReasons(t *testing.T) {
	start := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	s := keyservice.UsageSeries{KeyID: validID, Step: "1h", Points: []keyservice.UsagePoint{
		{Start: start, OK: 4, Refused: map[string]int64{}},
		{Start: start.Add(time.Hour), OK: 0, Refused: map[string]int64{}},
		{Start: start.Add(2 * time.Hour), OK: 6, Refused: map[string]int64{"rate_limited": 2, "ip_not_allowed": 1}},
	}}
	var b bytes.Buffer
	printSeries(&b, s)
	out := b.String()
	for _, want := range []string{
		"Requests of " + validID + " per hour, 2026-11-30 06:00 UTC to now:",
		"  ▄ █  max 9 per hour",
		"Total: 13 requests, 10 ok, 3 refused (rate_limited 2, ip_not_allowed 1)",
		"2026-11-30 08:00 UTC  6   3 (rate_limited 2, ip_not_allowed 1)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
