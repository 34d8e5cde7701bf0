package ratelimit

import (
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"
)

// base is a time on a whole second, so that bucket edges fall where the
// tests say.
var base = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

func mustCompile(t testing.TB, list ...string) *Policy {
	t.Helper()
	p, err := Compile(list)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func allow(t testing.TB, l *Local, id string, p *Policy, at time.Time) Decision {
	t.Helper()
	d, err := l.Allow(id, p, at)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A fixed window admits 2N across its boundary: N at its end and N at the
// start of the next. The sliding window must not.
func TestLocalAdmitsNoBurstOfTwiceTheLimitAcrossAWindowBoundary(t *testing.T) {
	l := NewLocal(-1)
	p := mustCompile(t, "10/1s")
	end := base.Add(999 * time.Millisecond)
	for i := range 10 {
		if d := allow(t, l, "key_a", p, end); !d.Allowed {
			t.Fatalf("request %d at the end of the first second refused", i)
		}
	}
	for _, at := range []time.Duration{1001 * time.Millisecond, 1500 * time.Millisecond, 1998 * time.Millisecond} {
		if d := allow(t, l, "key_a", p, base.Add(at)); d.Allowed {
			t.Fatalf("request at +%v admitted: 11 in one second", at)
		}
	}
	// The ten leave the window a second after they came, give or take a
	// bucket (50ms), and not before.
	if d := allow(t, l, "key_a", p, end.Add(time.Second)); d.Allowed {
		t.Fatal("admitted exactly one window after the ten, while they are still counted")
	}
	if d := allow(t, l, "key_a", p, end.Add(time.Second+50*time.Millisecond)); !d.Allowed {
		t.Fatal("refused a bucket after the ten left the window")
	}
}

// The error bound, both ways, on random traffic: never more than N in any
// span of W; never a refusal unless N were admitted in the W + W/Buckets
// before it.
func TestLocalNeverAdmitsMoreThanNInAnySpanAndRefusesOnlyNearIt(t *testing.T) {
	for _, tt := range []struct {
		limit string
		n     int
		w     time.Duration
		gap   time.Duration // mean time between requests
	}{
		{"10/1s", 10, time.Second, 60 * time.Millisecond},
		{"100/1m", 100, time.Minute, 400 * time.Millisecond},
		{"3/7s", 3, 7 * time.Second, time.Second},
	} {
		t.Run(tt.limit, func(t *testing.T) {
			l := NewLocal(-1)
			p := mustCompile(t, tt.limit)
			rng := rand.New(rand.NewPCG(1, 2))
			var admitted []time.Time
			at := base.Add(time.Duration(rng.Int64N(int64(tt.w))))
			for range 20000 {
				at = at.Add(time.Duration(rng.ExpFloat64() * float64(tt.gap)))
				d := allow(t, l, "key_r", p, at)
				// Admitted in (at-W, at] and in (at-W-W/B, at].
				inW, inWB := 0, 0
				for i := len(admitted) - 1; i >= 0 && at.Sub(admitted[i]) < tt.w+tt.w/Buckets; i-- {
					inWB++
					if at.Sub(admitted[i]) < tt.w {
						inW++
					}
				}
				if d.Allowed {
					if inW+1 > tt.n {
						t.Fatalf("at %v: admitted the %dth request of a %v span", at, inW+1, tt.w)
					}
					admitted = append(admitted, at)
				} else if inWB < tt.n {
					t.Fatalf("at %v: refused with only %d admitted in W+W/%d", at, inWB, Buckets)
				}
			}
			if len(admitted) < 1000 {
				t.Fatalf("only %d admitted: the test proves little", len(admitted))
			}
		})
	}
}

func TestLocalRefusedRequestsDoNotCount(t *testing.T) {
	l := NewLocal(-1)
	p := mustCompile(t, "5/1m")
	for i := range 5 {
		allow(t, l, "key_b", p, base.Add(time.Duration(i)*time.Second))
	}
	// A client hammering while refused.
	for i := range 1000 {
		if d := allow(t, l, "key_b", p, base.Add(10*time.Second+time.Duration(i)*50*time.Millisecond)); d.Allowed {
			t.Fatalf("hammering request %d admitted", i)
		}
	}
	// Once the five have left, five are admitted again: the thousand
	// refused ones never counted.
	later := base.Add(2 * time.Minute)
	for i := range 5 {
		if d := allow(t, l, "key_b", p, later); !d.Allowed {
			t.Fatalf("request %d after the window refused: refused requests counted", i)
		}
	}
	if d := allow(t, l, "key_b", p, later); d.Allowed {
		t.Fatal("sixth request admitted")
	}
}

func TestLocalRetryAfterIsWhenTheNextRequestIsAdmitted(t *testing.T) {
	l := NewLocal(-1)
	p := mustCompile(t, "3/10s", "100/1h")
	for _, at := range []time.Duration{1200 * time.Millisecond, 4 * time.Second, 7 * time.Second} {
		allow(t, l, "key_c", p, base.Add(at))
	}
	now := base.Add(8 * time.Second)
	d := allow(t, l, "key_c", p, now)
	if d.Allowed || d.Limit != 0 || d.Remaining != 0 {
		t.Fatalf("fourth request = %+v; want refused by limit 0", d)
	}
	// The first request's bucket [1.0s, 1.5s) leaves at 11.5s.
	if want := 3500 * time.Millisecond; d.RetryAfter != want {
		t.Fatalf("RetryAfter = %v, want %v", d.RetryAfter, want)
	}
	if d := allow(t, l, "key_c", p, now.Add(3500*time.Millisecond-1)); d.Allowed {
		t.Fatal("admitted before RetryAfter")
	}
	if d := allow(t, l, "key_c", p, now.Add(3500*time.Millisecond)); !d.Allowed {
		t.Fatal("refused at RetryAfter")
	}
}

func TestLocalReportsTheLimitClosestToExhaustion(t *testing.T) {
	l := NewLocal(-1)
	p := mustCompile(t, "10/1s", "1000/1h")
	d := allow(t, l, "key_d", p, base)
	// Its bucket [0, 50ms) leaves the (conservative) window at 1.05s.
	if d.Limit != 0 || d.Remaining != 9 || d.Reset != 1050*time.Millisecond {
		t.Errorf("first request: %+v; want limit 0 (9 of 10 left, 10%% used), reset 1.05s", d)
	}
	for i := range 8 {
		allow(t, l, "key_d", p, base.Add(time.Duration(i+1)*2*time.Second))
	}
	// 1s: 1 used of 10 (90% left); 1h: 9 used... then the hour is at 99.1%.
	d = allow(t, l, "key_d", p, base.Add(20*time.Second))
	if d.Limit != 0 || d.Remaining != 9 {
		t.Errorf("tenth request: %+v; want limit 0 with 9 left", d)
	}
	p2 := mustCompile(t, "10/1s", "12/1h")
	d = allow(t, l, "key_d", p2, base.Add(22*time.Second))
	if d.Limit != 1 || d.Remaining != 1 {
		t.Errorf("after lowering the hour: %+v; want limit 1 with 1 left", d)
	}
}

func TestLocalChangingALimitKeepsWhatWasUsed(t *testing.T) {
	l := NewLocal(-1)
	p := mustCompile(t, "10/1m")
	for i := range 8 {
		allow(t, l, "key_e", p, base.Add(time.Duration(i)*time.Second))
	}
	now := base.Add(10 * time.Second)
	if d := allow(t, l, "key_e", mustCompile(t, "5/1m"), now); d.Allowed {
		t.Fatal("lowered to 5 after 8 used: admitted")
	}
	// Adding a window keeps the minute's count too.
	d := allow(t, l, "key_e", mustCompile(t, "20/1m", "100/1d"), now)
	if !d.Allowed || d.Limit != 0 || d.Remaining != 11 {
		t.Fatalf("raised to 20: %+v; want admitted with 11 left in the minute", d)
	}
}

func TestLocalKeysAreIndependent(t *testing.T) {
	l := NewLocal(-1)
	p := mustCompile(t, "1/1h")
	for _, id := range []string{"key_1", "key_2", "key_3"} {
		if d := allow(t, l, id, p, base); !d.Allowed {
			t.Fatalf("%s refused by another key's use", id)
		}
	}
}

func TestLocalForgetsKeysIdleForLongerThanTheirLongestWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLocal(time.Minute)
		defer l.Close()
		p := mustCompile(t, "10/1s", "100/2m")
		for i := range 1000 {
			allow(t, l, "key_"+string(rune('a'+i%26))+string(rune('a'+i/26)), p, time.Now())
		}
		if n := l.Len(); n != 1000 {
			t.Fatalf("Len = %d, want 1000", n)
		}
		// Still within the 2m window (plus a bucket) after one sweep.
		time.Sleep(time.Minute + time.Second)
		synctest.Wait()
		if n := l.Len(); n != 1000 {
			t.Fatalf("after 1m: Len = %d, want 1000 (their 2m window still counts)", n)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if n := l.Len(); n != 0 {
			t.Fatalf("after 3m: Len = %d, want 0", n)
		}
	})
}

func BenchmarkLocalAllow(b *testing.B) {
	l := NewLocal(-1)
	p := mustCompile(b, "1000000000/1m", "1000000000/1d")
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = "key_" + string(rune('A'+i%50)) + string(rune('A'+i/50))
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if d, _ := l.Allow(ids[i%len(ids)], p, now); !d.Allowed {
				b.Fatal("refused")
			}
		}
	})
}
