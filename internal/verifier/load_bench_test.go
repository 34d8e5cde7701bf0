package verifier

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docana/keygate/internal/metrics"
)

// The benchmarks in this file reproduce what the load benchmark
// (test/loadbench) drives through the gateway: 64 connections at once, on
// paths that reach the store. The goroutines are many more than the cores,
// as a gateway's requests are.

// loadParallelism is goroutines per GOMAXPROCS: 32 on 2 cores makes the
// load benchmark's 64 connections.
const loadParallelism = 32

// BenchmarkVerifyMissConcurrent verifies keys of the million-key SQLite
// store from 64 goroutines at once through a cache of 10,000: each
// goroutine walks its own stretch of the keys, so nearly every call is a
// miss that queries the store.
func BenchmarkVerifyMissConcurrent(b *testing.B) {
	store := openDataset(b)
	m := metrics.New()
	v, _ := newVerifier(b, store, Config{CacheSize: 10_000, Metrics: m})
	headers := make([]string, 100_000)
	for i := range headers {
		headers[i] = "ApiKey " + datasetSecret(i*(datasetSize/len(headers)))
	}
	misses := m.CacheLookups.WithLabelValues(metrics.LookupMiss)
	before := counterValue(misses)
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(loadParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(int64(len(headers)/64))) % len(headers)
		for pb.Next() {
			if _, err := v.Verify(context.Background(), headers[i], time.Now()); err != nil {
				b.Errorf("Verify: %v", err)
				return
			}
			if i++; i == len(headers) {
				i = 0
			}
		}
	})
	b.ReportMetric((counterValue(misses)-before)/float64(b.N), "misses/op")
}

// BenchmarkVerifyUnknownKeysConcurrent verifies random well-formed keys
// (valid checksum, no such key) from 64 goroutines at once against the
// million-key store: a flood of guessed keys. There are more of them than
// the negative cache holds, so every call queries the store.
func BenchmarkVerifyUnknownKeysConcurrent(b *testing.B) {
	store := openDataset(b)
	v, _ := newVerifier(b, store, Config{})
	headers := make([]string, 4*maxNegative)
	for i := range headers {
		secret, err := testFormat.Generate()
		if err != nil {
			b.Fatal(err)
		}
		headers[i] = "ApiKey " + secret
	}
	b.ReportAllocs()
	b.SetParallelism(loadParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(headers))
		for pb.Next() {
			if _, err := v.Verify(context.Background(), headers[i], time.Now()); err != ErrUnknownKey {
				b.Errorf("Verify(unknown key) = %v, want ErrUnknownKey", err)
				return
			}
			if i++; i == len(headers) {
				i = 0
			}
		}
	})
}

// BenchmarkVerifyNegativeHit verifies one unknown key over and over: after
// the first call it is answered from the negative cache, as a client
// repeating a deleted or mistyped key is.
func BenchmarkVerifyNegativeHit(b *testing.B) {
	v, _ := newVerifier(b, openSQLite(b), Config{})
	secret, err := testFormat.Generate()
	if err != nil {
		b.Fatal(err)
	}
	header := "ApiKey " + secret
	if _, err := v.Verify(context.Background(), header, time.Now()); err != ErrUnknownKey {
		b.Fatalf("Verify(unknown key) = %v, want ErrUnknownKey", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), header, time.Now()); err != ErrUnknownKey {
			b.Fatalf("Verify(unknown key) = %v, want ErrUnknownKey", err)
		}
	}
}
