package main

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// upstream is the API behind the gateway, in this process: it answers 200
// "ok" and records, per key ID that keygate forwarded (X-Api-Key-Id), how
// many requests it got and when the last one arrived. That is the truth the
// stored last-used times are compared with, and the proof that a request
// answered with an error was not proxied.
type upstream struct {
	addr string
	srv  *http.Server
	keys sync.Map // key ID → *keyStat
	// anonymous counts requests without X-Api-Key-Id: keygate should
	// never proxy one.
	anonymous atomic.Int64
}

type keyStat struct {
	n    atomic.Int64
	last atomic.Int64 // unix nanoseconds
}

func startUpstream() (*upstream, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{addr: l.Addr().String()}
	body := []byte("ok\n")
	u.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if id := r.Header.Get("X-Api-Key-Id"); id != "" {
				v, ok := u.keys.Load(id)
				if !ok {
					v, _ = u.keys.LoadOrStore(id, new(keyStat))
				}
				s := v.(*keyStat)
				s.n.Add(1)
				now := time.Now().UnixNano()
				for {
					old := s.last.Load()
					if now <= old || s.last.CompareAndSwap(old, now) {
						break
					}
				}
			} else {
				u.anonymous.Add(1)
			}
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go u.srv.Serve(l)
	return u, nil
}

// seen returns how many requests with key id reached the upstream, and
// when the last one did.
func (u *upstream) seen(id string) (int64, time.Time) {
	v, ok := u.keys.Load(id)
	if !ok {
		return 0, time.Time{}
	}
	s := v.(*keyStat)
	return s.n.Load(), time.Unix(0, s.last.Load())
}

func (u *upstream) close() { u.srv.Close() }
