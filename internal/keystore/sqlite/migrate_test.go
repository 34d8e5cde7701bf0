package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/storetest"
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
		checkMigratedToV3(t, got, want)
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
	old, err := s.Rotate(t.Context(), active.ID, next, testNow.Add(2*time.Hour), keystore.Audit{})
	if err != nil || old.ReplacedBy != next.ID {
		t.Fatalf("Rotate(migrated key) = ReplacedBy %q, %v; want %q, nil", old.ReplacedBy, err, next.ID)
	}
	_, again, _ := testFormat.New("active", apikey.ScopeFull, apikey.ExpiryNever, testNow.Add(time.Hour))
	if _, err := s.Rotate(t.Context(), active.ID, again, testNow.Add(2*time.Hour), keystore.Audit{}); !errors.Is(err, keystore.ErrReplaced) {
		t.Errorf("second Rotate(migrated key) = %v, want ErrReplaced", err)
	}
}

// schemaV2 is the schema of version 2 as keygate released it: version 1
// and the column replaced_by, copied here like schemaV1.
const schemaV2 = schemaV1 + `
	ALTER TABLE keys ADD COLUMN replaced_by TEXT;
	PRAGMA user_version = 2;`

func TestAVersion2FileIsMigratedAndItsKeysReadAsTheOperatorsMadeBySystem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	db := rawDB(t, path)
	if _, err := db.ExecContext(t.Context(), schemaV2); err != nil {
		t.Fatalf("creating the version-2 schema: %v", err)
	}
	// Keys as keygate with schema version 2 wrote them: one replaced by
	// the other in a rotation.
	secret, next := newKey(t, "next")
	_, old := newKey(t, "old")
	old.ReplacedBy = next.ID
	for _, k := range []apikey.Key{old, next} {
		if _, err := db.ExecContext(t.Context(), `INSERT INTO keys (id, name, scope, expiry, hint, digest, created_at, expires_at, revoked_at, last_used_at, replaced_by)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)`,
			k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], micros(k.CreatedAt),
			nullMicros(k.ExpiresAt), sql.NullString{String: k.ReplacedBy, Valid: k.ReplacedBy != ""}); err != nil {
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
		t.Fatalf("Open(version-2 file) = %v", err)
	}
	defer s.Close()
	var version int
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&version); err != nil || version != schemaVersion {
		t.Errorf("user_version after Open = %d, %v; want %d", version, err, schemaVersion)
	}
	for _, want := range []apikey.Key{old, next} {
		got, err := s.Get(t.Context(), want.ID)
		if err != nil {
			t.Fatalf("Get(%s) = %v", want.Name, err)
		}
		checkMigratedToV3(t, got, want)
	}
	if got, err := s.GetByDigest(t.Context(), apikey.DigestOf(secret)); err != nil || got.ID != next.ID {
		t.Errorf("GetByDigest(next key's secret) = %s, %v; want %s", got.ID, err, next.ID)
	}
	if keys, err := s.List(t.Context(), keystore.Filter{Owner: "org_a"}); err != nil || len(keys) != 0 {
		t.Errorf("List(owner org_a) = %d keys, %v; want none: migrated keys have no owner", len(keys), err)
	}

	// A migrated key can be updated, and new keys have owners.
	name := "renamed"
	got, err := s.Update(t.Context(), next.ID, keystore.Patch{Name: &name, Metadata: &map[string]string{"plan": "pro"}}, keystore.Audit{})
	if err != nil || got.Name != name || got.Metadata["plan"] != "pro" {
		t.Errorf("Update(migrated key) = %+v, %v; want renamed, plan pro", got, err)
	}
	_, owned := newKey(t, "owned")
	owned.Owner = "org_a"
	if err := s.Create(t.Context(), owned, keystore.Audit{}); err != nil {
		t.Fatalf("Create(owned key) = %v", err)
	}
	if keys, err := s.List(t.Context(), keystore.Filter{Owner: "org_a"}); err != nil || len(keys) != 1 || keys[0].ID != owned.ID {
		t.Errorf("List(owner org_a) = %d keys, %v; want the owned key", len(keys), err)
	}
}

// checkMigratedToV3 checks that a key written before version 3 reads back
// as it was written, with no owner, no metadata, no policy lists, and
// created by keygate itself.
func checkMigratedToV3(t *testing.T, got, want apikey.Key) {
	t.Helper()
	if got.Name != want.Name || got.Digest != want.Digest || got.ReplacedBy != want.ReplacedBy ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) ||
		!got.RevokedAt.Equal(want.RevokedAt) || !got.LastUsedAt.Equal(want.LastUsedAt) {
		t.Errorf("Get(%s) = %+v, want %+v", want.Name, got, want)
	}
	if got.Owner != "" || got.Metadata != nil || got.CreatedBy != (apikey.Actor{Type: apikey.ActorSystem}) ||
		got.AllowedOrigins != nil || got.AllowedIPs != nil || got.RateLimits != nil {
		t.Errorf("Get(%s) = owner %q, metadata %v, created by %+v, lists %v %v %v; want no owner, no metadata, system, no lists",
			want.Name, got.Owner, got.Metadata, got.CreatedBy, got.AllowedOrigins, got.AllowedIPs, got.RateLimits)
	}
}

// A file of schema version 3 (owners and policy lists: the schema of the
// main branch before usage and the audit log) is migrated: its keys read
// back whole, usage can be recorded and read, and changes are audited
// from then on.
func TestAVersion3FileIsMigratedAndGetsUsageAndTheAuditLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	db := rawDB(t, path)
	// Released migrations never change, so the first three are the
	// version-3 schema as keygate wrote it.
	for v, m := range migrations[:3] {
		if _, err := db.ExecContext(t.Context(), m); err != nil {
			t.Fatalf("creating the version-%d schema: %v", v+1, err)
		}
	}
	if _, err := db.ExecContext(t.Context(), "PRAGMA user_version = 3"); err != nil {
		t.Fatal(err)
	}
	secret, k := newKey(t, "version 3")
	if _, err := db.ExecContext(t.Context(), `INSERT INTO keys (id, name, scope, expiry, hint, digest, created_at, expires_at,
			owner, metadata, created_by_type, created_by_id, allowed_origins, allowed_ips, rate_limits)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'org_a', '{"plan":"pro"}', 'admin', 'ops@host', '["https://app.example.com"]', '[]', '["100/1m"]')`,
		k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], micros(k.CreatedAt), nullMicros(k.ExpiresAt)); err != nil {
		t.Fatalf("inserting the key: %v", err)
	}
	db.Close()

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(version-3 file) = %v", err)
	}
	defer s.Close()
	var version int
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA user_version").Scan(&version); err != nil || version != schemaVersion {
		t.Errorf("user_version after Open = %d, %v; want %d", version, err, schemaVersion)
	}
	got, err := s.GetByDigest(t.Context(), apikey.DigestOf(secret))
	if err != nil || got.ID != k.ID || got.Owner != "org_a" || got.Metadata["plan"] != "pro" ||
		got.CreatedBy != (apikey.Actor{Type: apikey.ActorAdmin, ID: "ops@host"}) ||
		len(got.AllowedOrigins) != 1 || len(got.RateLimits) != 1 || got.RateLimits[0] != "100/1m" {
		t.Fatalf("GetByDigest(migrated key) = %+v, %v; want it as version 3 wrote it", got, err)
	}

	minute := time.Now().UTC().Truncate(time.Minute)
	if err := s.RecordUsage(t.Context(), map[string]time.Time{k.ID: minute}, []keystore.UsageCount{{KeyID: k.ID, Minute: minute, Result: "ok", N: 3}}); err != nil {
		t.Fatalf("RecordUsage(migrated key) = %v", err)
	}
	rows, err := s.Usage(t.Context(), k.ID, time.Hour, minute.Add(-time.Hour), minute.Add(time.Hour))
	if err != nil || len(rows) != 1 || rows[0].N != 3 {
		t.Errorf("Usage(migrated key, 1h) = %+v, %v; want one row of 3", rows, err)
	}
	if _, err := s.Revoke(t.Context(), k.ID, time.Now(), keystore.Audit{Actor: apikey.Actor{Type: apikey.ActorAdmin, ID: "ops@host"}}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Audit(t.Context(), keystore.AuditFilter{KeyID: k.ID})
	if err != nil || len(evs) != 1 || evs[0].Action != keystore.ActionRevoked || evs[0].Owner != "org_a" {
		t.Errorf("Audit(migrated key) = %+v, %v; want its revocation only (nobody recorded its creation)", evs, err)
	}
}

// rawDBAt opens the file at path without the store and gives it the
// schema of version as keygate wrote it: released migrations never
// change, so the first version of them are that schema.
func rawDBAt(t *testing.T, path string, version int) *sql.DB {
	t.Helper()
	db := rawDB(t, path)
	for v, m := range migrations[:version] {
		if _, err := db.ExecContext(t.Context(), m); err != nil {
			t.Fatalf("creating the version-%d schema: %v", v+1, err)
		}
	}
	// PRAGMA takes no parameters; version is a small integer of the test's.
	if _, err := db.ExecContext(t.Context(), fmt.Sprintf("PRAGMA user_version = %d", version)); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestAVersion4FilesLastUseMovesAndItsUsageCountsOnceAfterARollup(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	db := rawDBAt(t, path, 4)
	// A key as version 4 wrote it, last used a minute ago, and its usage:
	// each count at all three steps, this minute (a key in use right
	// before the upgrade) and an hour ago.
	_, k := newKey(t, "used")
	now := time.Now().UTC()
	usedAt := now.Add(-time.Minute).Truncate(time.Microsecond)
	if _, err := db.ExecContext(t.Context(), `INSERT INTO keys (id, name, scope, expiry, hint, digest, created_at, last_used_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], micros(k.CreatedAt), micros(usedAt)); err != nil {
		t.Fatal(err)
	}
	for _, m := range []time.Time{now.Truncate(time.Minute), now.Add(-time.Hour).Truncate(time.Minute)} {
		for _, step := range keystore.Steps {
			if _, err := db.ExecContext(t.Context(), `INSERT INTO usage (key_id, step, start, result, n) VALUES (?, ?, ?, 'ok', 5)
				ON CONFLICT (key_id, step, start, result) DO UPDATE SET n = n + excluded.n`,
				k.ID, int64(step/time.Second), keystore.StepStart(m, step).Unix()); err != nil {
				t.Fatal(err)
			}
		}
	}
	db.Close()

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(version-4 file) = %v", err)
	}
	defer s.Close()
	day := now.Truncate(24 * time.Hour)
	total := func(when string) {
		t.Helper()
		storetest.CheckUsageTotals(t, s, k.ID, day.Add(-24*time.Hour), now.Add(time.Hour), 10, when)
	}
	total("after the migration")
	if got, err := s.Get(t.Context(), k.ID); err != nil || !got.LastUsedAt.Equal(usedAt) {
		t.Errorf("LastUsedAt after the migration = %v, %v; want %v (moved to last_used)", got.LastUsedAt, err, usedAt)
	}
	if err := s.Prune(t.Context(), now.Add(2*time.Hour), keystore.DefaultRetention); err != nil {
		t.Fatal(err)
	}
	total("after a rollup past both minutes")
}

func TestAVersion6FilesUsageMovesToTimeOrderWithEveryCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	db := rawDBAt(t, path, 6)
	// Two keys as version 6 wrote them, with a rollup halfway: minutes
	// before the state's until are in the hour and day rows too, the
	// minute after it only in its minute row (the key above done_key).
	now := time.Now().UTC()
	rolled := now.Add(-30 * time.Minute).Truncate(10 * time.Minute)
	var ids []string
	for _, name := range []string{"a", "b"} {
		_, k := newKey(t, name)
		if _, err := db.ExecContext(t.Context(), `INSERT INTO keys (id, name, scope, expiry, hint, digest, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], micros(k.CreatedAt)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.ID)
	}
	insert := func(id string, step time.Duration, start time.Time, n int) {
		t.Helper()
		if _, err := db.ExecContext(t.Context(), `INSERT INTO usage (key_id, step, start, result, n) VALUES (?, ?, ?, 'ok', ?)
			ON CONFLICT (key_id, step, start, result) DO UPDATE SET n = n + excluded.n`,
			id, int64(step/time.Second), keystore.StepStart(start, step).Unix(), n); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		before := rolled.Add(-time.Minute)
		for _, step := range keystore.Steps {
			insert(id, step, before, 2+i) // rolled up
		}
		insert(id, keystore.StepMinute, rolled.Add(time.Minute), 10*(i+1)) // not yet
	}
	if _, err := db.ExecContext(t.Context(), `UPDATE usage_rollup SET until = ?, target = ?, done_key = ''`,
		rolled.Unix(), rolled.Add(10*time.Minute).Unix()); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(version-6 file) = %v", err)
	}
	defer s.Close()
	var pk []string
	rows, err := s.db.QueryContext(t.Context(), `SELECT name FROM pragma_table_info('usage') WHERE pk > 0 ORDER BY pk`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		pk = append(pk, c)
	}
	if got := strings.Join(pk, ", "); got != "step, start, key_id, result" {
		t.Errorf("usage's primary key after the migration = (%s), want (step, start, key_id, result)", got)
	}
	from, to := now.Truncate(24*time.Hour).Add(-24*time.Hour), now.Add(time.Hour)
	for i, id := range ids {
		want := int64(2 + i + 10*(i+1))
		storetest.CheckUsageTotals(t, s, id, from, to, want, "key "+strconv.Itoa(i)+" after the migration")
	}
	totals, err := s.UsageByKey(t.Context(), "", keystore.StepHour, from, to)
	if err != nil || len(totals) != 2 || totals[0].KeyID != ids[1] || totals[0].OK != 23 || totals[1].OK != 12 {
		t.Errorf("UsageByKey after the migration = %+v, %v; want b 23, a 12", totals, err)
	}
	if err := s.Prune(t.Context(), now.Add(2*time.Hour), keystore.DefaultRetention); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		want := int64(2 + i + 10*(i+1))
		storetest.CheckUsageTotals(t, s, id, from, to, want, "key "+strconv.Itoa(i)+" after a rollup")
	}
}
