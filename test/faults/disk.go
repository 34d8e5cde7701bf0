package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docana/keygate/test/internal/loadkit"
)

// diskFault is a fault of the SQLite file's file system: apply and undo it.
type diskFault struct {
	name, about, command string
	apply, undo          func(dir string) error
}

// mountTmpfs mounts a tmpfs of size at dir and returns its unmount.
func mountTmpfs(dir, size string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mount -t tmpfs (run as root): %v: %s", err, out)
	}
	var once sync.Once
	unmount := func() {
		once.Do(func() {
			_ = exec.Command("chattr", "-R", "-i", dir).Run()
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				logf("umount %s: %v: %s", dir, err, out)
			}
		})
	}
	atCleanup(unmount)
	return unmount, nil
}

// fillDisk writes zeros to dir/fill until the file system is full.
func fillDisk(dir string) error {
	f, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return err
		}
	}
}

func runFullDisk(ctx context.Context, e *env) (*result, error) {
	return runDiskFault(ctx, e, diskFault{
		name:    "fulldisk",
		about:   "the SQLite file's file system (a 2 MB tmpfs) filled up",
		command: "dd if=/dev/zero of=<dir>/fill (until ENOSPC); rm <dir>/fill",
		apply:   fillDisk,
		undo:    func(dir string) error { return os.Remove(filepath.Join(dir, "fill")) },
	})
}

func runReadOnly(ctx context.Context, e *env) (*result, error) {
	// A file system cannot be remounted read-only while a process holds a
	// file open for writing (EBUSY), and chmod does not bind root: the
	// files and their directory are made immutable instead, which refuses
	// every new open for writing (and every new file, such as a journal)
	// but not writes through descriptors already open.
	chattr := func(flag string) func(dir string) error {
		return func(dir string) error {
			out, err := exec.Command("chattr", "-R", flag, dir).CombinedOutput()
			if err != nil {
				return fmt.Errorf("chattr %s: %v: %s", flag, err, out)
			}
			return nil
		}
	}
	return runDiskFault(ctx, e, diskFault{
		name:    "readonly",
		about:   "the SQLite file, its -wal and -shm and their directory made immutable (chattr +i)",
		command: "chattr -R +i <dir>; chattr -R -i <dir>",
		apply:   chattr("+i"),
		undo:    chattr("-i"),
	})
}

// runDiskFault loads a gateway whose SQLite file is on a small tmpfs,
// applies the fault, probes the gateway, the admin API and the recorder
// while it lasts, undoes it, and checks that the pending last-used times
// are then written.
func runDiskFault(ctx context.Context, e *env, f diskFault) (*result, error) {
	res := &result{}
	dir := filepath.Join(e.work, f.name+"-mnt")
	unmount, err := mountTmpfs(dir, "2m")
	if err != nil {
		return nil, err
	}
	defer unmount()
	dbPath := filepath.Join(dir, "store", "keys.db")
	g, err := e.startGateway(ctx, f.name, gatewayConfig{Store: "store sqlite " + dbPath, LastUsedInterval: "1s"})
	if err != nil {
		return nil, err
	}
	defer g.proc.Stop(15 * time.Second)
	_, ids, file, err := g.keys(ctx, 1, f.name)
	if err != nil {
		return nil, err
	}
	// Keys stored but never used: the gateway must read the store for
	// them during the fault.
	uncached, uncachedIDs, _, err := g.keys(ctx, 4, f.name+" uncached")
	if err != nil {
		return nil, err
	}
	m0, _ := g.metrics(ctx)

	w, err := g.startWrk("wrk-"+f.name, file, 1, e.opt.duration)
	if err != nil {
		return nil, err
	}
	time.Sleep(1500 * time.Millisecond)
	faultAt := time.Now()
	if err := f.apply(filepath.Join(dir, "store")); err != nil {
		return nil, err
	}
	df, _ := exec.Command("df", "-h", dir).Output()
	logf("  fault applied: %s", strings.TrimSpace(string(df)))

	// During the fault: admin writes and reads, an uncached key.
	create := g.adminCall(ctx, http.MethodPost, "/apikeys", map[string]string{"name": "during the fault", "scope": "full", "expires_in": "1d"}, 30*time.Second)
	revoke := g.adminCall(ctx, http.MethodDelete, "/apikeys/"+uncachedIDs[3], nil, 30*time.Second)
	list := g.adminCall(ctx, http.MethodGet, "/apikeys", nil, 30*time.Second)
	var probes []string
	for _, s := range uncached[:3] {
		st, ra, err := g.probe(ctx, s, 10*time.Second)
		probes = append(probes, fmt.Sprintf("%d%s%s", st, ifs(ra != "", " Retry-After "+ra), errText(err)))
	}
	// A second process on the same file (a restart) opens the store anew,
	// as does a reload that changes the apikeys configuration; the reload
	// also closes the old recorder, whose last flush must wait for the
	// fault to end (the probes above left uses pending in it).
	second := "started and answered"
	if g2, err := e.startGateway(ctx, f.name+"-second", gatewayConfig{Store: "store sqlite " + dbPath, LastUsedInterval: "1s"}); err != nil {
		second = "did not start: " + lastLogLine(filepath.Join(e.work, f.name+"-second.log"))
	} else {
		g2.proc.Stop(10 * time.Second)
	}
	reloadCfg := g.cfg
	reloadCfg.CacheTTL = "59s"
	reloadStart := time.Now()
	reloaded := make(chan error, 1)
	var reloadTook time.Duration
	go func() {
		err := g.reload(ctx, reloadCfg)
		reloadTook = time.Since(reloadStart)
		reloaded <- err
	}()
	// Let at least two flushes fail (interval 1s).
	time.Sleep(2500 * time.Millisecond)
	m1, _ := g.metrics(ctx)
	undoAt := time.Now()
	if err := f.undo(filepath.Join(dir, "store")); err != nil {
		return nil, err
	}
	reloadErr := <-reloaded
	r, err := loadkit.WaitWrk(ctx, e.work, w)
	if err != nil {
		return nil, err
	}
	loadEnd := time.Now()
	// Two flush intervals after the load ended.
	time.Sleep(2500 * time.Millisecond)
	m2, _ := g.metrics(ctx)
	createAfter := g.adminCall(ctx, http.MethodPost, "/apikeys", map[string]string{"name": "after the fault", "scope": "full", "expires_in": "1d"}, 30*time.Second)
	reloadCfg.CacheTTL = "58s"
	reloadAfter := g.reload(ctx, reloadCfg)
	stored, err := storedLastUsed(dbPath, append(ids, uncachedIDs[:3]...))
	if err != nil {
		return nil, err
	}
	// The probe keys were used during the fault only, before the reload:
	// their last uses were pending in the recorder the reload closed.
	probesStored := 0
	for _, id := range uncachedIDs[:3] {
		_, last := e.up.seen(id)
		if t, ok := stored[id]; ok && !t.Before(last.Add(-time.Second)) {
			probesStored++
		}
	}
	_, last := e.up.seen(ids[0])
	gap := "none stored"
	if t, ok := stored[ids[0]]; ok {
		gap = fmt.Sprintf("%v behind the upstream's last request (stored %s after the fault was undone)",
			last.Sub(t).Round(time.Microsecond), t.Sub(undoAt).Round(time.Millisecond))
	}
	errs := func(m map[string]float64) float64 { return m[`caddy_apikey_last_used_writes_total{result="error"}`] }
	oks := func(m map[string]float64) float64 { return m[`caddy_apikey_last_used_writes_total{result="ok"}`] }

	res.add(f.about+", under load", fmt.Sprintf("`go run ./test/faults -scenario %s` (%s, %v into a %v wrk run with one cached key, undone %v later)",
		f.name, f.command, 1500*time.Millisecond, e.opt.duration, undoAt.Sub(faultAt).Round(100*time.Millisecond)),
		fmt.Sprintf("cached key: %s", wrkSummary(r)),
		fmt.Sprintf("%d failed requests with the cached key", r.Status+r.Read+r.Write+r.Timeout+r.Connect))
	res.add("admin API during the fault", "POST /apikeys, DELETE /apikeys/{id}, GET /apikeys",
		fmt.Sprintf("create: %v %s; revoke: %v %s; list: %v", create, short(create.body), revoke, short(revoke.body), list.status),
		"nothing: a failed write leaves the store as it was")
	res.add("requests with stored keys not yet cached, during the fault", "GET / with 3 such keys",
		strings.Join(probes, ", "), "-")
	res.add("last-used times during and after the fault", "caddy_apikey_last_used_writes_total; last_used_at read from the file after the undo",
		fmt.Sprintf("writes during the fault: %.0f failed, %.0f ok; after the undo: %.0f failed, %.0f ok; pending after: %.0f; the cached key's last use %s; load ended %s after the undo",
			errs(m1)-errs(m0), oks(m1)-oks(m0), errs(m2)-errs(m1), oks(m2)-oks(m1), m2["caddy_apikey_last_used_pending"], gap, loadEnd.Sub(undoAt).Round(time.Millisecond)),
		"nothing, if the gap is within one flush interval (1s)")
	res.add("a second keygate process on the same file, and a reload that reopens the store, during the fault (the fault undone 2.5s into the reload)",
		"keygate run with the same store; POST /load with another cache_ttl",
		fmt.Sprintf("second process: %s; reload: %s, answered %v after it was sent (the fault was undone %v after)", second, errOr(reloadErr, "200, the new config runs"), reloadTook.Round(time.Millisecond), undoAt.Sub(reloadStart).Round(time.Millisecond)),
		fmt.Sprintf("last uses pending in the recorder the reload closed (3 keys used only during the fault): %d of 3 stored", probesStored))
	res.add("admin write and reload after the undo", "POST /apikeys; POST /load", fmt.Sprintf("%v; reload: %s", createAfter, errOr(reloadAfter, "200")), "-")
	return res, nil
}

func ifs(c bool, s string) string {
	if c {
		return s
	}
	return ""
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return " error " + err.Error()
}

// short cuts an answer body for a table cell; a 2xx answer's body, which
// may hold a secret, is left out.
func short(s string) string {
	if strings.HasPrefix(s, "{\"secret\"") || strings.HasPrefix(s, "{\"id\"") {
		return ""
	}
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return "`" + s + "`"
}

func errOr(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

// lastLogLine returns the last line of a process's log that says "error".
func lastLogLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var last string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(strings.ToLower(line), "error") {
			last = line
		}
	}
	if len(last) > 400 {
		last = last[:400] + "…"
	}
	return strings.TrimSpace(last)
}
