package postgres

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/postgres/pgtest"
	"github.com/docana/keygate/internal/keystore/storetest"
)

// eventually is how long a test waits for something that must happen
// (a notification, a reconnection). It is a bound against hanging, not a
// speed requirement: the benchmark measures speed.
const eventually = 30 * time.Second

func TestConformance(t *testing.T) {
	storetest.RunWith(t, func(t *testing.T) keystore.Store {
		return openStore(t, pgtest.NewDatabase(t), options{})
	}, storetest.Options{AgeChanges: ageChanges, Pair: func(t *testing.T) (keystore.Store, keystore.Store) {
		dsn := pgtest.NewDatabase(t)
		return openStore(t, dsn, options{}), openStore(t, dsn, options{})
	}})
}

// ageChanges makes every change of s two hours old.
func ageChanges(t *testing.T, s keystore.Store) {
	t.Helper()
	if _, err := s.(*Store).pool.Exec(t.Context(), `UPDATE keygate_changes SET changed_at = changed_at - interval '2 hours'`); err != nil {
		t.Fatalf("ageing changes: %v", err)
	}
}

// openStore opens the store of dsn, closed when the test ends.
func openStore(t testing.TB, dsn string, opts options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), eventually)
	defer cancel()
	s, err := open(ctx, dsn, zaptest.NewLogger(t), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newKey returns a fresh key created at now.
func newKey(t testing.TB, name string, now time.Time) apikey.Key {
	t.Helper()
	f, err := apikey.NewFormat(apikey.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	_, k, err := f.New(name, apikey.ScopeFull, apikey.ExpiryNever, now)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// waitNotice waits for a notice on s, failing the test after eventually.
func waitNotice(t testing.TB, s *Store) {
	t.Helper()
	select {
	case _, ok := <-s.Notices():
		if !ok {
			t.Fatal("Notices closed while the store is open")
		}
	case <-time.After(eventually):
		t.Fatalf("no notice within %v", eventually)
	}
}

// drainNotices empties the notice buffer of s.
func drainNotices(s *Store) {
	for {
		select {
		case <-s.Notices():
		default:
			return
		}
	}
}

// currentSeq returns the change sequence of s.
func currentSeq(t testing.TB, s *Store) int64 {
	t.Helper()
	_, seq, err := s.Changes(t.Context(), 0, 1)
	if err != nil {
		t.Fatalf("Changes: %v", err)
	}
	return seq
}

func TestOpenConcurrentlyOnAFreshDatabaseCreatesOneSchema(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	stores := make([]*Store, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), eventually)
			defer cancel()
			stores[i], errs[i] = Open(ctx, dsn, nil)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
			continue
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	if t.Failed() {
		return
	}

	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var versions []int
	rows, _ := conn.Query(t.Context(), `SELECT version FROM keygate_schema`)
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{len(migrations)}; !slices.Equal(versions, want) {
		t.Errorf("schema versions: got %v, want %v", versions, want)
	}
	var counters int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM keygate_change_counter`).Scan(&counters); err != nil {
		t.Fatal(err)
	}
	if counters != 1 {
		t.Errorf("change counter rows: got %d, want 1", counters)
	}

	// Every instance works on the one schema.
	k := newKey(t, "shared", time.Now())
	if err := stores[0].Create(t.Context(), k, keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	got, err := stores[n-1].Get(t.Context(), k.ID)
	if err != nil || got.ID != k.ID {
		t.Errorf("Get on another instance: got %v, %v; want key %s", got.ID, err, k.ID)
	}
}

func TestOpenRejectsASchemaNewerThanItKnows(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := openStore(t, dsn, options{})
	if _, err := s.pool.Exec(t.Context(), `UPDATE keygate_schema SET version = 999`); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(t.Context(), dsn, nil)
	if err == nil {
		s2.Close()
		t.Fatal("Open: got no error, want one about the newer schema")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open: got %q, want it to say the schema is newer", err)
	}
}

func TestOpenFailsWithoutLeakingThePassword(t *testing.T) {
	const password = "s3cret-pw"
	ctx, cancel := context.WithTimeout(context.Background(), eventually)
	defer cancel()
	// Port 1 refuses connections.
	_, err := Open(ctx, "postgres://keygate:"+password+"@127.0.0.1:1/keygate?sslmode=disable&connect_timeout=5", nil)
	if err == nil {
		t.Fatal("Open: got no error, want a connection error")
	}
	if strings.Contains(err.Error(), password) {
		t.Errorf("Open error holds the password: %q", err)
	}
}

func TestNoticeReachesAnotherInstanceAfterARevokeThere(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	a := openStore(t, dsn, options{})
	b := openStore(t, dsn, options{})
	k := newKey(t, "revoked elsewhere", time.Now())
	if err := b.Create(t.Context(), k, keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	since := currentSeq(t, a)
	// The first notice of a store comes once it listens: after it, every
	// change is announced.
	waitNotice(t, a)
	drainNotices(a)

	if _, err := b.Revoke(t.Context(), k.ID, time.Now(), keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	waitNotice(t, a)

	changes, _, err := a.Changes(t.Context(), since, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].KeyID != k.ID || changes[0].Digest != k.Digest {
		t.Errorf("Changes after the notice: got %+v, want the revoke of %s", changes, k.ID)
	}
}

// gatedDial returns a listener dial function that reports each attempt on
// attempts and, once closed is called, fails until open is called.
type gatedDial struct {
	dsn      string
	attempts chan struct{}
	mu       sync.Mutex
	gate     chan struct{} // nil: open
}

func newGatedDial(dsn string) *gatedDial {
	return &gatedDial{dsn: dsn, attempts: make(chan struct{}, 100)}
}

func (g *gatedDial) close() { g.mu.Lock(); g.gate = make(chan struct{}); g.mu.Unlock() }
func (g *gatedDial) open()  { g.mu.Lock(); close(g.gate); g.gate = nil; g.mu.Unlock() }

func (g *gatedDial) dial(ctx context.Context) (*pgx.Conn, error) {
	select {
	case g.attempts <- struct{}{}:
	default:
	}
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		return nil, errors.New("test: the listener may not connect now")
	}
	return pgx.Connect(ctx, g.dsn)
}

// terminateSessions ends every session on the database of dsn but the
// caller's, as an administrator or a server restart would.
func terminateSessions(t testing.TB, dsn string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("terminated no session; want at least the listener's")
	}
}

func TestListenerReconnectsAndTheReaderCatchesUpOnMissedChanges(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	g := newGatedDial(dsn)
	a := openStore(t, dsn, options{dial: g.dial})
	b := openStore(t, dsn, options{})
	before := newKey(t, "before", time.Now())
	if err := b.Create(t.Context(), before, keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	waitNotice(t, a)
	drainNotices(a)
	since := currentSeq(t, a)
	for len(g.attempts) > 0 {
		<-g.attempts
	}

	g.close()
	terminateSessions(t, dsn)
	// A dial attempt means a's listener has given up its old connection:
	// a NOTIFY now cannot reach it.
	select {
	case <-g.attempts:
	case <-time.After(eventually):
		t.Fatalf("the listener did not try to reconnect within %v", eventually)
	}
	missed := newKey(t, "missed", time.Now())
	// b's pooled connections were terminated too: Create must recover.
	if err := b.Create(t.Context(), missed, keystore.Audit{}); err != nil {
		t.Fatalf("Create after the sessions were terminated: %v", err)
	}
	drainNotices(a)
	g.open()
	waitNotice(t, a)

	changes, _, err := a.Changes(t.Context(), since, 100)
	if err != nil {
		t.Fatalf("Changes after reconnecting: %v", err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.KeyID)
	}
	if want := []string{missed.ID}; !slices.Equal(got, want) {
		t.Errorf("Changes after reconnecting: got %v, want %v", got, want)
	}
	if _, err := a.Get(t.Context(), missed.ID); err != nil {
		t.Errorf("Get on the instance whose sessions were terminated: %v", err)
	}

	// And it listens again.
	drainNotices(a)
	if _, err := b.Revoke(t.Context(), before.ID, time.Now(), keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	waitNotice(t, a)
}

func TestStoreRecoversAfterItsSessionsAreTerminated(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	s := openStore(t, dsn, options{})
	k := newKey(t, "survivor", time.Now())
	if err := s.Create(t.Context(), k, keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	// Busy pooled connections (used within the last second) are the ones
	// pgxpool does not ping before use.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { s.Get(t.Context(), k.ID) })
	}
	wg.Wait()
	terminateSessions(t, dsn)

	ops := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, k.ID); return err }},
		{"GetByDigest", func(ctx context.Context) error { _, err := s.GetByDigest(ctx, k.Digest); return err }},
		{"List", func(ctx context.Context) error { _, err := s.List(ctx, keystore.Filter{}); return err }},
		{"Changes", func(ctx context.Context) error { _, _, err := s.Changes(ctx, 0, 10); return err }},
		{"TouchLastUsed", func(ctx context.Context) error {
			return s.TouchLastUsed(ctx, map[string]time.Time{k.ID: time.Now()})
		}},
		{"Create", func(ctx context.Context) error {
			return s.Create(ctx, newKey(t, "after", time.Now()), keystore.Audit{})
		}},
	}
	for _, op := range ops {
		if err := op.do(t.Context()); err != nil {
			t.Errorf("%s after the sessions were terminated: %v", op.name, err)
		}
	}
}

func TestReadersNeverMissAChangeCommittedByConcurrentWriters(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	reader := openStore(t, dsn, options{})
	const writers, perWriter = 6, 25
	ctx, cancel := context.WithTimeout(t.Context(), 2*eventually)
	defer cancel()

	var wg sync.WaitGroup
	for w := range writers {
		s := openStore(t, dsn, options{})
		wg.Go(func() {
			for i := range perWriter {
				if err := s.Create(ctx, newKey(t, fmt.Sprintf("w%d-%d", w, i), time.Now()), keystore.Audit{}); err != nil {
					t.Errorf("Create: %v", err)
					return
				}
			}
		})
	}
	writing := make(chan struct{})
	go func() { wg.Wait(); close(writing) }()

	// Poll as a cache would: advance to the last change read, or to the
	// current sequence when the batch was not full. A sequence committed
	// out of order would be skipped for good.
	var (
		since int64
		seen  []int64
	)
	for done := false; ; {
		select {
		case <-writing:
			done = true
		default:
		}
		changes, current, err := reader.Changes(ctx, since, 7)
		if err != nil {
			t.Fatalf("Changes(%d): %v", since, err)
		}
		for _, c := range changes {
			seen = append(seen, c.Seq)
		}
		if len(changes) == 7 {
			since = changes[len(changes)-1].Seq
			continue
		}
		since = current
		if done {
			break
		}
	}
	if t.Failed() {
		return
	}
	want := make([]int64, writers*perWriter)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if !slices.Equal(seen, want) {
		t.Errorf("sequences read: got %v, want 1..%d in order, each once", seen, len(want))
	}
}

func TestTouchLastUsedBatchesFromSeveralInstancesDoNotDeadlock(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	const instances, keys, rounds = 4, 300, 10
	stores := make([]*Store, instances)
	for i := range stores {
		stores[i] = openStore(t, dsn, options{})
	}
	ids := make([]string, keys)
	for i := range ids {
		k := newKey(t, fmt.Sprint(i), time.Now())
		if err := stores[0].Create(t.Context(), k, keystore.Audit{}); err != nil {
			t.Fatal(err)
		}
		ids[i] = k.ID
	}
	base := time.Now().UTC().Truncate(time.Microsecond)
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			for r := range rounds {
				uses := make(map[string]time.Time, keys)
				for j, id := range ids {
					uses[id] = base.Add(time.Duration(r*instances+i+j) * time.Second)
				}
				if err := s.TouchLastUsed(t.Context(), uses); err != nil {
					t.Errorf("TouchLastUsed on instance %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for j, id := range ids[:3] {
		k, err := stores[0].Get(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		want := base.Add(time.Duration((rounds-1)*instances+instances-1+j) * time.Second)
		if !k.LastUsedAt.Equal(want) {
			t.Errorf("LastUsedAt of key %d: got %v, want the newest %v", j, k.LastUsedAt, want)
		}
	}
}

func TestChangesPrunedAfterAnHourAreTooOld(t *testing.T) {
	s := openStore(t, pgtest.NewDatabase(t), options{})
	if _, _, err := s.Changes(t.Context(), 0, 10); err != nil {
		t.Fatalf("Changes on a fresh store: %v", err)
	}
	for i := range 3 {
		if err := s.Create(t.Context(), newKey(t, fmt.Sprint(i), time.Now()), keystore.Audit{}); err != nil {
			t.Fatal(err)
		}
	}
	ageChanges(t, s)
	// Aged but not pruned until the next write.
	if changes, _, err := s.Changes(t.Context(), 0, 10); err != nil || len(changes) != 3 {
		t.Fatalf("Changes before the next write: got %d changes, %v; want 3", len(changes), err)
	}
	if err := s.Create(t.Context(), newKey(t, "pruner", time.Now()), keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		since   int64
		wantErr error
		wantLen int
	}{
		{since: 0, wantErr: keystore.ErrTooOld},
		{since: 2, wantErr: keystore.ErrTooOld},
		{since: 3, wantLen: 1},
		{since: 4, wantLen: 0},
		{since: 5, wantLen: 0},
	}
	for _, tt := range tests {
		changes, current, err := s.Changes(t.Context(), tt.since, 10)
		if !errors.Is(err, tt.wantErr) || len(changes) != tt.wantLen || current != 4 {
			t.Errorf("Changes(%d): got %d changes, current %d, error %v; want %d, 4, %v",
				tt.since, len(changes), current, err, tt.wantLen, tt.wantErr)
		}
	}

	// Pruning goes on with every write.
	ageChanges(t, s)
	if err := s.Create(t.Context(), newKey(t, "pruner 2", time.Now()), keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Changes(t.Context(), 3, 10); !errors.Is(err, keystore.ErrTooOld) {
		t.Errorf("Changes(3) after the next pruning: got %v, want ErrTooOld", err)
	}
	if changes, _, err := s.Changes(t.Context(), 4, 10); err != nil || len(changes) != 1 {
		t.Errorf("Changes(4) after the next pruning: got %d changes, %v; want 1", len(changes), err)
	}
}

// listenerGoroutines counts the goroutines running this package's code.
func listenerGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "keystore/postgres.(*listener)") {
			n++
		}
	}
	return n
}

// waitNoListeners fails t unless every listener goroutine ends within
// eventually.
func waitNoListeners(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(eventually)
	for listenerGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d listener goroutines still run after Close", listenerGoroutines())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCloseStopsTheListener(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	cases := []struct {
		name  string
		setup func(t *testing.T, g *gatedDial)
	}{
		{"listening", func(t *testing.T, g *gatedDial) {}},
		{"reconnecting", func(t *testing.T, g *gatedDial) {
			g.close()
			terminateSessions(t, dsn)
			select {
			case <-g.attempts:
			case <-time.After(eventually):
				t.Fatal("the listener did not try to reconnect")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGatedDial(dsn)
			s, err := open(t.Context(), dsn, zaptest.NewLogger(t), options{dial: g.dial})
			if err != nil {
				t.Fatal(err)
			}
			<-g.attempts // the first connection
			tc.setup(t, g)
			// The goroutine is started by open but may not have been
			// scheduled yet: wait for it, then check there is exactly one.
			for deadline := time.Now().Add(eventually); listenerGoroutines() == 0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if n := listenerGoroutines(); n != 1 {
				t.Errorf("listener goroutines before Close: got %d, want 1", n)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			waitNoListeners(t)
			// At most the one buffered notice, then closed.
			n := 0
			for range s.Notices() {
				if n++; n > 1 {
					t.Fatal("Notices delivers more than one notice after Close")
				}
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: got %v, want nil", err)
			}
			if _, err := s.Get(t.Context(), "key_x"); !errors.Is(err, keystore.ErrClosed) {
				t.Errorf("Get after Close: got %v, want ErrClosed", err)
			}
		})
	}
}

// BenchmarkNotifyLatency measures the time from a Create on one instance
// to the notice on another, and reports its median, 99th percentile and
// maximum, and the median of the Create alone. Run it with a fixed count,
// such as -benchtime=200x.
func BenchmarkNotifyLatency(b *testing.B) {
	dsn := pgtest.NewDatabase(b)
	a := openStore(b, dsn, options{})
	w := openStore(b, dsn, options{})
	waitNotice(b, a)
	ctx := context.Background()
	keys := make([]apikey.Key, b.N)
	for i := range keys {
		keys[i] = newKey(b, fmt.Sprint(i), time.Now())
	}
	latencies := make([]time.Duration, 0, b.N)
	creates := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		drainNotices(a)
		start := time.Now()
		if err := w.Create(ctx, keys[i], keystore.Audit{}); err != nil {
			b.Fatal(err)
		}
		creates = append(creates, time.Since(start))
		waitNotice(b, a)
		latencies = append(latencies, time.Since(start))
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) float64 {
		return float64(d[int(p*float64(len(d)-1))].Microseconds())
	}
	slices.Sort(latencies)
	slices.Sort(creates)
	b.ReportMetric(pct(latencies, 0.5), "p50-µs")
	b.ReportMetric(pct(latencies, 0.99), "p99-µs")
	b.ReportMetric(pct(latencies, 1), "max-µs")
	// The part of it spent committing the Create.
	b.ReportMetric(pct(creates, 0.5), "create-p50-µs")
}

func TestSessionsAreNamedUnlessTheDSNNamesThem(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	named := dsn + "&application_name=keygate-b"
	if !strings.Contains(dsn, "?") {
		named = dsn + "?application_name=keygate-b"
	}
	tests := []struct {
		name, dsn, want string
	}{
		{"no name in the DSN", dsn, DefaultApplicationName},
		{"a name in the DSN", named, "keygate-b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t, tt.dsn, options{})
			var got string
			if err := s.pool.QueryRow(t.Context(), "SELECT current_setting('application_name')").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("application_name = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRegistryConformance(t *testing.T) {
	storetest.RunRegistry(t, func(t *testing.T) (keystore.Store, keystore.Registry) {
		s := openStore(t, pgtest.NewDatabase(t), options{})
		return s, s
	})
}

// BenchmarkUsage is storetest.BenchmarkUsage on PostgreSQL
// (docs/BENCHMARKS.md, "Usage queries").
func BenchmarkUsage(b *testing.B) {
	storetest.BenchmarkUsage(b, func(b *testing.B) keystore.Store {
		return openStore(b, pgtest.NewDatabase(b), options{})
	})
}

// BenchmarkRollup is storetest.BenchmarkRollup on PostgreSQL with 10,000
// keys.
func BenchmarkRollup(b *testing.B) {
	storetest.BenchmarkRollup(b, func(b *testing.B) keystore.Store {
		return openStore(b, pgtest.NewDatabase(b), options{})
	}, 10_000)
}
