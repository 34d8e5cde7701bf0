package verifier

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/apikey/apikeytest"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/sqlite"
)

// openSQLite opens a fresh SQLite store in the test's temporary directory.
func openSQLite(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatalf("opening the SQLite store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The benchmark dataset: datasetSize keys whose secrets are derived from
// their index, so that a benchmark can send any of them without the file
// holding secrets. It is built once per machine under os.TempDir() (that
// takes minutes) and reused while its version matches. KEYGATE_BENCH_KEYS
// sets another size: CI's smoke runs use a small one.
var datasetSize = benchKeysFromEnv(1_000_000)

// datasetVersion names the dataset file: bump it when the derivation below
// or the store's schema changes, so that a checkout of another version
// never migrates (or rebuilds) a file another checkout uses. 2: schema
// version 2 (replaced_by). 3: schema version 3 (owner, metadata).
const datasetVersion = 3

// benchKeysFromEnv returns $KEYGATE_BENCH_KEYS if it is a positive number,
// otherwise def.
func benchKeysFromEnv(def int) int {
	if n, err := strconv.Atoi(os.Getenv("KEYGATE_BENCH_KEYS")); err == nil && n > 0 {
		return n
	}
	return def
}

var datasetCreated = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// datasetSecret returns the secret of key i of the dataset.
func datasetSecret(i int) string { return apikeytest.Secret("secret", i) }

// datasetKey returns the record of key i of the dataset.
func datasetKey(i int) apikey.Key {
	secret := datasetSecret(i)
	id := apikeytest.ID("id", i)
	scope := apikey.Scopes[i%len(apikey.Scopes)]
	return apikey.Key{
		ID:        id,
		Name:      fmt.Sprintf("Benchmark key %d", i),
		Scope:     scope,
		Expiry:    apikey.ExpiryNever,
		Hint:      apikey.Hint(secret),
		Digest:    apikey.DigestOf(secret),
		CreatedAt: datasetCreated,
		CreatedBy: apikey.Actor{Type: apikey.ActorSystem},
	}
}

// openDataset opens the benchmark dataset, building it first if it is
// missing or incomplete. It is built in a temporary file renamed into
// place once complete, so an interrupted build is never mistaken for a
// dataset.
func openDataset(b *testing.B) *sqlite.Store {
	b.Helper()
	ctx := context.Background()
	dir := filepath.Join(os.TempDir(), "keygate-bench")
	path := filepath.Join(dir, fmt.Sprintf("verifier-%d-v%d.db", datasetSize, datasetVersion))
	if _, err := os.Stat(path); err == nil {
		s, err := sqlite.Open(ctx, path)
		if err == nil && datasetComplete(ctx, s) {
			b.Cleanup(func() { s.Close() })
			return s
		}
		if s != nil {
			s.Close()
		}
		b.Logf("dataset %s is incomplete: rebuilding it", path)
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}

	building := path + ".building"
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(building + suffix)
	}
	b.Logf("building %d keys in %s (once per machine)", datasetSize, path)
	start := time.Now()
	s, err := sqlite.Open(ctx, building)
	if err != nil {
		b.Fatalf("opening %s: %v", building, err)
	}
	for i := range datasetSize {
		if err := s.Create(ctx, datasetKey(i), keystore.Audit{}); err != nil {
			s.Close()
			b.Fatalf("creating dataset key %d: %v", i, err)
		}
	}
	if err := s.Close(); err != nil { // checkpoints the WAL into the file
		b.Fatalf("closing %s: %v", building, err)
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(building + suffix); !errors.Is(err, os.ErrNotExist) {
			b.Fatalf("%s%s still exists after closing the store: the WAL was not checkpointed", building, suffix)
		}
	}
	if err := os.Rename(building, path); err != nil {
		b.Fatalf("renaming the dataset: %v", err)
	}
	b.Logf("built the dataset in %v", time.Since(start).Round(time.Second))
	s, err = sqlite.Open(ctx, path)
	if err != nil {
		b.Fatalf("opening %s: %v", path, err)
	}
	if !datasetComplete(ctx, s) {
		s.Close()
		b.Fatalf("dataset %s is incomplete right after building it", path)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// datasetComplete checks keys spread over the whole dataset, the last
// one included, against their derivation.
func datasetComplete(ctx context.Context, s *sqlite.Store) bool {
	for _, i := range []int{0, 1, datasetSize / 3, datasetSize / 2, datasetSize - 2, datasetSize - 1} {
		want := datasetKey(i)
		got, err := s.GetByDigest(ctx, want.Digest)
		if err != nil || got.ID != want.ID || got.Name != want.Name || got.Scope != want.Scope {
			return false
		}
	}
	return true
}

func TestDatasetSecretsAreValidKeysWithDistinctDigests(t *testing.T) {
	seen := map[apikey.Digest]int{}
	for i := range 1000 {
		secret := datasetSecret(i)
		if err := testFormat.Check(secret); err != nil {
			t.Fatalf("datasetSecret(%d) = %q: %v", i, secret, err)
		}
		k := datasetKey(i)
		if !apikey.ValidID(k.ID) {
			t.Fatalf("datasetKey(%d).ID = %q is not a valid ID", i, k.ID)
		}
		if j, dup := seen[k.Digest]; dup {
			t.Fatalf("keys %d and %d share a digest", j, i)
		}
		seen[k.Digest] = i
	}
}
