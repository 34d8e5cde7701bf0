package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/docana/keygate/test/internal/loadkit"
)

const (
	slowConns    = 2000
	slowInterval = 3 * time.Second // one header byte per connection this often
)

// slowClients holds n connections to addr, each sending a request line and
// then one header byte every slowInterval, never finishing its headers.
type slowClients struct {
	opened atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startSlowClients(addr string, n int) *slowClients {
	s := &slowClients{stop: make(chan struct{})}
	for range n {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			s.opened.Add(1)
			if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")); err != nil {
				return
			}
			t := time.NewTicker(slowInterval)
			defer t.Stop()
			for {
				select {
				case <-s.stop:
					return
				case <-t.C:
					if _, err := c.Write([]byte("a")); err != nil {
						return
					}
				}
			}
		}()
	}
	return s
}

func (s *slowClients) close() {
	close(s.stop)
	s.wg.Wait()
}

func runSlowClients(ctx context.Context, e *env) (*result, error) {
	res := &result{}
	// Each slow connection is a descriptor here and one in the gateway.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if lim.Cur < 2*slowConns+1000 {
		res.note("RLIMIT_NOFILE is %d: too low for %d slow connections", lim.Cur, slowConns)
	}
	for _, readHeader := range []string{"", "10s"} {
		label := "Caddy's default timeouts"
		if readHeader != "" {
			label = "timeouts { read_header " + readHeader + " }"
		}
		name := "slow-default"
		if readHeader != "" {
			name = "slow-readheader"
		}
		g, err := e.startGateway(ctx, name, gatewayConfig{Store: "store sqlite " + filepath.Join(e.work, name+".db"), ReadHeader: readHeader})
		if err != nil {
			return nil, err
		}
		secrets, _, file, err := g.keys(ctx, 1, name)
		if err != nil {
			g.proc.Stop(10 * time.Second)
			return nil, err
		}
		_ = secrets
		w, err := g.startWrk("wrk-"+name+"-alone", file, 1, e.opt.duration)
		if err != nil {
			g.proc.Stop(10 * time.Second)
			return nil, err
		}
		alone, err := loadkit.WaitWrk(ctx, e.work, w)
		if err != nil {
			g.proc.Stop(10 * time.Second)
			return nil, err
		}
		slow := startSlowClients("127.0.0.1:"+strconv.Itoa(g.cfg.Port), slowConns)
		time.Sleep(2 * time.Second)
		fp1, _ := g.footprint(ctx)
		w, err = g.startWrk("wrk-"+name+"-slow", file, 1, e.opt.duration)
		if err != nil {
			slow.close()
			g.proc.Stop(10 * time.Second)
			return nil, err
		}
		with, err := loadkit.WaitWrk(ctx, e.work, w)
		if err != nil {
			slow.close()
			g.proc.Stop(10 * time.Second)
			return nil, err
		}
		// Long enough for a 10s read_header to end every slow connection.
		time.Sleep(4 * time.Second)
		fp2, _ := g.footprint(ctx)
		opened := slow.opened.Load()
		slow.close()
		g.proc.Stop(10 * time.Second)
		res.add(fmt.Sprintf("%s, no slow clients", label), fmt.Sprintf("`go run ./test/faults -scenario slowclients` (wrk %v, -c %d, one cached key)", e.opt.duration, e.opt.connections),
			wrkSummary(alone), "-")
		res.add(fmt.Sprintf("%s, %d slow-header connections (a byte every %v)", label, slowConns, slowInterval), "same, with the connections opened 2 s before wrk",
			fmt.Sprintf("%s; %d connections opened; gateway while they were open: %v; %v after wrk ended: %v", wrkSummary(with), opened, fp1, 4*time.Second, fp2),
			fmt.Sprintf("%d failed requests; %.0f slow connections closed by the gateway within %v of opening (its descriptors)", with.Status+with.Errors(), fp1.fds-fp2.fds, e.opt.duration+6*time.Second))
	}
	return res, nil
}
