package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/docana/keygate/test/internal/loadkit"
)

// result is what a scenario measured: rows of the table, then notes.
type result struct {
	name  string
	rows  []row
	notes []string
}

// row is one line of a scenario's table.
type row struct {
	what, command, happened, lost string
}

func (r *result) add(what, command, happened, lost string) {
	r.rows = append(r.rows, row{what, command, happened, lost})
}

func (r *result) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
	logf("  "+format, args...)
}

func (r *result) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", r.name)
	b.WriteString("| what was done | command | what happened | what was lost |\n|---|---|---|---|\n")
	for _, w := range r.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", cell(w.what), cell(w.command), cell(w.happened), cell(w.lost))
	}
	b.WriteString("\n")
	for _, n := range r.notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	b.WriteString("\n")
	return b.String()
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// wrkSummary says what a wrk run saw, in one cell.
func wrkSummary(r loadkit.WrkResult) string {
	return fmt.Sprintf("%d requests (%.0f/s), %d non-2xx, socket errors: %d connect, %d read, %d write, %d timeout; p50 %v, p99 %v, max %v",
		r.Requests, r.RPS(), r.Status, r.Connect, r.Read, r.Write, r.Timeout,
		us(r.P50US), us(r.P99US), us(r.MaxUS))
}

func us(v int64) time.Duration {
	d := time.Duration(v) * time.Microsecond
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d
}

// dist describes durations: n, min, median, p90, p99 (nearest rank), max.
func dist(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
	return fmt.Sprintf("n=%d min %v, median %v, p90 %v, p99 %v, max %v", len(s), r(s[0]), r(rank(0.5)), r(rank(0.9)), r(rank(0.99)), r(s[len(s)-1]))
}
