package caddymodule

import (
	"strings"
	"testing"
)

func TestCLIRevokeSaysWhereTheChangeIsInForce(t *testing.T) {
	for _, tt := range []struct {
		name, propagation, want string
	}{
		{"all", `{"confirmed":["inst_a","inst_b","inst_c"],"pending":[]}`, "Revoked on 3 of 3 instances.\n"},
		{"one pending", `{"confirmed":["inst_a","inst_b"],"pending":["inst_c"]}`,
			"Revoked on 2 of 3 instances; not confirmed yet by inst_c: it may be paused or cut off from the database, and applies the change when it catches up.\n"},
		{"none known", ``, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			answer := revokedAnswer
			if tt.propagation != "" {
				answer = strings.TrimSuffix(answer, "}") + `,"propagation":` + tt.propagation + `}`
			}
			admin := newAdminRecorder(t, cannedAnswer{200, answer})
			out, _, err := runCLI(t, false, "", "revoke", validID, "--yes", "--address", admin.addr())
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && !strings.Contains(out, "refused.\n\n"+tt.want+"\n") {
				t.Errorf("output %q, want it to say %q after the first line", out, tt.want)
			}
			if tt.want == "" && strings.Contains(out, "instance") {
				t.Errorf("output %q names instances, none known", out)
			}
		})
	}
}

func TestCLIInstancesPrintsATable(t *testing.T) {
	answer := `{"instances":[` +
		`{"id":"inst_dead","hostname":"gw-3","version":"v1.4.0","started_at":"2026-11-24T06:00:00Z","seen_at":"2026-11-25T17:41:07Z","applied_seq":1100,"cache_entries":10,"live":false},` +
		`{"id":"inst_live","hostname":"gw-1","version":"v1.4.0","started_at":"2026-11-25T06:00:00Z","seen_at":"2026-11-25T19:41:05Z","applied_seq":1207,"cache_entries":8112,"live":true},` +
		`{"id":"inst_slow","hostname":"gw-2","version":"v1.4.0","started_at":"2026-11-25T06:00:00Z","seen_at":"2026-11-25T19:41:06Z","applied_seq":1206,"cache_entries":7990,"live":true}` +
		`],"seq":1207}`
	admin := newAdminRecorder(t, cannedAnswer{200, answer})
	out, _, err := runCLI(t, false, "", "instances", "--address", admin.addr())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || lines[0] != "2 live of 3 instances; the store is at change 1207." {
		t.Fatalf("output:\n%s", out)
	}
	for i, want := range [][]string{
		{"ID", "HOST", "VERSION", "LIVE", "BEHIND", "CACHED", "SEEN", "STARTED"},
		{"inst_live", "gw-1", "yes", "up to date", "8112", "2s ago"},
		{"inst_slow", "gw-2", "yes", "1 change", "7990", "1s ago"},
		{"inst_dead", "gw-3", "no", "107 changes", "10", "2h ago"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+2], w) {
				t.Errorf("line %q lacks %q", lines[i+2], w)
			}
		}
	}
}
