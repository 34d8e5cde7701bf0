package verifier

import (
	"context"
	"math"
	"math/rand/v2"
	"runtime"
	rtmetrics "runtime/metrics"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/lastused"
	"github.com/docana/keygate/internal/metrics"
)

// benchKeys stores n fresh keys in a fresh SQLite store and returns their
// Authorization header values.
func benchKeys(b *testing.B, n int) (*Verifier, *lastused.Recorder, []string) {
	b.Helper()
	ctx := context.Background()
	store := openSQLite(b)
	headers := make([]string, n)
	for i := range n {
		secret, k := newKey(b, apikey.ScopeWidget, apikey.ExpiryYear, time.Now())
		if err := store.Create(ctx, k, keystore.Audit{}); err != nil {
			b.Fatalf("Create: %v", err)
		}
		headers[i] = "ApiKey " + secret
	}
	v, _ := newVerifier(b, store, Config{})
	rec := lastused.New(store, lastused.Config{Interval: time.Hour})
	b.Cleanup(func() { rec.Close(ctx) })
	for _, h := range headers { // warm the cache
		if _, err := v.Verify(ctx, h, time.Now()); err != nil {
			b.Fatalf("Verify: %v", err)
		}
	}
	return v, rec, headers
}

// handle does what the handler does per request on a cache hit: verify
// the key at the current time, check the route's scopes, note the use.
func handle(b *testing.B, v *Verifier, rec *lastused.Recorder, route apikey.ScopeSet, header string) {
	now := time.Now()
	k, err := v.Verify(context.Background(), header, now)
	if err != nil || !route.Allows(k.Scope) {
		b.Fatalf("Verify: got (%v, %v)", k, err)
	}
	rec.Note(k.ID, now)
}

// BenchmarkVerifyCached is one request's work on a cache hit: parse the
// header, check the checksum, hash, look up the cache, check expiry,
// revocation and scope, note the use.
func BenchmarkVerifyCached(b *testing.B) {
	v, rec, headers := benchKeys(b, 1)
	route := apikey.NewScopeSet(apikey.ScopeWidget)
	b.ReportAllocs()
	for b.Loop() {
		handle(b, v, rec, route, headers[0])
	}
}

// BenchmarkVerifyCachedParallel runs the same work on every core, for one
// hot key (every request takes the same cache shard and recorder shard)
// and for 1024 keys spread over the shards.
func BenchmarkVerifyCachedParallel(b *testing.B) {
	route := apikey.NewScopeSet(apikey.ScopeWidget)
	for _, bc := range []struct {
		name string
		keys int
	}{{"one_key", 1}, {"1024_keys", 1024}} {
		b.Run(bc.name, func(b *testing.B) {
			v, rec, headers := benchKeys(b, bc.keys)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(len(headers))
				for pb.Next() {
					handle(b, v, rec, route, headers[i])
					if i++; i == len(headers) {
						i = 0
					}
				}
			})
		})
	}
}

// BenchmarkVerifyMiss verifies keys drawn at random from a SQLite store of
// a million keys through a cache of 10000, so nearly every request queries
// the store. The miss ratio is reported as misses/op.
func BenchmarkVerifyMiss(b *testing.B) {
	store := openDataset(b)
	m := metrics.New()
	v, _ := newVerifier(b, store, Config{CacheSize: 10_000, Metrics: m})
	r := rand.New(rand.NewPCG(1, 2))
	headers := make([]string, 100_000) // drawn before timing: deriving costs too
	for i := range headers {
		headers[i] = "ApiKey " + datasetSecret(r.IntN(datasetSize))
	}
	ctx := context.Background()
	misses := m.CacheLookups.WithLabelValues(metrics.LookupMiss)
	before := counterValue(misses)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := v.Verify(ctx, headers[i], time.Now()); err != nil {
			b.Fatalf("Verify: %v", err)
		}
		if i++; i == len(headers) {
			i = 0
		}
	}
	b.ReportMetric((counterValue(misses)-before)/float64(b.N), "misses/op")
}

// BenchmarkCacheMemoryPerKey fills a cache with 100000 keys of the
// million-key store and reports the heap it takes per cached key (B/key),
// the objects (objects/key) and what the cache adds to a garbage
// collection's CPU (gc-ns/key: the collector marks every cached key on
// every cycle, so at 100,000 keys this is a cost of the cached path). The
// cache is made twice as large, so that no shard evicts. Run it with
// -benchtime=1x: the measurement is taken once per b.N.
func BenchmarkCacheMemoryPerKey(b *testing.B) {
	n := min(100_000, datasetSize) // a smaller dataset (KEYGATE_BENCH_KEYS) caps it
	store := openDataset(b)
	ctx := context.Background()
	headers := make([]string, n)
	for i := range headers {
		headers[i] = "ApiKey " + datasetSecret(i)
	}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		gcBefore := gcCPU()
		v, err := New(store, Config{Format: testFormat, CacheSize: 2 * n})
		if err != nil {
			b.Fatalf("New: %v", err)
		}
		for _, h := range headers {
			if _, err := v.Verify(ctx, h, time.Now()); err != nil {
				b.Fatalf("Verify: %v", err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := v.cached(); got != n {
			b.Fatalf("cached entries: got %d, want %d", got, n)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "B/key")
		b.ReportMetric(float64(after.HeapObjects-before.HeapObjects)/float64(n), "objects/key")
		b.ReportMetric((gcCPU()-gcBefore)*1e9/float64(n), "gc-ns/key")
		v.Close()
		runtime.KeepAlive(v)
	}
}

// gcCPU returns the CPU time a garbage collection takes now, the least of
// five forced cycles (runtime/metrics' estimate of the collector's CPU).
func gcCPU() float64 {
	sample := []rtmetrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	least := math.Inf(1)
	for range 5 {
		rtmetrics.Read(sample)
		start := sample[0].Value.Float64()
		runtime.GC()
		rtmetrics.Read(sample)
		least = min(least, sample[0].Value.Float64()-start)
	}
	return least
}

func counterValue(c prometheus.Counter) float64 { return testutil.ToFloat64(c) }

// cached returns the number of entries in the positive cache.
func (v *Verifier) cached() int {
	n := 0
	for i := range v.shards {
		n += v.shards[i].keys.Len()
	}
	return n
}

func BenchmarkParseAuthorization(b *testing.B) {
	header := "ApiKey " + datasetSecret(0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := apikey.ParseAuthorization(header); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFormatCheck(b *testing.B) {
	secret := datasetSecret(0)
	b.ReportAllocs()
	for b.Loop() {
		if err := testFormat.Check(secret); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDigestOf(b *testing.B) {
	secret := datasetSecret(0)
	b.ReportAllocs()
	for b.Loop() {
		_ = apikey.DigestOf(secret)
	}
}
