package ratelimit

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/policy"
)

func TestParseLimitAcceptsTheDocumentedSyntax(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Limit
		norm string
	}{
		{"10/1s", Limit{10, time.Second}, "10/1s"},
		{"100/1m", Limit{100, time.Minute}, "100/1m"},
		{"10000/1d", Limit{10000, 24 * time.Hour}, "10000/1d"},
		{"5/60s", Limit{5, time.Minute}, "5/1m"},
		{"5/90s", Limit{5, 90 * time.Second}, "5/90s"},
		{"5/48h", Limit{5, 48 * time.Hour}, "5/2d"},
		{"007/30d", Limit{7, 30 * 24 * time.Hour}, "7/30d"},
		{"1000000000/1s", Limit{MaxN, time.Second}, "1000000000/1s"},
		{"1/720h", Limit{1, 30 * 24 * time.Hour}, "1/30d"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLimit(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParseLimit(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if n, _ := NormalizeLimit(tt.in); n != tt.norm {
				t.Errorf("NormalizeLimit(%q) = %q, want %q", tt.in, n, tt.norm)
			}
		})
	}
}

func TestParseLimitRefusesWithAClearErrorQuotingAtMost12Bytes(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", `"" must be N/WINDOW`},
		{"10", `"10" must be N/WINDOW`},
		{"10/", `"10/" must be N/WINDOW`},
		{"/1m", `"/1m" must be N/WINDOW`},
		{"10/m", `"10/m" must be N/WINDOW`},
		{"-1/1m", `"-1/1m" must be N/WINDOW`},
		{"+1/1m", `"+1/1m" must be N/WINDOW`},
		{"1.5/1m", `"1.5/1m" must be N/WINDOW`},
		{"0/1m", "N must be from 1 to 1000000000"},
		{"1000000001/1m", "N must be from 1 to 1000000000"},
		{"10/0s", "WINDOW must be from 1s to 30d"},
		{"10/31d", "WINDOW must be from 1s to 30d"},
		{"10/721h", "WINDOW must be from 1s to 30d"},
		{"10/1w", "unit must be s, m, h or d"},
		{"10/1ms", `must be N/WINDOW`},
		{"10/1 m", `must be N/WINDOW`},
		{"10/99999999999999999999s", `must be N/WINDOW`},
		{"dk_abcdefghijklmnopqrstuvwxyz", `"dk_abcdefghi"…`},
	} {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseLimit(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseLimit(%q) error = %v, want it to hold %q", tt.in, err, tt.want)
			}
			if strings.Contains(err.Error(), "jklmnop") {
				t.Errorf("error %q echoes more than 12 bytes", err)
			}
		})
	}
}

func TestCheckLimitsNormalisesAndNamesTheBadEntry(t *testing.T) {
	got, err := CheckLimits([]string{"10/1s", "600/60m", "10000/1d"})
	if err != nil || !slices.Equal(got, []string{"10/1s", "600/1h", "10000/1d"}) {
		t.Fatalf("CheckLimits = %q, %v", got, err)
	}
	if got, err := CheckLimits(nil); got != nil || err != nil {
		t.Errorf("CheckLimits(nil) = %q, %v; want nil, nil", got, err)
	}
	for _, tt := range []struct {
		name    string
		in      []string
		index   int
		wantErr string
	}{
		{"bad second entry", []string{"10/1s", "ten/1m"}, 1, "must be N/WINDOW"},
		{"same window twice", []string{"10/1m", "20/60s"}, 1, `"20/60s" has the window of entry 0 (1m): give each window once`},
		{"five limits", []string{"1/1s", "2/2s", "3/3s", "4/4s", "5/5s"}, -1, "at most 4 limits, not 5"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CheckLimits(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
			ee, ok := errors.AsType[*policy.EntryError](err)
			if tt.index >= 0 && (!ok || ee.Index != tt.index) {
				t.Errorf("error %v does not name entry %d", err, tt.index)
			}
		})
	}
}

func TestPolicyHeadersFollowTheDraftSyntax(t *testing.T) {
	p, err := Compile([]string{"100/1m", "10000/1d"})
	if err != nil {
		t.Fatal(err)
	}
	// draft-ietf-httpapi-ratelimit-headers-10, section 4: a List of
	// String items with q (quota) and w (window in seconds).
	if got, want := p.PolicyHeader(), `"1m";q=100;w=60, "1d";q=10000;w=86400`; got != want {
		t.Errorf("RateLimit-Policy = %s, want %s", got, want)
	}
	d := Decision{Allowed: true, Limit: 0, Remaining: 57, Reset: 2100 * time.Millisecond}
	if got, want := string(p.AppendRateLimit(nil, d)), `"1m";r=57;t=3`; got != want {
		t.Errorf("RateLimit = %s, want %s", got, want)
	}
	d = Decision{Allowed: true, Limit: 1, Remaining: 10000}
	if got, want := string(p.AppendRateLimit(nil, d)), `"1d";r=10000`; got != want {
		t.Errorf("RateLimit with nothing counted = %s, want %s", got, want)
	}
	if p, err := Compile(nil); p != nil || err != nil {
		t.Errorf("Compile(nil) = %v, %v; want no policy", p, err)
	}
}

func TestSecondsRoundsUpToAtLeastOne(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int64
	}{{0, 1}, {time.Nanosecond, 1}, {time.Second, 1}, {time.Second + 1, 2}, {59*time.Second + 1, 60}} {
		if got := Seconds(tt.d); got != tt.want {
			t.Errorf("Seconds(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}
