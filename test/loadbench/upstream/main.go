// Command upstream is the load benchmark's stand-in API: a net/http server
// that answers every request with a fixed 200 and a short body, doing as
// little as a Go server can so that it is never what limits a run.
//
//	go run ./test/loadbench/upstream -listen 127.0.0.1:9000
package main

import (
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to listen on")
	flag.Parse()

	body := []byte("ok\n")
	contentType := []string{"text/plain; charset=utf-8"}
	contentLength := []string{"3"}
	srv := &http.Server{
		Addr: *listen,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Headers set as prepared slices: no allocation, no sniffing.
			h := w.Header()
			h["Content-Type"] = contentType
			h["Content-Length"] = contentLength
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
	}
	log.Fatal(srv.ListenAndServe())
}
