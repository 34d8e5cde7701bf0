package keyservice_test

import (
	"context"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
)

// pendingCounts stands in for the recorder's counts not yet written.
type pendingCounts []keystore.UsageCount

func (p pendingCounts) Pending(string) (time.Time, bool) { return time.Time{}, false }

func (p pendingCounts) PendingCounts(id string) []keystore.UsageCount {
	var out []keystore.UsageCount
	for _, c := range p {
		if id == "" || c.KeyID == id {
			out = append(out, c)
		}
	}
	return out
}

func TestKeyUsageHasAPointPerStepWithZerosAndPendingCounts(t *testing.T) {
	f := newFixture(t)
	_, k := f.create(t, "used", "full", "never")
	_, other := f.create(t, "other", "full", "never")
	now := *f.now // 12:00
	if err := f.store.RecordUsage(context.Background(), nil, []keystore.UsageCount{
		{KeyID: k.ID, Minute: now.Add(-3 * time.Hour), Result: "ok", N: 4},
		{KeyID: k.ID, Minute: now.Add(-3 * time.Hour), Result: "rate_limited", N: 2},
		{KeyID: k.ID, Minute: now.Add(-30 * time.Hour), Result: "ok", N: 100}, // before the range
		{KeyID: other.ID, Minute: now.Add(-time.Hour), Result: "ok", N: 9},
	}); err != nil {
		t.Fatal(err)
	}
	pending := pendingCounts{{KeyID: k.ID, Minute: now, Result: "ok", N: 1}, {KeyID: other.ID, Minute: now, Result: "ip_not_allowed", N: 1}}
	svc := keyservice.New(f.store, f.format, nil, pending, func() time.Time { return *f.now })
	s, err := svc.KeyUsage(context.Background(), k.ID, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Step != "1h" || len(s.Points) != 25 || !s.Points[0].Start.Equal(now.Add(-24*time.Hour)) || !s.Points[24].Start.Equal(now) {
		t.Fatalf("series: step %s, %d points from %v; want 1h, 25 from %v", s.Step, len(s.Points), s.Points[0].Start, now.Add(-24*time.Hour))
	}
	for i, p := range s.Points {
		var wantOK, wantRL int64
		switch i {
		case 21:
			wantOK, wantRL = 4, 2
		case 24:
			wantOK = 1 // pending
		}
		if p.OK != wantOK || p.Refused["rate_limited"] != wantRL || p.Refused == nil {
			t.Errorf("point %d (%v) = %+v, want ok %d, rate_limited %d", i, p.Start, p, wantOK, wantRL)
		}
	}
	all, err := svc.Usage(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	want := []keyservice.KeyUsageJSON{{KeyID: other.ID, OK: 9, Refused: 1}, {KeyID: k.ID, OK: 5, Refused: 2}}
	if len(all) != 2 || all[0] != want[0] || all[1] != want[1] {
		t.Errorf("Usage = %+v, want %+v", all, want)
	}
	if _, err := svc.KeyUsage(context.Background(), k.ID, "1001m", "1m"); err == nil {
		t.Error("1001 points: nil error, want an InputError on since")
	} else {
		wantInputError(t, err, "since")
	}
	if s, err := svc.KeyUsage(context.Background(), k.ID, "999m", "1m"); err != nil || len(s.Points) != 1000 {
		t.Errorf("999m at 1m: %d points, %v; want 1000", len(s.Points), err)
	}
	if s, err := svc.KeyUsage(context.Background(), k.ID, "400d", "1d"); err != nil || len(s.Points) != 401 {
		t.Errorf("400d at 1d: %d points, %v; want 401", len(s.Points), err)
	}
	// A view of another owner sees neither the key's series nor it in the list.
	view := svc.ForOwner("acme")
	if _, err := view.KeyUsage(context.Background(), k.ID, "", ""); err == nil {
		t.Error("an owner's view reads another key's usage")
	}
	if got, err := view.Usage(context.Background(), "", ""); err != nil || len(got) != 0 {
		t.Errorf("an owner's view lists %+v, %v; want nothing", got, err)
	}
}

func TestParseSinceAndStep(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"", now.Add(-24 * time.Hour)},
		{"90m", now.Add(-90 * time.Minute)},
		{"30d", now.Add(-30 * 24 * time.Hour)},
		{"2026-11-29T10:00:00Z", time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)},
		{"2026-11-29T12:00:00+02:00", time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)},
	} {
		got, err := keyservice.ParseSince(c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"yesterday", "-1h", "0s", "1.5d", "2027-01-01T00:00:00Z", "dk_0123456789abcdefghij"} {
		_, err := keyservice.ParseSince(bad, now)
		wantInputError(t, err, "since")
	}
	for _, bad := range []string{"2h", "1s", "1w"} {
		_, err := keyservice.ParseStep(bad)
		wantInputError(t, err, "step")
	}
}
