package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/storetest"
)

// benchKeys is the number of keys in the store BenchmarkGetByDigest reads:
// a million, or $KEYGATE_BENCH_KEYS (CI's smoke runs use a small store).
var benchKeys = func() int {
	if n, err := strconv.Atoi(os.Getenv("KEYGATE_BENCH_KEYS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}()

// benchSecret returns the i-th key of the benchmark store. It needs no
// valid checksum: the store only sees its digest.
func benchSecret(i int) string { return fmt.Sprintf("dk_bench%030d", i) }

// benchStore opens the store of benchKeys keys, building it on first use.
// Building takes a while, so the file is kept in the system's temporary
// directory, named after the schema version and the key count, and reused
// by later runs; it is written under another name and renamed when
// complete, so that an interrupted build is never reused.
func benchStore(b *testing.B) *Store {
	b.Helper()
	path := filepath.Join(os.TempDir(), fmt.Sprintf("keygate-bench-schema%d-%dkeys.db", schemaVersion, benchKeys))
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		start := time.Now()
		if err := buildBenchStore(b.Context(), path); err != nil {
			b.Fatalf("building %s: %v", path, err)
		}
		b.Logf("built %s with %d keys in %v", path, benchKeys, time.Since(start).Round(time.Millisecond))
	}
	s, err := Open(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	var n int
	if err := s.db.QueryRowContext(b.Context(), "SELECT count(*) FROM keys").Scan(&n); err != nil || n != benchKeys {
		b.Fatalf("%s holds %d keys (%v), want %d: delete it to rebuild it", path, n, err, benchKeys)
	}
	return s
}

func buildBenchStore(ctx context.Context, path string) error {
	tmp := path + ".building-" + strconv.Itoa(os.Getpid())
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(tmp + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	s, err := Open(ctx, tmp)
	if err != nil {
		return err
	}
	defer s.Close()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Random digests land all over the unique index: give it room.
	if _, err := tx.ExecContext(ctx, "PRAGMA cache_size = -262144"); err != nil {
		return err
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO keys (id, name, scope, expiry, hint, digest, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	used, err := tx.PrepareContext(ctx, `INSERT INTO last_used (key_id, at) VALUES (?, ?)`)
	if err != nil {
		return err
	}
	defer used.Close()
	created := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range benchKeys {
		secret := benchSecret(i)
		d := apikey.DigestOf(secret)
		at := created.Add(time.Duration(i) * time.Second)
		var expires any
		if i%2 == 0 {
			expires = micros(apikey.ExpiryYear.ExpiresAt(at))
		}
		id := fmt.Sprintf("key_%022d", i)
		if _, err := stmt.ExecContext(ctx, id, "bench "+strconv.Itoa(i), apikey.ScopeFull.String(),
			string(apikey.ExpiryYear), apikey.Hint(secret), d[:], micros(at), expires); err != nil {
			return err
		}
		if _, err := used.ExecContext(ctx, id, micros(at.Add(time.Minute))); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// Closing the last connection checkpoints the WAL into the file and
	// removes it, so the renamed file is complete on its own.
	if err := s.Close(); err != nil {
		return err
	}
	if _, err := os.Stat(tmp + "-wal"); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s-wal is left after closing (%v)", tmp, err)
	}
	return os.Rename(tmp, path)
}

// BenchmarkGetByDigest looks up keys by digest in a store of a million
// keys: what the verifier does on a cache miss.
func BenchmarkGetByDigest(b *testing.B) {
	s := benchStore(b)
	rng := rand.New(rand.NewPCG(1, 2))
	digests := make([]apikey.Digest, 4096)
	for i := range digests {
		digests[i] = apikey.DigestOf(benchSecret(rng.IntN(benchKeys)))
	}
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := s.GetByDigest(b.Context(), digests[i%len(digests)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			d := digests[i%len(digests)]
			d[0] ^= 0xff
			if _, err := s.GetByDigest(b.Context(), d); !errors.Is(err, keystore.ErrNotFound) {
				b.Fatalf("GetByDigest(unknown) = %v, want ErrNotFound", err)
			}
			i++
		}
	})
	b.Run("hit-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(digests))
			for pb.Next() {
				if _, err := s.GetByDigest(context.Background(), digests[i%len(digests)]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

// BenchmarkTouchLastUsed writes the last use of 1,000 keys in one call, as
// the last-used recorder flushes them; every call moves each key forward,
// so every row is updated.
func BenchmarkTouchLastUsed(b *testing.B) {
	const batch = 1000
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "keys.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	uses := make(map[string]time.Time, batch)
	for range batch {
		_, k := newKey(b, "touched")
		if err := s.Create(b.Context(), k, keystore.Audit{}); err != nil {
			b.Fatal(err)
		}
		uses[k.ID] = time.Time{}
	}
	b.ReportAllocs()
	at := testNow
	for b.Loop() {
		at = at.Add(time.Microsecond)
		for id := range uses {
			uses[id] = at
		}
		if err := s.TouchLastUsed(b.Context(), uses); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/key")
}

// BenchmarkList reads one page of keys, as the console (50) and the admin
// API (100, 1000) do, at the start of the listing and deep into it, with
// and without filters. With KEYGATE_BENCH_KEYS=100000 it also leaves the
// store file that docs/BENCHMARKS.md's "Pagination at 100,000 keys" serves
// through the real binary.
func BenchmarkList(b *testing.B) {
	s := benchStore(b)
	now := time.Now()
	deep, err := s.List(b.Context(), keystore.Filter{Now: now, Limit: 1, After: keystore.Position{
		CreatedAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(benchKeys/2) * time.Second),
		ID:        fmt.Sprintf("key_%022d", benchKeys/2),
	}})
	if err != nil || len(deep) != 1 {
		b.Fatalf("finding the middle key: %d keys, %v", len(deep), err)
	}
	middle := keystore.PositionOf(deep[0])
	for _, bc := range []struct {
		name string
		f    keystore.Filter
	}{
		{"first page of 50", keystore.Filter{Limit: 51}},
		{"middle page of 50", keystore.Filter{Limit: 51, After: middle}},
		{"middle page of 50 going back", keystore.Filter{Limit: 51, Before: middle}},
		{"first page of 1000", keystore.Filter{Limit: 1001}},
		{"first page of 50 active full", keystore.Filter{Limit: 51, Status: apikey.StatusActive, Scope: apikey.ScopeFull}},
		{"name search matching 1 in 10", keystore.Filter{Limit: 51, Query: "BENCH 9"}},
		{"ID search", keystore.Filter{Limit: 51, Query: middle.ID}},
		// The worst case: no key matches, so the whole index is read.
		{"search matching nothing", keystore.Filter{Limit: 51, Query: "no such name"}},
		{"revoked, of which there are none", keystore.Filter{Limit: 51, Status: apikey.StatusRevoked}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := bc.f
			f.Now = now
			for b.Loop() {
				if _, err := s.List(b.Context(), f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUsage is storetest.BenchmarkUsage on SQLite (docs/BENCHMARKS.md,
// "Usage queries").
func BenchmarkUsage(b *testing.B) {
	storetest.BenchmarkUsage(b, func(b *testing.B) keystore.Store {
		s, err := Open(b.Context(), filepath.Join(b.TempDir(), "keys.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	})
}

// BenchmarkRollup is storetest.BenchmarkRollup on SQLite with 10,000
// keys (docs/LOADBENCH.md, issue 14).
func BenchmarkRollup(b *testing.B) {
	storetest.BenchmarkRollup(b, func(b *testing.B) keystore.Store {
		s, err := Open(b.Context(), filepath.Join(b.TempDir(), "keys.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}, 10_000)
}

// BenchmarkRecordUsageChunk writes what the last-used recorder writes for
// one chunk of busy keys once a minute (lastused.ChunkKeys keys, random
// among the benchmark store's, each with its last use and one minute
// row), every iteration the next minute: the cost per key of the
// once-a-minute writes of docs/LOADBENCH.md's cached100k.
func BenchmarkRecordUsageChunk(b *testing.B) {
	const chunk = 10_000
	s := benchStore(b)
	rows, err := s.db.QueryContext(b.Context(), "SELECT id FROM keys ORDER BY random() LIMIT ?", min(chunk, benchKeys))
	if err != nil {
		b.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	uses := make(map[string]time.Time, len(ids))
	counts := make([]keystore.UsageCount, len(ids))
	minute := time.Now().UTC().Truncate(time.Minute)
	record := func() {
		minute = minute.Add(time.Minute)
		for i, id := range ids {
			uses[id] = minute.Add(time.Second)
			counts[i] = keystore.UsageCount{KeyID: id, Minute: minute, Result: "ok", N: 6}
		}
		if err := s.RecordUsage(b.Context(), uses, counts); err != nil {
			b.Fatal(err)
		}
	}
	// An hour of history first, as a gateway that has been busy for one
	// has: where each minute's rows land among the earlier ones is what
	// the writes cost.
	if _, err := s.db.ExecContext(b.Context(), "DELETE FROM usage"); err != nil {
		b.Fatal(err)
	}
	for range 60 {
		record()
	}
	b.ReportAllocs()
	for b.Loop() {
		record()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ids)), "ns/key")
}
