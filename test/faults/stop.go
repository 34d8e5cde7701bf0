package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"time"

	"github.com/docana/keygate/test/internal/loadkit"
)

// stopKeys is how many keys the stop scenarios load round-robin: each must
// have its last use stored.
const stopKeys = 100

// stopRun is one gateway stopped by a signal under load.
type stopRun struct {
	wrk      loadkit.WrkResult
	exit     time.Duration // from the signal to the process's exit
	exitErr  error
	signalAt time.Time
	gaps     []time.Duration // per key: upstream's last request - stored last use
	missing  int             // keys with no stored last use at all
	upstream int64           // requests that reached the upstream during the load
	interval time.Duration
	// usageOff counts the keys whose stored admitted requests differ from
	// the requests of that key the upstream received; usageDiff sums the
	// differences (stored − upstream).
	usageOff  int
	usageDiff int64
}

// loadAndSignal starts a gateway on an SQLite file of its own, loads it
// with stopKeys cached keys, sends sig after offset and waits for the
// process and for wrk, then compares the stored last-used times with what
// the upstream saw.
func loadAndSignal(ctx context.Context, e *env, name string, cfg gatewayConfig, sig syscall.Signal, offset time.Duration) (*stopRun, error) {
	dbPath := filepath.Join(e.work, name+".db")
	cfg.Store = "store sqlite " + dbPath
	g, err := e.startGateway(ctx, name, cfg)
	if err != nil {
		return nil, err
	}
	defer g.proc.Stop(5 * time.Second)
	secrets, ids, file, err := g.keys(ctx, stopKeys, name)
	if err != nil {
		return nil, err
	}
	var before int64
	for _, s := range secrets { // cache every key
		if st, _, err := g.probe(ctx, s, 10*time.Second); err != nil || st != 200 {
			return nil, fmt.Errorf("warming a key: %d %v", st, err)
		}
	}
	for _, id := range ids {
		n, _ := e.up.seen(id)
		before += n
	}
	w, err := g.startWrk("wrk-"+name, file, len(secrets), e.opt.duration)
	if err != nil {
		return nil, err
	}
	run := &stopRun{}
	run.interval, _ = time.ParseDuration(cfg.LastUsedInterval)
	select {
	case <-time.After(offset):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	run.signalAt = time.Now()
	if err := syscall.Kill(g.proc.Pid(), sig); err != nil {
		return nil, err
	}
	select {
	case <-g.proc.Done():
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("%s did not exit within 60s of %v", name, sig)
	}
	run.exit, run.exitErr = time.Since(run.signalAt), g.proc.Err
	if run.wrk, err = loadkit.WaitWrk(ctx, e.work, w); err != nil {
		return nil, err
	}
	stored, err := storedLastUsed(dbPath, ids)
	if err != nil {
		return nil, err
	}
	usage, err := storedUsage(dbPath, ids)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		n, last := e.up.seen(id)
		if usage[id] != n {
			run.usageOff++
			run.usageDiff += usage[id] - n
		}
		run.upstream += n
		t, ok := stored[id]
		if !ok {
			run.missing++
			continue
		}
		run.gaps = append(run.gaps, last.Sub(t))
	}
	run.upstream -= before
	return run, nil
}

func maxGap(gaps []time.Duration) time.Duration {
	var m time.Duration
	for _, g := range gaps {
		m = max(m, g)
	}
	return m
}

func runSigterm(ctx context.Context, e *env) (*result, error) {
	res := &result{}
	cfg := gatewayConfig{GracePeriod: "10s", LastUsedInterval: "10s"}
	r, err := loadAndSignal(ctx, e, "sigterm", cfg, syscall.SIGTERM, e.opt.duration/2)
	if err != nil {
		return nil, err
	}
	lateKeys := 0
	for _, g := range r.gaps {
		if g > 100*time.Millisecond {
			lateKeys++
		}
	}
	cmd := fmt.Sprintf("`go run ./test/faults -scenario sigterm` (kill -TERM <pid> %v into a %v wrk run, -c %d, %d keys)", e.opt.duration/2, e.opt.duration, e.opt.connections, stopKeys)
	res.add("SIGTERM under load, grace_period 10s", cmd,
		fmt.Sprintf("exited %v after the signal (%v); wrk: %s; %d requests reached the upstream", r.exit.Round(time.Millisecond), exitText(r.exitErr), wrkSummary(r.wrk), r.upstream),
		fmt.Sprintf("failed requests: %d non-2xx, %d read errors, %d timeouts; %d requests reached the upstream without an answer; the %d connect/write errors are wrk's reconnections refused after the listener closed, none before",
			r.wrk.Status, r.wrk.Read, r.wrk.Timeout, r.upstream-(r.wrk.Requests), r.wrk.Connect+r.wrk.Write))
	res.add("last-used times after SIGTERM", "same run: last_used_at read from the SQLite file after exit, compared per key with the upstream's last request",
		fmt.Sprintf("%d of %d keys stored; gap (upstream's last request − stored last use) max %v", len(r.gaps), stopKeys, maxGap(r.gaps).Round(time.Microsecond)),
		fmt.Sprintf("%d keys with no time, %d keys more than 100ms behind", r.missing, lateKeys))
	res.add("usage counts after SIGTERM", "same run: the admitted requests (usage, result ok, minute rows) read from the SQLite file after exit, per key, against the requests of that key the upstream received",
		fmt.Sprintf("%d of %d keys count exactly what the upstream received", stopKeys-r.usageOff, stopKeys),
		fmt.Sprintf("%d keys off, by %d requests in all", r.usageOff, r.usageDiff))
	return res, nil
}

func runSigkill(ctx context.Context, e *env) (*result, error) {
	res := &result{}
	for i := range 3 {
		// An interval shorter than the run, so that flushes happen before
		// the kill, at a random moment of the run, so that the kill falls
		// anywhere between two flushes.
		cfg := gatewayConfig{LastUsedInterval: "2s"}
		offset := 3*time.Second + time.Duration(rand.Int64N(int64(e.opt.duration-3500*time.Millisecond)))
		r, err := loadAndSignal(ctx, e, fmt.Sprintf("sigkill-%d", i+1), cfg, syscall.SIGKILL, offset)
		if err != nil {
			return nil, err
		}
		res.add(fmt.Sprintf("SIGKILL under load, last_used_interval 2s (trial %d)", i+1),
			fmt.Sprintf("`go run ./test/faults -scenario sigkill` (kill -KILL <pid> %v into the wrk run)", offset.Round(time.Millisecond)),
			fmt.Sprintf("wrk: %s; %d requests reached the upstream", wrkSummary(r.wrk), r.upstream),
			fmt.Sprintf("last-used: %d of %d keys stored, gap (upstream's last request − stored) max %v (bound: one interval, 2s); in-flight requests cut: %d read errors; %d requests reached the upstream and got no answer",
				len(r.gaps), stopKeys, maxGap(r.gaps).Round(time.Millisecond), r.wrk.Read, r.upstream-r.wrk.Requests))
	}
	return res, nil
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}
