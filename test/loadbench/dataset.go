package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	_ "modernc.org/sqlite" // the driver that internal/keystore/sqlite uses

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/apikey/apikeytest"
	"github.com/docana/keygate/internal/keystore/postgres"
	"github.com/docana/keygate/internal/keystore/sqlite"
)

// The benchmark's keys are derived from their index, so that the key files
// can be written at any time without the store holding secrets, and the
// store file can be cached and reused across runs.
const (
	datasetKeys    = 1_000_000
	datasetVersion = 7 // bump when the derivation below or the store schema changes (2: replaced_by; 3: owner, metadata; 4: usage, audit; 5: usage rollup state; 6: last_used table; 7: usage in time order)
)

var datasetCreated = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// secretOf returns the secret of dataset key i. The tag keeps these keys
// apart from the verifier benchmark's dataset.
func secretOf(i int) string { return apikeytest.Secret("loadbench secret", i) }

// keyOf returns the record of dataset key i: scope full, never expiring.
func keyOf(i int) apikey.Key {
	secret := secretOf(i)
	id := apikeytest.ID("loadbench id", i)
	return apikey.Key{
		ID:        id,
		Name:      fmt.Sprintf("Load benchmark key %d", i),
		Scope:     apikey.ScopeFull,
		Expiry:    apikey.ExpiryNever,
		Hint:      apikey.Hint(secret),
		Digest:    apikey.DigestOf(secret),
		CreatedAt: datasetCreated,
	}
}

// sqliteDataset returns the path of the SQLite store holding the dataset's
// datasetKeys keys, building it under cacheDir if it is not there. It is
// written under another name and renamed when complete, so an interrupted
// build is never used.
func sqliteDataset(ctx context.Context, cacheDir string) (string, error) {
	path := filepath.Join(cacheDir, fmt.Sprintf("sqlite-%dkeys-v%d.db", datasetKeys, datasetVersion))
	if _, err := os.Stat(path); err == nil {
		if err := checkSQLiteDataset(ctx, path); err == nil {
			return path, nil
		} else {
			logf("dataset %s is unusable (%v): rebuilding it", path, err)
		}
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return "", err
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
	}
	building := fmt.Sprintf("%s.building-%d", path, os.Getpid())
	logf("building the SQLite dataset of %d keys in %s (once per machine)", datasetKeys, path)
	start := time.Now()
	if err := buildSQLiteDataset(ctx, building); err != nil {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(building + suffix)
		}
		return "", fmt.Errorf("building %s: %w", path, err)
	}
	if err := os.Rename(building, path); err != nil {
		return "", err
	}
	logf("built the dataset in %v", time.Since(start).Round(time.Second))
	if err := checkSQLiteDataset(ctx, path); err != nil {
		return "", fmt.Errorf("dataset %s right after building it: %w", path, err)
	}
	return path, nil
}

// buildSQLiteDataset writes the dataset to a new store file at path: the
// store's own Open creates the schema, then every key is inserted in one
// transaction (Store.Create takes a transaction per key, which would take
// many minutes for a million keys).
func buildSQLiteDataset(ctx context.Context, path string) error {
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	if err := s.Close(); err != nil {
		return err
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: "_pragma=journal_mode(WAL)&_pragma=synchronous(OFF)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "PRAGMA cache_size = -262144"); err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO keys (id, name, scope, expiry, hint, digest, created_at, expires_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)`)
	if err != nil {
		return fmt.Errorf("the store's schema changed? %w", err)
	}
	defer stmt.Close()
	for i := range datasetKeys {
		if i%100_000 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		k := keyOf(i)
		if _, err := stmt.ExecContext(ctx, k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], k.CreatedAt.UnixMicro()); err != nil {
			return fmt.Errorf("inserting key %d: %w", i, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// Closing the last connection checkpoints the WAL into the file.
	return db.Close()
}

// checkSQLiteDataset opens the store at path with internal/keystore/sqlite
// and checks keys spread over the dataset, the last one included.
func checkSQLiteDataset(ctx context.Context, path string) error {
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	defer s.Close()
	for _, i := range []int{0, 1, 9_999, 99_999, datasetKeys / 2, datasetKeys - 1} {
		want := keyOf(i)
		got, err := s.GetByDigest(ctx, want.Digest)
		if err != nil {
			return fmt.Errorf("key %d: %w", i, err)
		}
		if got.ID != want.ID || got.Name != want.Name || got.Scope != want.Scope {
			return fmt.Errorf("key %d is %s %q, want %s %q", i, got.ID, got.Name, want.ID, want.Name)
		}
	}
	return nil
}

// copyDataset copies the SQLite store at src (-compare-dataset), and its
// write-ahead log if it has one, to dst, and checks that the copy holds the
// dataset's keys. The check reads the keys table with plain SQL, not
// through internal/keystore/sqlite, whose Open would migrate a file of an
// older schema and refuses one of a newer schema: the copy is left for the
// binary it is for. src must not be in use by a running process.
func copyDataset(ctx context.Context, src, dst string) error {
	removeStore(dst)
	for _, suffix := range []string{"", "-wal"} {
		if err := copyFile(src+suffix, dst+suffix); err != nil {
			if suffix != "" && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return err
		}
	}
	return checkDatasetKeys(ctx, dst)
}

// checkDatasetKeys checks, with plain SQL, that the store at path holds
// dataset keys spread over the dataset, under the names keyOf gives them:
// that it was built with the same derivation of keys (secretOf) as this
// checkout's.
func checkDatasetKeys(ctx context.Context, path string) error {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path)}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return err
	}
	defer db.Close()
	for _, i := range []int{0, 1, 9_999, 99_999, datasetKeys / 2, datasetKeys - 1} {
		want := keyOf(i)
		var id, name string
		err := db.QueryRowContext(ctx, "SELECT id, name FROM keys WHERE digest = ?", want.Digest[:]).Scan(&id, &name)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s does not hold dataset key %d: not a loadbench dataset of %d keys, or one of another key derivation", path, i, datasetKeys)
		}
		if err != nil {
			return fmt.Errorf("reading dataset key %d from %s: %w", i, path, err)
		}
		if id != want.ID || name != want.Name {
			return fmt.Errorf("dataset key %d in %s is %s %q, want %s %q", i, path, id, name, want.ID, want.Name)
		}
	}
	return db.Close()
}

// copyFile copies the file at src to a new file dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	return out.Close()
}

// removeStore removes the SQLite store at path and its companion files.
func removeStore(path string) {
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		os.Remove(path + suffix)
	}
}

// writeKeyFile writes the secrets of dataset keys [0, n) to path, one a
// line.
func writeKeyFile(path string, n int) error {
	return writeLines(path, n, secretOf)
}

// writeFloodFile writes n random well-formed keys to path: right prefix,
// length and checksum (apikey.Format.Generate), so each passes the format
// check and costs a cache and store lookup, but no store holds them.
func writeFloodFile(path string, n int) error {
	format, err := apikey.NewFormat(apikey.DefaultPrefix)
	if err != nil {
		return err
	}
	var genErr error
	err = writeLines(path, n, func(int) string {
		s, err := format.Generate()
		if err != nil {
			genErr = err
		}
		return s
	})
	return errors.Join(err, genErr)
}

func writeLines(path string, n int, line func(i int) string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		w.WriteString(line(i))
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pgDatabase is a PostgreSQL database the benchmark created.
type pgDatabase struct {
	server string // DSN of the server's maintenance database
	name   string
	dsn    string // DSN of the database
}

// createPGDataset creates a database of its own on the server at server,
// lets internal/keystore/postgres create its schema, and copies dataset
// keys [0, n) into it. The caller drops it with drop.
func createPGDataset(ctx context.Context, server string, n int) (*pgDatabase, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(cctx, server)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer admin.Close(context.Background())
	var b [6]byte
	rand.Read(b[:])
	db := &pgDatabase{server: server, name: "keygate_loadbench_" + hex.EncodeToString(b[:])}
	if _, err := admin.Exec(cctx, "CREATE DATABASE "+db.name); err != nil {
		return nil, fmt.Errorf("creating database %s: %w", db.name, err)
	}
	if db.dsn, err = withDatabase(server, db.name); err != nil {
		db.drop()
		return nil, err
	}
	if err := fillPG(ctx, db.dsn, n); err != nil {
		db.drop()
		return nil, err
	}
	return db, nil
}

func fillPG(ctx context.Context, dsn string, n int) error {
	s, err := postgres.Open(ctx, dsn, zap.NewNop())
	if err != nil {
		return err
	}
	if err := s.Close(); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	i := 0
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"keygate_keys"},
		[]string{"id", "name", "scope", "expiry", "hint", "digest", "created_at"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			k := keyOf(i)
			i++
			return []any{k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], k.CreatedAt}, nil
		}))
	if err != nil {
		return fmt.Errorf("copying keys into PostgreSQL (the store's schema changed?): %w", err)
	}
	_, err = conn.Exec(ctx, "ANALYZE keygate_keys")
	return err
}

// drop drops the database, ending its sessions.
func (db *pgDatabase) drop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, db.server)
	if err != nil {
		logf("dropping database %s: %v", db.name, err)
		return
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+db.name+" WITH (FORCE)"); err != nil {
		logf("dropping database %s: %v", db.name, err)
	}
}

// withDatabase returns dsn naming database name instead of its own.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parsing the PostgreSQL DSN: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	return dsn + " dbname=" + name, nil
}
