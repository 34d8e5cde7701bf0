package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// runResult is what one measured run of one variant gave.
type runResult struct {
	Round    int     `json:"round"`
	RPS      float64 `json:"rps"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`    // socket errors and timeouts
	Non2xx   int64   `json:"non_2xx"`   // answers other than 2xx/3xx to the valid load
	FloodRPS float64 `json:"flood_rps"` // the flood's own rate
	// FloodP99MS is the flood's own p99.
	FloodP99MS float64 `json:"flood_p99_ms"`
	// CPU time per request (valid and flood) of the proxy processes, the
	// auth service and the upstream, in microseconds.
	ProxyCPUus    float64 `json:"proxy_cpu_us_per_req"`
	HelperCPUus   float64 `json:"auth_cpu_us_per_req"`
	UpstreamCPUus float64 `json:"upstream_cpu_us_per_req"`
	// MallocsPerReq is the proxies' heap allocations per request
	// (go_memstats_mallocs_total).
	MallocsPerReq float64 `json:"mallocs_per_req"`
	// OtherCores is the CPU used during the run by processes the benchmark
	// did not start (other work on the machine), in cores.
	OtherCores float64 `json:"other_cores"`
	WrkCores   float64 `json:"wrk_cores"`
	Load1      float64 `json:"load1_at_start"`
}

// rowResult is one variant's runs and their medians.
type rowResult struct {
	Name   string      `json:"name"`
	About  string      `json:"about"`
	Base   string      `json:"base,omitempty"`
	Flood  bool        `json:"flood,omitempty"`
	Runs   []runResult `json:"runs"`
	Median runResult   `json:"median"`
	// Ratio is Median.RPS over the base row's.
	Ratio float64 `json:"ratio,omitempty"`
	// PairedRatio is the median, over the rounds, of this row's req/s over
	// the base row's in the same round: runs minutes apart on a shared
	// machine see different loads, runs seconds apart much the same.
	PairedRatio float64 `json:"paired_ratio,omitempty"`
}

// scenarioResult is one table.
type scenarioResult struct {
	Name  string       `json:"name"`
	Title string       `json:"title"`
	About string       `json:"about"`
	Rows  []*rowResult `json:"rows"`
}

// summarize computes every row's medians and ratios.
func (s *scenarioResult) summarize() {
	for _, r := range s.Rows {
		r.Median = medianRun(r.Runs)
	}
	for _, r := range s.Rows {
		b := s.row(r.Base)
		if b == nil || b.Median.RPS == 0 {
			continue
		}
		r.Ratio = r.Median.RPS / b.Median.RPS
		r.PairedRatio = pairedRatio(r, b)
	}
}

// pairedRatio returns the median over the rounds of r's req/s over
// base's in the same round.
func pairedRatio(r, base *rowResult) float64 {
	var paired []float64
	for _, run := range r.Runs {
		for _, b := range base.Runs {
			if b.Round == run.Round && b.RPS > 0 {
				paired = append(paired, run.RPS/b.RPS)
			}
		}
	}
	return median(paired)
}

func (s *scenarioResult) row(name string) *rowResult {
	for _, r := range s.Rows {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// medianRun returns the median of each field over runs.
func medianRun(runs []runResult) runResult {
	m := func(f func(r runResult) float64) float64 {
		var v []float64
		for _, r := range runs {
			v = append(v, f(r))
		}
		return median(v)
	}
	return runResult{
		RPS:           m(func(r runResult) float64 { return r.RPS }),
		P50MS:         m(func(r runResult) float64 { return r.P50MS }),
		P99MS:         m(func(r runResult) float64 { return r.P99MS }),
		Requests:      int64(m(func(r runResult) float64 { return float64(r.Requests) })),
		Errors:        int64(m(func(r runResult) float64 { return float64(r.Errors) })),
		Non2xx:        int64(m(func(r runResult) float64 { return float64(r.Non2xx) })),
		FloodRPS:      m(func(r runResult) float64 { return r.FloodRPS }),
		FloodP99MS:    m(func(r runResult) float64 { return r.FloodP99MS }),
		ProxyCPUus:    m(func(r runResult) float64 { return r.ProxyCPUus }),
		HelperCPUus:   m(func(r runResult) float64 { return r.HelperCPUus }),
		UpstreamCPUus: m(func(r runResult) float64 { return r.UpstreamCPUus }),
		MallocsPerReq: m(func(r runResult) float64 { return r.MallocsPerReq }),
		OtherCores:    m(func(r runResult) float64 { return r.OtherCores }),
		WrkCores:      m(func(r runResult) float64 { return r.WrkCores }),
		Load1:         m(func(r runResult) float64 { return r.Load1 }),
	}
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report is everything the benchmark found, written as report.md and
// results.json.
type report struct {
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished,omitzero"`
	Command   string            `json:"command"`
	Machine   map[string]string `json:"machine"`
	Options   map[string]string `json:"options"`
	Scenarios []*scenarioResult `json:"scenarios"`
	Profiles  []profileResult   `json:"profiles,omitempty"`
}

func (r *report) start(b *bench) {
	r.Started = time.Now()
	r.Command = strings.Join(os.Args, " ")
	r.Machine = machineInfo()
	o := b.opt
	r.Options = map[string]string{
		"duration":          o.duration.String(),
		"warmup":            o.warmup.String(),
		"rounds":            fmt.Sprint(o.rounds),
		"wrk":               fmt.Sprintf("-t%d -c%d --timeout 10s, Lua script per run", o.threads, o.connections),
		"flood connections": fmt.Sprint(o.floodConnections),
		"keygate binary":    b.keygate,
		"dataset":           b.dataset,
	}
	if o.compareDataset != "" {
		r.Options["compare dataset"] = o.compareDataset + " (a copy per process)"
	}
}

func (r *report) finish(*bench) { r.Finished = time.Now() }

// write writes report.md and results.json to the output directory.
func (r *report) write(b *bench) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.out, "results.json"), data, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(b.out, "report.md"), []byte(r.markdown()), 0o644)
}

// markdown renders the report.
func (r *report) markdown() string {
	var w strings.Builder
	fmt.Fprintf(&w, "# keygate load benchmark, %s\n\n", r.Started.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&w, "`%s`\n\n", r.Command)
	for _, k := range sortedKeys(r.Machine) {
		fmt.Fprintf(&w, "- %s: %s\n", k, r.Machine[k])
	}
	for _, k := range sortedKeys(r.Options) {
		fmt.Fprintf(&w, "- %s: %s\n", k, r.Options[k])
	}
	w.WriteString("\nMedians over the rounds. ratio: median req/s over the named row's; paired ratio: the median over the rounds of the ratio within each round. CPU: per request (valid and flood), " +
		"in the proxy process(es) and in the auth service. allocs: the proxy's heap allocations per request. " +
		"others: CPU used meanwhile by processes the benchmark did not start, in cores; load: 1-minute load average at the start of the runs.\n")
	if s := r.summary(); s != "" {
		w.WriteString("\n## Summary\n\n" + s)
	}
	for _, s := range r.Scenarios {
		fmt.Fprintf(&w, "\n## %s: %s\n\n%s\n\n", s.Name, s.Title, s.About)
		flood := slices.ContainsFunc(s.Rows, func(r *rowResult) bool { return r.Flood })
		w.WriteString("| configuration | req/s | ratio | paired ratio | p50 ms | p99 ms |")
		if flood {
			w.WriteString(" flood req/s |")
		}
		w.WriteString(" proxy CPU µs/req | auth CPU µs/req | allocs/req | non-2xx | errors | others (cores) | load |\n")
		w.WriteString("|---|--:|--:|--:|--:|--:|")
		if flood {
			w.WriteString("--:|")
		}
		w.WriteString("--:|--:|--:|--:|--:|--:|--:|\n")
		for _, row := range s.Rows {
			m := row.Median
			ratio, paired := "", ""
			if row.Ratio > 0 {
				ratio = fmt.Sprintf("%.3f × %s", row.Ratio, row.Base)
				paired = fmt.Sprintf("%.3f", row.PairedRatio)
			}
			fmt.Fprintf(&w, "| %s | %.0f | %s | %s | %.2f | %.2f |", row.Name, m.RPS, ratio, paired, m.P50MS, m.P99MS)
			if flood {
				if row.Flood {
					fmt.Fprintf(&w, " %.0f |", m.FloodRPS)
				} else {
					w.WriteString(" |")
				}
			}
			fmt.Fprintf(&w, " %.1f | %s | %s | %d | %d | %.2f | %.2f |\n",
				m.ProxyCPUus, blankZero("%.1f", m.HelperCPUus), blankZero("%.1f", m.MallocsPerReq), m.Non2xx, m.Errors, m.OtherCores, m.Load1)
		}
		w.WriteString("\n<details><summary>every round</summary>\n\n| configuration | round | req/s | p50 ms | p99 ms | proxy CPU µs/req | others (cores) | load |\n|---|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, row := range s.Rows {
			for _, run := range row.Runs {
				fmt.Fprintf(&w, "| %s | %d | %.0f | %.2f | %.2f | %.1f | %.2f | %.2f |\n",
					row.Name, run.Round, run.RPS, run.P50MS, run.P99MS, run.ProxyCPUus, run.OtherCores, run.Load1)
			}
		}
		w.WriteString("\n</details>\n\nConfigurations:\n\n")
		for _, row := range s.Rows {
			fmt.Fprintf(&w, "- %s: %s\n", row.Name, row.About)
		}
	}
	for _, p := range r.Profiles {
		fmt.Fprintf(&w, "\n## Profile: %s\n\n%s\n\n```\n%s```\n", p.Name, p.About, p.Top)
	}
	return w.String()
}

// summary states the ratios the issue asks about.
func (r *report) summary() string {
	var w strings.Builder
	find := func(scenario, row string) *rowResult {
		for _, s := range r.Scenarios {
			if s.Name == scenario {
				return s.row(row)
			}
		}
		return nil
	}
	for _, sc := range []string{"cached", "cached10k"} {
		kg, bare, fa := find(sc, "keygate"), find(sc, "bare"), find(sc, "forward_auth")
		if kg == nil || bare == nil || kg.Median.RPS == 0 {
			continue
		}
		fmt.Fprintf(&w, "- %s: keygate %.0f req/s = %.3f × bare (%.0f; paired %.3f)", sc, kg.Median.RPS, kg.Ratio, bare.Median.RPS, kg.PairedRatio)
		if fa != nil && fa.Median.RPS > 0 {
			fmt.Fprintf(&w, ", %.2f × forward_auth (%.0f; paired %.2f)", kg.Median.RPS/fa.Median.RPS, fa.Median.RPS, pairedRatio(kg, fa))
		}
		fmt.Fprintf(&w, "; proxy CPU %.1f µs/req vs bare %.1f\n", kg.Median.ProxyCPUus, bare.Median.ProxyCPUus)
	}
	if kg, kf := find("flood", "keygate"), find("flood", "keygate + flood"); kg != nil && kf != nil && kg.Median.RPS > 0 {
		fmt.Fprintf(&w, "- flood: keygate's valid load %.0f → %.0f req/s with the flood (%.3f), p99 %.2f → %.2f ms; flood refused at %.0f req/s\n",
			kg.Median.RPS, kf.Median.RPS, kf.Median.RPS/kg.Median.RPS, kg.Median.P99MS, kf.Median.P99MS, kf.Median.FloodRPS)
		if bare, bf := find("flood", "bare"), find("flood", "bare + flood"); bare != nil && bf != nil && bare.Median.RPS > 0 {
			fmt.Fprintf(&w, "  (bare, proxying the flood too: %.0f → %.0f, %.3f)\n", bare.Median.RPS, bf.Median.RPS, bf.Median.RPS/bare.Median.RPS)
		}
		if fa, ff := find("flood", "forward_auth"), find("flood", "forward_auth + flood"); fa != nil && ff != nil && fa.Median.RPS > 0 {
			fmt.Fprintf(&w, "  (forward_auth: %.0f → %.0f, %.3f)\n", fa.Median.RPS, ff.Median.RPS, ff.Median.RPS/fa.Median.RPS)
		}
	}
	return w.String()
}

func blankZero(format string, v float64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf(format, v)
}

func sortedKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// machineInfo describes the machine and the tools.
func machineInfo() map[string]string {
	m := map[string]string{
		"cores (nproc)": fmt.Sprint(runtime.NumCPU()),
		"go":            runtime.Version(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("wrk", "--version").CombinedOutput(); len(out) > 0 {
		_ = err // wrk --version exits with status 1
		line, _, _ := strings.Cut(string(out), "\n")
		m["wrk"] = strings.TrimSpace(line)
	}
	return m
}
