package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docana/keygate/test/internal/loadkit"
)

// footprint is what a leak would grow.
type footprint struct {
	goroutines, fds, heapInuse float64
	// keygate's own share: goroutines with a keygate function on their
	// stack, descriptors of the SQLite store's files.
	keygateGoroutines, storeFDs int
}

func (f footprint) String() string {
	return fmt.Sprintf("%.0f goroutines (%d in keygate code), %.0f fds (%d of the store), heap in use %.1f MB",
		f.goroutines, f.keygateGoroutines, f.fds, f.storeFDs, f.heapInuse/1e6)
}

// footprint forces a garbage collection (/debug/pprof/heap?gc=1) and reads
// the goroutine count and heap in use from the metrics, the open file
// descriptors from /proc.
func (g *gateway) footprint(ctx context.Context) (footprint, error) {
	if a := g.adminCall(ctx, "GET", "/debug/pprof/heap?gc=1", nil, 30*time.Second); a.err != nil {
		return footprint{}, a.err
	}
	m, err := g.metrics(ctx)
	if err != nil {
		return footprint{}, err
	}
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(g.proc.Pid()) + "/fd")
	if err != nil {
		return footprint{}, err
	}
	f := footprint{goroutines: m["go_goroutines"], fds: float64(len(fds)), heapInuse: m["go_memstats_heap_inuse_bytes"]}
	for _, fd := range fds {
		target, _ := os.Readlink("/proc/" + strconv.Itoa(g.proc.Pid()) + "/fd/" + fd.Name())
		if strings.Contains(target, ".db") {
			f.storeFDs++
		}
	}
	dump := g.adminCall(ctx, "GET", "/debug/pprof/goroutine?debug=1", nil, 30*time.Second)
	if dump.err != nil {
		return footprint{}, dump.err
	}
	// debug=1 groups identical stacks: "<count> @ <pcs>" then the frames.
	for _, block := range strings.Split(dump.body, "\n\n") {
		head, _, _ := strings.Cut(block, " @ ")
		n, err := strconv.Atoi(strings.TrimSpace(head))
		if err == nil && strings.Contains(block, "docana/keygate") {
			f.keygateGoroutines += n
		}
	}
	return f, nil
}

const reloadCount = 100

func runReloads(ctx context.Context, e *env) (*result, error) {
	res := &result{}
	for _, changeStore := range []bool{true, false} {
		if err := reloads(ctx, e, res, changeStore); err != nil {
			return nil, err
		}
	}
	res.note("The connections and goroutines that remain are reverse_proxy's idle upstream connections (net/http persistConn readLoop/writeLoop) of unloaded configs; they close after the transport's idle timeout (2m by default). keygate's own goroutines and store descriptors are the figures in parentheses.")
	return res, nil
}

// reloads runs reloadCount reloads under load. If changeStore, each changes
// the apikeys configuration (cache_ttl alternating 59s and 1m), so that
// each opens a new store, verifier and recorder and closes the previous
// ones (the heaviest reload); otherwise only the site changes.
func reloads(ctx context.Context, e *env, res *result, changeStore bool) error {
	name := "reloads-site"
	if changeStore {
		name = "reloads-store"
	}
	dbPath := filepath.Join(e.work, name+".db")
	cfg := gatewayConfig{Store: "store sqlite " + dbPath, CacheTTL: "1m"}
	g, err := e.startGateway(ctx, name, cfg)
	if err != nil {
		return err
	}
	defer g.proc.Stop(10 * time.Second)
	secrets, _, file, err := g.keys(ctx, 1, name)
	if err != nil {
		return err
	}
	// One unmeasured run, so that the baseline holds warm pools.
	w, err := g.startWrk("wrk-"+name+"-warmup", file, len(secrets), 3*time.Second)
	if err != nil {
		return err
	}
	if _, err := loadkit.WaitWrk(ctx, e.work, w); err != nil {
		return err
	}
	time.Sleep(time.Second)
	base, err := g.footprint(ctx)
	if err != nil {
		return err
	}

	var total loadkit.WrkResult
	var reloadTimes []time.Duration
	var reloadErrs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range reloadCount {
			c := g.cfg
			c.Generation = i + 1
			if changeStore {
				c.CacheTTL = "1m"
				if i%2 == 0 {
					c.CacheTTL = "59s"
				}
			}
			start := time.Now()
			if err := g.reload(ctx, c); err != nil {
				reloadErrs = append(reloadErrs, err)
			}
			reloadTimes = append(reloadTimes, time.Since(start))
		}
	}()
	runs := 0
	for finished := false; !finished; {
		w, err := g.startWrk(fmt.Sprintf("wrk-%s-%d", name, runs), file, len(secrets), e.opt.duration)
		if err != nil {
			return err
		}
		r, err := loadkit.WaitWrk(ctx, e.work, w)
		if err != nil {
			return err
		}
		runs++
		total.Requests += r.Requests
		total.Status += r.Status
		total.Connect += r.Connect
		total.Read += r.Read
		total.Write += r.Write
		total.Timeout += r.Timeout
		total.MaxUS = max(total.MaxUS, r.MaxUS)
		select {
		case <-done:
			finished = true
		default:
		}
	}
	time.Sleep(time.Second)
	after, err := g.footprint(ctx)
	if err != nil {
		return err
	}
	time.Sleep(125 * time.Second) // reverse_proxy's idle connection timeout is 2m
	later, err := g.footprint(ctx)
	if err != nil {
		return err
	}
	if st, _, err := g.probe(ctx, secrets[0], 10*time.Second); err != nil || st != 200 {
		res.note("%s: after the reloads the key answered %d %v", name, st, err)
	}
	what := fmt.Sprintf("%d reloads under load (POST /load), only the site changed: the store, cache and recorder are kept", reloadCount)
	if changeStore {
		what = fmt.Sprintf("%d reloads under load (POST /load), cache_ttl alternating 59s/1m: each opens a new store, verifier and recorder and closes the old", reloadCount)
	}
	res.add(what,
		fmt.Sprintf("`go run ./test/faults -scenario reloads` (%d wrk runs of %v, -c %d, one cached key)", runs, e.opt.duration, e.opt.connections),
		fmt.Sprintf("reloads: %d failed, each took %s; wrk: %d requests, %d non-2xx, %d read, %d write, %d timeout errors, max latency %v",
			len(reloadErrs), dist(reloadTimes), total.Requests, total.Status, total.Read, total.Write, total.Timeout, us(total.MaxUS)),
		fmt.Sprintf("baseline: %v; 1 s after the last reload: %v; 126 s after: %v", base, after, later))
	for _, err := range reloadErrs {
		res.note("%s: reload error: %v", name, err)
	}
	return nil
}
