package sqlite

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// schemaV1 is the schema of version 1 as keygate released it (migrations[0]
// before version 2 existed), copied here so that the test keeps building a
// version-1 file however the migrations evolve.
const schemaV1 = `CREATE TABLE keys (
		id           TEXT    NOT NULL PRIMARY KEY,
		name         TEXT    NOT NULL,
		scope        TEXT    NOT NULL,
		expiry       TEXT    NOT NULL,
		hint         TEXT    NOT NULL,
		digest       BLOB    NOT NULL,
		created_at   INTEGER NOT NULL,
		expires_at   INTEGER,
		revoked_at   INTEGER,
		last_used_at INTEGER
	) STRICT;
	CREATE UNIQUE INDEX keys_digest ON keys (digest);
	CREATE INDEX keys_created_at ON keys (created_at DESC, id DESC);
	CREATE TABLE changes (
		seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
		key_id     TEXT    NOT NULL,
		digest     BLOB    NOT NULL,
		changed_at INTEGER NOT NULL
	) STRICT;
	CREATE INDEX changes_changed_at ON changes (changed_at);
	PRAGMA user_version = 1;`

func TestAVersion1FileIsMigratedAndItsKeysKeepWorking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	db := rawDB(t, path)
	if _, err := db.ExecContext(t.Context(), schemaV1); err != nil {
		t.Fatalf("creating the version-1 schema: %v", err)
	}
	// Keys as keygate with schema version 1 wrote them: an active one, a
	// used one that expires, and a revoked one, each with its change.
	secret, active := newKey(t, "active")
	_, used, err := testFormat.New("used", apikey.ScopeWidget, apikey.ExpiryYear, testNow)
	if err != nil {
		t.Fatal(err)
	}
	used.LastUsedAt = testNow.Add(time.Minute)
	_, revoked := newKey(t, "revoked")
	revoked.RevokedAt = testNow.Add(time.Hour)
	for _, k := range []apikey.Key{active, used, revoked} {
		if _, err := db.ExecContext(t.Context(), `INSERT INTO keys (id, name, scope, expiry, hint, digest, created_at, expires_at, revoked_at, last_used_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], micros(k.CreatedAt),
			nullMicros(k.ExpiresAt), nullMicros(k.RevokedAt), nullMicros(k.LastUsedAt)); err != nil {
			t.Fatalf("inserting %s: %v", k.Name, err)
		}
		if _, err := db.ExecContext(t.Context(), `INSERT INTO changes (key_id, digest, changed_at) VALUES (?, ?, ?)`,
			k.ID, k.Digest[:], micros(time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(version-1 file) = %v", err)
	}
	defer s.Close()
	var version int
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&version); err != nil || version != schemaVersion {
		t.Errorf("user_version after Open = %d, %v; want %d", version, err, schemaVersion)
	}
	for _, want := range []apikey.Key{active, used, revoked} {
		got, err := s.Get(t.Context(), want.ID)
		if err != nil {
			t.Fatalf("Get(%s) = %v", want.Name, err)
		}
		if got.ReplacedBy != "" || got.Name != want.Name || got.Digest != want.Digest ||
			!got.LastUsedAt.Equal(want.LastUsedAt) || !got.RevokedAt.Equal(want.RevokedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
			t.Errorf("Get(%s) = %+v, want %+v, not replaced", want.Name, got, want)
		}
	}
	if got, err := s.GetByDigest(t.Context(), apikey.DigestOf(secret)); err != nil || got.ID != active.ID {
		t.Errorf("GetByDigest(active key's secret) = %s, %v; want %s", got.ID, err, active.ID)
	}
	if _, cur, err := s.Changes(t.Context(), 0, 10); err != nil || cur != 3 {
		t.Errorf("Changes after the migration: sequence %d, %v; want 3", cur, err)
	}

	// The migrated keys rotate like new ones: once.
	_, next, err := testFormat.New("active", apikey.ScopeFull, apikey.ExpiryNever, testNow.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old, err := s.Rotate(t.Context(), active.ID, next, testNow.Add(2*time.Hour))
	if err != nil || old.ReplacedBy != next.ID {
		t.Fatalf("Rotate(migrated key) = ReplacedBy %q, %v; want %q, nil", old.ReplacedBy, err, next.ID)
	}
	_, again, _ := testFormat.New("active", apikey.ScopeFull, apikey.ExpiryNever, testNow.Add(time.Hour))
	if _, err := s.Rotate(t.Context(), active.ID, again, testNow.Add(2*time.Hour)); !errors.Is(err, keystore.ErrReplaced) {
		t.Errorf("second Rotate(migrated key) = %v, want ErrReplaced", err)
	}
}
