package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// testRedisDB is the database the tests use and flush on the shared Redis.
const testRedisDB = 12

// redisURL returns the URL of the shared test Redis (KEYGATE_TEST_REDIS,
// default 127.0.0.1:6379) with database testRedisDB, flushed. Without
// Redis the test fails in CI and is skipped elsewhere.
func redisURL(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("KEYGATE_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	url := fmt.Sprintf("redis://%s/%d", addr, testRedisDB)
	c := redis.NewClient(&redis.Options{Addr: addr, DB: testRedisDB})
	defer c.Close()
	if err := c.FlushDB(context.Background()).Err(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Redis at %s: %v (CI must start it: see .ci/run)", addr, err)
		}
		t.Skipf("no Redis at %s (%v): start redis-server or set KEYGATE_TEST_REDIS=host:port", addr, err)
	}
	return url
}

func newRedis(t testing.TB, url string) *Redis {
	t.Helper()
	r, err := NewRedis(RedisConfig{URL: url, SyncInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestRedisTwoInstancesShareOneCountNearTheLimit(t *testing.T) {
	url := redisURL(t)
	a, b := newRedis(t, url), newRedis(t, url)
	p := mustCompile(t, "10/1m")
	admitted := 0
	for i := range 30 {
		l := a
		if i%2 == 1 {
			l = b
		}
		d, err := l.Allow("key_shared", p, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			admitted++
		}
	}
	if admitted != 10 {
		t.Fatalf("two instances admitted %d of 30 requests under 10/1m, want 10", admitted)
	}
}

// Far from the limit each instance decides alone and sends its counts in
// batches; the shared count still ends where the requests put it, and
// concurrent traffic through both instances overshoots by little.
func TestRedisConcurrentInstancesStayNearTheLimit(t *testing.T) {
	url := redisURL(t)
	a, b := newRedis(t, url), newRedis(t, url)
	const n = 2000
	p := mustCompile(t, fmt.Sprintf("%d/1m", n))
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		l := a
		if g%2 == 1 {
			l = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				d, err := l.Allow("key_conc", p, time.Now())
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	got := admitted.Load()
	over := float64(got-n) / n * 100
	t.Logf("admitted %d of 8000 under %d/1m: %.2f%% over", got, n, over)
	// The documented bound for 2 instances: 2*N/16 = 12.5%.
	if got < n || over > 12.5 {
		t.Fatalf("admitted %d, want %d and at most 12.5%% over", got, n)
	}
}

func TestRedisFarFromTheLimitNeedsNoCallPerRequest(t *testing.T) {
	url := redisURL(t)
	a := newRedis(t, url)
	p := mustCompile(t, "1000000/1m")
	if _, err := a.Allow("key_far", p, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Stop Redis answering this limiter: requests still pass while the
	// budget lasts and the counts are fresh.
	a.client.Options().Addr = "127.0.0.1:1"
	for i := range 100 {
		if d, err := a.Allow("key_far", p, time.Now()); err != nil || !d.Allowed {
			t.Fatalf("request %d: %+v, %v: a call was made", i, d, err)
		}
	}
}

func TestRedisChangingALimitKeepsWhatWasUsed(t *testing.T) {
	url := redisURL(t)
	a := newRedis(t, url)
	for range 8 {
		if _, err := a.Allow("key_chg", mustCompile(t, "10/1m"), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// Another instance sees the same 8.
	b := newRedis(t, url)
	d, err := b.Allow("key_chg", mustCompile(t, "20/1m"), time.Now())
	if err != nil || !d.Allowed || d.Remaining != 11 {
		t.Fatalf("after raising to 20: %+v, %v; want admitted with 11 left", d, err)
	}
	d, err = b.Allow("key_chg", mustCompile(t, "5/1m"), time.Now())
	if err != nil || d.Allowed {
		t.Fatalf("after lowering to 5: %+v, %v; want refused", d, err)
	}
}

// startRedis starts a redis-server of the test's own on a free port, for
// stopping it; it fails or skips like redisURL when there is none.
func startRedis(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server not found (CI installs it: see .ci/run)")
		}
		t.Skip("redis-server not found: install it (apt-get install redis-server)")
	}
	dir := t.TempDir()
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer c.Close()
	for range 100 {
		if c.Ping(context.Background()).Err() == nil {
			return cmd
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("own redis-server did not answer")
	return nil
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestRedisDownThenBackRecoversByItself(t *testing.T) {
	port := freePort(t)
	// Made while Redis is not running: no error.
	r := newRedis(t, fmt.Sprintf("redis://127.0.0.1:%d/0", port))
	p := mustCompile(t, "5/1m")
	if _, err := r.Allow("key_down", p, time.Now()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Allow while down = %v, want ErrUnavailable", err)
	}
	// While down, requests fail at once instead of each trying Redis
	// (and waiting for its timeout).
	calls := syncCalls.Load()
	for range 100 {
		if _, err := r.Allow("key_down", p, time.Now()); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Allow while down = %v, want ErrUnavailable", err)
		}
	}
	if n := syncCalls.Load() - calls; n > 1 {
		t.Errorf("100 requests while down made %d calls to Redis, want at most 1 (after the backoff)", n)
	}
	cmd := startRedis(t, port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, err := r.Allow("key_down", p, time.Now())
		if err == nil && d.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered 5s after Redis started: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// And down again.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline = time.Now().Add(5 * time.Second)
	for {
		if _, err := r.Allow("key_down", p, time.Now()); errors.Is(err, ErrUnavailable) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still answering 5s after Redis stopped")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNewRedisRefusesABadURLWithoutQuotingIt(t *testing.T) {
	_, err := NewRedis(RedisConfig{URL: "http://user:s3cret@host/0"})
	if err == nil || errors.Is(err, nil) {
		t.Fatal("http:// URL accepted")
	}
	if s := err.Error(); len(s) == 0 || contains(s, "s3cret") {
		t.Errorf("error %q quotes the URL", s)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func BenchmarkRedisAllowFarFromTheLimit(b *testing.B) {
	url := redisURL(b)
	r, err := NewRedis(RedisConfig{URL: url})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	p := mustCompile(b, "1000000000/1m")
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("key_b%d", i)
		if _, err := r.Allow(ids[i], p, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	calls := syncCalls.Load()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if d, err := r.Allow(ids[i%len(ids)], p, time.Now()); err != nil || !d.Allowed {
				b.Fatal(d, err)
			}
		}
	})
	b.ReportMetric(float64(syncCalls.Load()-calls)/float64(b.N), "calls/op")
}

// A window a key did not have when Redis last judged it is read from Redis
// before the instance decides alone: the other instance may have used it.
func TestRedisANewWindowIsReadBeforeLocalDecisions(t *testing.T) {
	url := redisURL(t)
	a, b := newRedis(t, url), newRedis(t, url)
	before := mustCompile(t, "1000/1m")
	after := mustCompile(t, "1000/1m", "5/1h")
	if d, err := a.Allow("key_new", before, time.Now()); err != nil || !d.Allowed {
		t.Fatalf("first request: %+v, %v", d, err)
	}
	for range 5 {
		if _, err := b.Allow("key_new", after, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := a.Allow("key_new", after, time.Now()); err != nil || d.Allowed {
		t.Fatalf("a request under the new 5/1h, which the other instance spent: %+v, %v; want refused", d, err)
	}
}
