package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// freshEvery: every freshEvery-th trial starts instance B anew just before
// it, so that the revocation comes in B's first moments.
const freshEvery = 5

func runRevocation(ctx context.Context, e *env) (*result, error) {
	res := &result{}
	dsn, drop, err := newDatabase(ctx, e.opt.pgDSN)
	if err != nil {
		return nil, err
	}
	defer drop()
	cfg := gatewayConfig{Store: `store postgres "` + dsn + `"`}
	a, err := e.startGateway(ctx, "revocation-a", cfg)
	if err != nil {
		return nil, err
	}
	defer a.proc.Stop(10 * time.Second)
	b, err := e.startGateway(ctx, "revocation-b", cfg)
	if err != nil {
		return nil, err
	}
	defer func() { b.proc.Stop(10 * time.Second) }()
	bStarted := time.Now()

	type trial struct {
		fresh    bool
		bAge     time.Duration // B's age when the CLI returned
		cli      time.Duration // the CLI's run time
		at0      bool          // B's first answer was 401
		until401 time.Duration // from the CLI's return to B's first 401
		first    int           // B's first status
	}
	var trials []trial
	var failures []string
	for i := range e.opt.trials {
		fresh := i%freshEvery == freshEvery-1
		if fresh {
			b.proc.Stop(10 * time.Second)
			start := time.Now()
			if b, err = e.startGateway(ctx, fmt.Sprintf("revocation-b%d", i), cfg); err != nil {
				return nil, err
			}
			bStarted = start
		}
		secret, id, err := a.createKey(ctx, fmt.Sprintf("revocation %d", i))
		if err != nil {
			return nil, err
		}
		// Both instances verify and cache the key.
		for _, g := range []*gateway{b, a} {
			if st, _, err := g.probe(ctx, secret, 10*time.Second); err != nil || st != 200 {
				return nil, fmt.Errorf("trial %d: key on %s: %d %v", i, g.name, st, err)
			}
		}
		cmd := exec.CommandContext(ctx, e.bin, "apikey", "revoke", "--yes", id, "--address", "127.0.0.1:"+strconv.Itoa(a.cfg.Admin))
		cmd.Env = append(os.Environ(), "HOME="+a.home)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		returned := time.Now()
		if err != nil {
			return nil, fmt.Errorf("trial %d: keygate apikey revoke: %v: %s", i, err, out)
		}
		t := trial{fresh: fresh, bAge: returned.Sub(bStarted), cli: returned.Sub(start)}
		deadline := returned.Add(15 * time.Second)
		for n := 0; ; n++ {
			st, _, err := b.probe(ctx, secret, 10*time.Second)
			if err != nil {
				return nil, err
			}
			if n == 0 {
				t.first = st
			}
			if st == 401 {
				t.at0 = n == 0
				t.until401 = time.Since(returned)
				break
			}
			if st != 200 {
				failures = append(failures, fmt.Sprintf("trial %d: B answered %d", i, st))
			}
			if time.Now().After(deadline) {
				failures = append(failures, fmt.Sprintf("trial %d: B still accepted the key 15s after the revocation", i))
				t.until401 = 15 * time.Second
				break
			}
			time.Sleep(time.Millisecond)
		}
		if st, _, _ := a.probe(ctx, secret, 10*time.Second); st != 401 {
			failures = append(failures, fmt.Sprintf("trial %d: A answered %d after its own revocation", i, st))
		}
		trials = append(trials, t)
	}
	describe := func(keep func(trial) bool) (n, at0 int, times, ages, clis []time.Duration) {
		for _, t := range trials {
			if !keep(t) {
				continue
			}
			n++
			if t.at0 {
				at0++
			}
			times, ages, clis = append(times, t.until401), append(ages, t.bAge), append(clis, t.cli)
		}
		return
	}
	for _, group := range []struct {
		what string
		keep func(trial) bool
	}{
		{"B running for a while", func(t trial) bool { return !t.fresh }},
		{"B started just before the trial", func(t trial) bool { return t.fresh }},
	} {
		n, at0, times, ages, clis := describe(group.keep)
		res.add(fmt.Sprintf("revoke on A, first request to B (%s)", group.what),
			fmt.Sprintf("`go run ./test/faults -scenario revocation` (`keygate apikey revoke --yes ID --address <A>`, then GET with the key on B at once and every 1ms until 401)"),
			fmt.Sprintf("%d trials: %d answered 401 at once; time from the CLI's return to B's first 401: %s; CLI run time %s; B's age at the revocation: %s", n, at0, dist(times), dist(clis), dist(ages)),
			fmt.Sprintf("%d requests accepted on B after the CLI returned", n-at0))
	}
	for _, f := range failures {
		res.note("%s", f)
	}
	return res, nil
}

// newDatabase creates a database of its own on the server at serverDSN and
// returns its DSN and a function that drops it.
func newDatabase(ctx context.Context, serverDSN string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, serverDSN)
	if err != nil {
		return "", nil, fmt.Errorf("PostgreSQL server unreachable (-pg): %w", err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "keygate_faults_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		conn.Close(ctx)
		return "", nil, err
	}
	conn.Close(ctx)
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, serverDSN)
		if err != nil {
			logf("dropping %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			logf("dropping %s: %v", name, err)
		}
	}
	atCleanup(drop)
	u, err := url.Parse(serverDSN)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	return strings.TrimSpace(u.String()), drop, nil
}
