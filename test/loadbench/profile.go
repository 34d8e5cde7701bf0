package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// profileResult is a profile of one configuration under load.
type profileResult struct {
	Name  string   `json:"name"`
	About string   `json:"about"`
	Files []string `json:"files"`
	Top   string   `json:"top"`
}

// profileRun loads variant v for -profile-duration while taking a CPU
// profile from its admin endpoint (Caddy serves /debug/pprof there), and
// the heap allocations made meanwhile (the allocs profile before and after,
// diffed). It adds the top entries to the report.
func (b *bench) profileRun(ctx context.Context, s scenario, v variant) error {
	if len(v.target.admins) == 0 {
		return nil
	}
	admin := v.target.admins[0]
	dir := filepath.Join(b.out, "profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	name := s.name + "-" + slug(v.name)
	secs := max(1, int((b.opt.profileDuration-3*time.Second)/time.Second))
	logf("  profiling %s for %ds under load", v.name, secs)

	allocsBefore := filepath.Join(dir, name+".allocs-before.pprof")
	if err := fetchTo(ctx, admin+"/debug/pprof/allocs", allocsBefore); err != nil {
		return err
	}
	countersBefore, err := keygateCounters(ctx, admin)
	if err != nil {
		return err
	}
	type measured struct {
		r   runResult
		err error
	}
	done := make(chan measured, 1)
	go func() {
		r, err := b.measure(ctx, v, b.opt.profileDuration)
		done <- measured{r, err}
	}()
	select {
	case <-time.After(1500 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	cpu := filepath.Join(dir, name+".cpu.pprof")
	errCPU := fetchTo(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, secs), cpu)
	m := <-done
	if errCPU != nil {
		return errCPU
	}
	if m.err != nil {
		return m.err
	}
	allocsAfter := filepath.Join(dir, name+".allocs-after.pprof")
	if err := fetchTo(ctx, admin+"/debug/pprof/allocs", allocsAfter); err != nil {
		return err
	}
	countersAfter, err := keygateCounters(ctx, admin)
	if err != nil {
		return err
	}

	var top strings.Builder
	section := func(title string, args ...string) {
		out, err := exec.CommandContext(ctx, "go", append([]string{"tool", "pprof"}, args...)...).CombinedOutput()
		fmt.Fprintf(&top, "== %s (go tool pprof %s)\n", title, strings.Join(args, " "))
		if err != nil {
			fmt.Fprintf(&top, "failed: %v\n", err)
		}
		top.Write(trimPprof(out))
		top.WriteString("\n")
	}
	bin := b.keygate
	if strings.Contains(v.name, compareTag) {
		bin = b.opt.compare
	}
	section("CPU, flat", "-top", "-nodecount=25", bin, cpu)
	if strings.HasPrefix(v.name, "keygate") {
		// The handler's own work: samples under its ServeHTTP but not
		// under the reverse proxy it calls next.
		own := []string{"-focus=" + handlerFrame, "-ignore=" + proxyFrames}
		section("CPU in keygate's handler itself (next handler excluded), flat", append(append([]string{"-top", "-nodecount=25"}, own...), bin, cpu)...)
		section("the same, cumulative", append(append([]string{"-top", "-cum", "-nodecount=25"}, own...), bin, cpu)...)
		section("heap allocations in keygate's handler itself during the run, by objects", append(append([]string{"-top", "-sample_index=alloc_objects", "-nodecount=15",
			"-diff_base=" + allocsBefore}, own...), bin, allocsAfter)...)
	}
	section("heap allocations during the run, by objects, flat", "-top", "-sample_index=alloc_objects", "-nodecount=20",
		"-diff_base="+allocsBefore, bin, allocsAfter)
	text := top.String()
	if err := os.WriteFile(filepath.Join(dir, name+".top.txt"), []byte(text), 0o644); err != nil {
		return err
	}
	b.report.Profiles = append(b.report.Profiles, profileResult{
		Name: s.name + ": " + v.name,
		About: fmt.Sprintf("Under the %s scenario's load: %.0f req/s, proxy CPU %.1f µs/req, %.1f allocs/req during the profiled run (profiling itself costs a little).%s",
			s.name, m.r.RPS, m.r.ProxyCPUus, m.r.MallocsPerReq, countersAfter.since(countersBefore)),
		Files: []string{cpu, allocsBefore, allocsAfter},
		Top:   text,
	})
	return nil
}

// keygateCounters reads the counters of keygate's cache and change log
// from a Caddy admin endpoint's /metrics: what tells a profile of hits
// from one of misses. A process without keygate has none.
func keygateCounters(ctx context.Context, admin string) (counters, error) {
	body, err := get(ctx, admin+"/metrics")
	if err != nil {
		return nil, err
	}
	c := counters{}
	for _, line := range strings.Split(string(body), "\n") {
		for _, name := range []string{"caddy_apikey_cache_lookups_total", "caddy_apikey_invalidations_total", "caddy_apikey_store_errors_total"} {
			if !strings.HasPrefix(line, name+"{") {
				continue
			}
			series, value, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			if f, err := strconv.ParseFloat(value, 64); err == nil {
				c[series] = f
			}
		}
	}
	return c, nil
}

// counters maps a series (name and labels) to its value.
type counters map[string]float64

// since describes what grew from before to c, for a profile's about line.
func (c counters) since(before counters) string {
	var grew []string
	for series, v := range c {
		if d := v - before[series]; d > 0 {
			grew = append(grew, fmt.Sprintf("%s +%.0f", series, d))
		}
	}
	if len(grew) == 0 {
		return ""
	}
	slices.Sort(grew)
	return " Meanwhile: " + strings.Join(grew, ", ") + "."
}

// handlerFrame matches keygate's handler in a stack; proxyFrames the
// handlers it calls next.
const (
	handlerFrame = `docana/keygate/caddymodule\.\(\*Handler\)\.ServeHTTP`
	proxyFrames  = `caddyhttp/reverseproxy\.`
)

// fetchTo saves the body of url to path.
func fetchTo(ctx context.Context, url, path string) error {
	body, err := get(ctx, url)
	if err != nil {
		return err
	}
	return os.WriteFile(path, body, 0o644)
}

// trimPprof drops pprof's header lines that name files and build IDs.
func trimPprof(out []byte) []byte {
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "File: ") || strings.HasPrefix(line, "Build ID: ") {
			continue
		}
		keep = append(keep, line)
	}
	return []byte(strings.Join(keep, "\n"))
}
