package sqlite

import (
	"bytes"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

var testFormat = func() *apikey.Format {
	f, err := apikey.NewFormat("dk")
	if err != nil {
		panic(err)
	}
	return f
}()

var testNow = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

// newKey makes a key and its secret.
func newKey(t testing.TB, name string) (string, apikey.Key) {
	t.Helper()
	secret, k, err := testFormat.New(name, apikey.ScopeFull, apikey.ExpiryNever, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return secret, k
}

// readFiles returns the contents of the database file and of its -wal and
// -shm files, by name, leaving out those that do not exist.
func readFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		b, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(name)] = b
	}
	return files
}

func TestFilesHoldOnlyDigestAndHintOfASecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	type created struct {
		secret string
		key    apikey.Key
	}
	var keys []created
	for _, name := range []string{"first", "second", "third"} {
		secret, k := newKey(t, name)
		if err := s.Create(t.Context(), k, keystore.Audit{}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, created{secret, k})
	}
	// Rotate and touch too, so that every write path has run.
	secret, next := newKey(t, "rotated")
	if _, err := s.Rotate(t.Context(), keys[0].key.ID, next, testNow.Add(time.Hour), keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	keys = append(keys, created{secret, next})
	if err := s.TouchLastUsed(t.Context(), map[string]time.Time{keys[1].key.ID: testNow}); err != nil {
		t.Fatal(err)
	}

	check := func(when string, files map[string][]byte) {
		t.Helper()
		all := bytes.Join(func() [][]byte {
			var bs [][]byte
			for _, b := range files {
				bs = append(bs, b)
			}
			return bs
		}(), nil)
		for _, c := range keys {
			// No 5 consecutive characters of the secret: the hint's
			// last 4 are all that may be kept.
			for i := 0; i+5 <= len(c.secret); i++ {
				if w := c.secret[i : i+5]; bytes.Contains(all, []byte(w)) {
					t.Errorf("%s: the files hold %q, characters %d-%d of the secret of %q", when, w, i, i+4, c.key.Name)
				}
			}
			// What is kept is there, so the search above looked at the
			// right bytes.
			if !bytes.Contains(all, c.key.Digest[:]) {
				t.Errorf("%s: the files do not hold the digest of %q", when, c.key.Name)
			}
			if !bytes.Contains(all, []byte(c.key.Hint)) {
				t.Errorf("%s: the files do not hold the hint %q of %q", when, c.key.Hint, c.key.Name)
			}
		}
	}

	open := readFiles(t, path)
	if len(open["keys.db-wal"]) == 0 {
		t.Fatalf("no -wal file while the store is open (files: %v): is WAL on?", len(open))
	}
	check("while open", open)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check("after close", readFiles(t, path))
}

func TestReopeningKeepsKeysAndSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	_, k := newKey(t, "kept")
	var wantSeq int64
	for i := range 3 {
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatalf("Open #%d = %v", i, err)
		}
		if i == 0 {
			if err := s.Create(t.Context(), k, keystore.Audit{}); err != nil {
				t.Fatal(err)
			}
			_, wantSeq, _ = s.Changes(t.Context(), 0, 1)
		}
		got, err := s.Get(t.Context(), k.ID)
		if err != nil || got.ID != k.ID || got.Digest != k.Digest {
			t.Errorf("Open #%d: Get = %+v, %v; want the key created before", i, got, err)
		}
		if _, cur, err := s.Changes(t.Context(), 0, 1); err != nil || cur != wantSeq {
			t.Errorf("Open #%d: sequence %d, %v; want %d", i, cur, err, wantSeq)
		}
		var version int
		if err := s.db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&version); err != nil || version != schemaVersion {
			t.Errorf("Open #%d: user_version = %d, %v; want %d", i, version, err, schemaVersion)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// rawDB opens the file without the store, to set it up as a test needs.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenRefusesAFileOfANewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := rawDB(t, path)
	newer := schemaVersion + 1
	if _, err := db.ExecContext(t.Context(), "PRAGMA user_version = "+strconv.Itoa(newer)); err != nil {
		t.Fatal(err)
	}

	_, err = Open(t.Context(), path)
	if err == nil {
		t.Fatal("Open(newer schema) = nil, want an error")
	}
	for _, want := range []string{path, "schema version " + strconv.Itoa(newer), "newer", "upgrade keygate"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Open(newer schema) = %q, want it to say %q", err, want)
		}
	}
	var version int
	if err := db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&version); err != nil || version != newer {
		t.Errorf("user_version after the refused open = %d, %v; want %d unchanged", version, err, newer)
	}
}

func TestAFailedMigrationLeavesTheFileAsItWas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	db := rawDB(t, path)
	// Another program's table named like ours makes migration 1 fail
	// after it created the first objects.
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE changes (x)"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), path); err == nil {
		t.Fatal("Open = nil, want the migration to fail")
	}
	var version, tables int
	if err := db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&version); err != nil || version != 0 {
		t.Errorf("user_version = %d, %v; want 0", version, err)
	}
	if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM sqlite_schema WHERE name = 'keys'").Scan(&tables); err != nil || tables != 0 {
		t.Errorf("tables named keys = %d, %v; want 0 (the migration rolled back)", tables, err)
	}
}

func TestOpenCreatesAPrivateDirectoryAndFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "keygate")
	path := filepath.Join(dir, "keys.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		name string
		want os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {path, 0o600}, {path + "-wal", 0o600}} {
		fi, err := os.Stat(tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != tc.want {
			t.Errorf("mode of %s = %v, want %v", filepath.Base(tc.name), got, tc.want)
		}
	}
}

func TestOpenRefusesWhatIsNotAKeyStore(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notDB, bytes.Repeat([]byte("not a database\n"), 100), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path string }{
		{"empty path", ""},
		{"a text file", notDB},
		{"a directory", dir},
	} {
		if s, err := Open(t.Context(), tc.path); err == nil {
			s.Close()
			t.Errorf("Open(%s) = nil, want an error", tc.name)
		}
	}
}

func TestPathsWithURICharactersWork(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd ?name#with%20chars&_txlock=deferred", "keys.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the store is not at the path given: %v", err)
	}
}

// Two stores on one file stand for two processes sharing it: their writes
// wait for each other and each sees the other's changes.
func TestTwoStoresShareOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	var stores [2]*Store
	for i := range stores {
		s, err := Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	var wg sync.WaitGroup
	const perStore = 20
	for _, s := range stores {
		wg.Go(func() {
			for range perStore {
				_, k := newKey(t, "shared")
				if err := s.Create(t.Context(), k, keystore.Audit{}); err != nil {
					t.Errorf("Create = %v", err)
				}
				if err := s.TouchLastUsed(t.Context(), map[string]time.Time{k.ID: testNow}); err != nil {
					t.Errorf("TouchLastUsed = %v", err)
				}
			}
		})
	}
	wg.Wait()
	for i, s := range stores {
		chs, cur, err := s.Changes(t.Context(), 0, 0)
		if err != nil || len(chs) != 2*perStore || cur != int64(2*perStore) {
			t.Errorf("store %d: Changes = %d changes, sequence %d, %v; want %d, %d, nil", i, len(chs), cur, err, 2*perStore, 2*perStore)
		}
	}
}

func TestCallsRacingCloseReturnErrClosed(t *testing.T) {
	s := openTemp(t)
	_, k := newKey(t, "racing")
	if err := s.Create(t.Context(), k, keystore.Audit{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				_, err := s.GetByDigest(t.Context(), k.Digest)
				if errors.Is(err, keystore.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("GetByDigest while closing = %v, want nil or ErrClosed", err)
					return
				}
			}
		})
	}
	s.Close()
	wg.Wait()
}

func TestOpenAddsTheListIndexToAFileMadeBeforeIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	// A file as keygate made it before keys_list: schema version 1, with
	// a key.
	db := rawDB(t, path)
	if _, err := db.ExecContext(t.Context(), migrations[0]+"; PRAGMA user_version = 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(t.Context(), `INSERT INTO keys (id, name, scope, expiry, hint, digest, created_at, expires_at, revoked_at, last_used_at) VALUES
		('key_0123456789ABCDEFabcdef', 'old', 'full', 'never', 'dk_…abcd', zeroblob(32), 1, NULL, NULL, NULL)`); err != nil {
		t.Fatal(err)
	}
	indexNamed := func(name string) bool {
		var n int
		if err := db.QueryRowContext(t.Context(), "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = ?", name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if indexNamed("keys_list") {
		t.Fatal("the old file already has keys_list")
	}

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !indexNamed("keys_list") {
		t.Error("Open did not create keys_list")
	}
	keys, err := s.List(t.Context(), keystore.Filter{Query: "OLD", Limit: 10})
	if err != nil || len(keys) != 1 || keys[0].ID != "key_0123456789ABCDEFabcdef" {
		t.Errorf("List(query OLD) = %v, %v; want the old key", keys, err)
	}
	// A filtered page is chosen from keys_list alone.
	rows, err := s.db.QueryContext(t.Context(), `EXPLAIN QUERY PLAN SELECT rowid FROM keys
		WHERE revoked_at IS NULL AND scope = 'full' AND (id = 'x' OR instr(lower(name), 'x') > 0) ORDER BY created_at DESC, id DESC LIMIT 51`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if got := strings.Join(plan, "; "); got != "SCAN keys USING COVERING INDEX keys_list" {
		t.Errorf("plan = %q, want a scan of the covering index keys_list", got)
	}
	var version int
	if err := db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&version); err != nil || version != schemaVersion {
		t.Errorf("user_version = %d, %v; want %d", version, err, schemaVersion)
	}
}
