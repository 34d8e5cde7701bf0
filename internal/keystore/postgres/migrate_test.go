package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/postgres/pgtest"
	"github.com/docana/keygate/internal/keystore/storetest"
)

// schemaV1 is the schema of version 1 as keygate released it, with its
// version table, copied here so that the test keeps building a version-1
// database however the migrations evolve.
const schemaV1 = `
CREATE TABLE keygate_schema (
	one     boolean PRIMARY KEY DEFAULT true CHECK (one),
	version integer NOT NULL
);
INSERT INTO keygate_schema (version) VALUES (1);

CREATE TABLE keygate_keys (
	id           text PRIMARY KEY,
	name         text NOT NULL,
	scope        text NOT NULL,
	expiry       text NOT NULL,
	hint         text NOT NULL,
	digest       bytea NOT NULL UNIQUE,
	created_at   timestamptz NOT NULL,
	expires_at   timestamptz,
	revoked_at   timestamptz,
	last_used_at timestamptz
);
CREATE INDEX keygate_keys_created_at ON keygate_keys (created_at DESC, id DESC);

CREATE TABLE keygate_change_counter (
	one    boolean PRIMARY KEY DEFAULT true CHECK (one),
	seq    bigint NOT NULL,
	pruned bigint NOT NULL
);
INSERT INTO keygate_change_counter (seq, pruned) VALUES (0, 0);

CREATE TABLE keygate_changes (
	seq        bigint PRIMARY KEY,
	key_id     text NOT NULL,
	digest     bytea NOT NULL,
	changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX keygate_changes_changed_at ON keygate_changes (changed_at);
`

func TestAVersion1DatabaseIsMigratedAndItsKeysKeepWorking(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), schemaV1); err != nil {
		t.Fatalf("creating the version-1 schema: %v", err)
	}
	now := time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)
	active := newKey(t, "active", now)
	used := newKey(t, "used", now)
	used.LastUsedAt = now.Add(time.Minute)
	revoked := newKey(t, "revoked", now)
	revoked.RevokedAt = now.Add(time.Hour)
	for i, k := range []apikey.Key{active, used, revoked} {
		if _, err := conn.Exec(t.Context(), `INSERT INTO keygate_keys (id, name, scope, expiry, hint, digest, created_at, expires_at, revoked_at, last_used_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], k.CreatedAt,
			nullTime(k.ExpiresAt), nullTime(k.RevokedAt), nullTime(k.LastUsedAt)); err != nil {
			t.Fatalf("inserting %s: %v", k.Name, err)
		}
		if _, err := conn.Exec(t.Context(), `INSERT INTO keygate_changes (seq, key_id, digest) VALUES ($1, $2, $3)`, int64(i+1), k.ID, k.Digest[:]); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(t.Context(), `UPDATE keygate_change_counter SET seq = $1`, int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}

	s := openStore(t, dsn, options{})
	var version int
	if err := conn.QueryRow(t.Context(), `SELECT version FROM keygate_schema`).Scan(&version); err != nil || version != len(migrations) {
		t.Errorf("schema version after Open = %d, %v; want %d", version, err, len(migrations))
	}
	for _, want := range []apikey.Key{active, used, revoked} {
		got, err := s.Get(t.Context(), want.ID)
		if err != nil {
			t.Fatalf("Get(%s) = %v", want.Name, err)
		}
		checkMigratedToV3(t, got, want)
	}
	if got, err := s.GetByDigest(t.Context(), active.Digest); err != nil || got.ID != active.ID {
		t.Errorf("GetByDigest(active) = %s, %v; want %s", got.ID, err, active.ID)
	}
	if _, cur, err := s.Changes(t.Context(), 0, 10); err != nil || cur != 3 {
		t.Errorf("Changes after the migration: sequence %d, %v; want 3", cur, err)
	}

	// The migrated keys rotate like new ones: once.
	next := newKey(t, "active", now.Add(time.Hour))
	old, err := s.Rotate(t.Context(), active.ID, next, now.Add(2*time.Hour), keystore.Audit{})
	if err != nil || old.ReplacedBy != next.ID {
		t.Fatalf("Rotate(migrated key) = ReplacedBy %q, %v; want %q, nil", old.ReplacedBy, err, next.ID)
	}
	again := newKey(t, "active", now.Add(time.Hour))
	if _, err := s.Rotate(t.Context(), active.ID, again, now.Add(2*time.Hour), keystore.Audit{}); !errors.Is(err, keystore.ErrReplaced) {
		t.Errorf("second Rotate(migrated key) = %v, want ErrReplaced", err)
	}
}

// schemaV2 is the schema of version 2 as keygate released it: version 1
// and the column replaced_by, copied here like schemaV1.
const schemaV2 = schemaV1 + `
ALTER TABLE keygate_keys ADD COLUMN replaced_by text;
UPDATE keygate_schema SET version = 2;
`

func TestAVersion2DatabaseIsMigratedAndItsKeysReadAsTheOperatorsMadeBySystem(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), schemaV2); err != nil {
		t.Fatalf("creating the version-2 schema: %v", err)
	}
	now := time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)
	next := newKey(t, "next", now)
	old := newKey(t, "old", now)
	old.ReplacedBy = next.ID
	for i, k := range []apikey.Key{old, next} {
		var replacedBy *string
		if k.ReplacedBy != "" {
			replacedBy = &k.ReplacedBy
		}
		if _, err := conn.Exec(t.Context(), `INSERT INTO keygate_keys (id, name, scope, expiry, hint, digest, created_at, expires_at, revoked_at, last_used_at, replaced_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9)`,
			k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], k.CreatedAt,
			nullTime(k.ExpiresAt), replacedBy); err != nil {
			t.Fatalf("inserting %s: %v", k.Name, err)
		}
		if _, err := conn.Exec(t.Context(), `INSERT INTO keygate_changes (seq, key_id, digest) VALUES ($1, $2, $3)`, int64(i+1), k.ID, k.Digest[:]); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(t.Context(), `UPDATE keygate_change_counter SET seq = $1`, int64(i+1)); err != nil {
			t.Fatal(err)
		}
	}

	s := openStore(t, dsn, options{})
	var version int
	if err := conn.QueryRow(t.Context(), `SELECT version FROM keygate_schema`).Scan(&version); err != nil || version != len(migrations) {
		t.Errorf("schema version after Open = %d, %v; want %d", version, err, len(migrations))
	}
	for _, want := range []apikey.Key{old, next} {
		got, err := s.Get(t.Context(), want.ID)
		if err != nil {
			t.Fatalf("Get(%s) = %v", want.Name, err)
		}
		checkMigratedToV3(t, got, want)
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
	owned := newKey(t, "owned", now)
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

// A database of schema version 3 (owners and policy lists: the schema of
// the main branch before usage, the audit log and the instance registry)
// is migrated: its keys read back whole, usage can be recorded and read,
// changes are audited from then on, and instances can register.
func TestAVersion3DatabaseIsMigratedAndGetsUsageTheAuditLogAndTheRegistry(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	// Released migrations never change, so the first three are the
	// version-3 schema as keygate wrote it.
	if _, err := conn.Exec(t.Context(), `CREATE TABLE keygate_schema (
	one     boolean PRIMARY KEY DEFAULT true CHECK (one),
	version integer NOT NULL
);
INSERT INTO keygate_schema (version) VALUES (3);`); err != nil {
		t.Fatal(err)
	}
	for v, m := range migrations[:3] {
		if _, err := conn.Exec(t.Context(), m); err != nil {
			t.Fatalf("creating the version-%d schema: %v", v+1, err)
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	k := newKey(t, "version 3", now)
	if _, err := conn.Exec(t.Context(), `INSERT INTO keygate_keys (id, name, scope, expiry, hint, digest, created_at, expires_at,
			owner, metadata, created_by_type, created_by_id, allowed_origins, allowed_ips, rate_limits)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'org_a', '{"plan":"pro"}', 'admin', 'ops@host', '["https://app.example.com"]', '[]', '["100/1m"]')`,
		k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], k.CreatedAt, nullTime(k.ExpiresAt)); err != nil {
		t.Fatalf("inserting the key: %v", err)
	}

	s := openStore(t, dsn, options{})
	var version int
	if err := conn.QueryRow(t.Context(), `SELECT version FROM keygate_schema`).Scan(&version); err != nil || version != len(migrations) {
		t.Errorf("schema version after Open = %d, %v; want %d", version, err, len(migrations))
	}
	got, err := s.GetByDigest(t.Context(), k.Digest)
	if err != nil || got.ID != k.ID || got.Owner != "org_a" || got.Metadata["plan"] != "pro" ||
		got.CreatedBy != (apikey.Actor{Type: apikey.ActorAdmin, ID: "ops@host"}) ||
		len(got.AllowedOrigins) != 1 || len(got.RateLimits) != 1 || got.RateLimits[0] != "100/1m" {
		t.Fatalf("GetByDigest(migrated key) = %+v, %v; want it as version 3 wrote it", got, err)
	}

	minute := now.Truncate(time.Minute)
	if err := s.RecordUsage(t.Context(), map[string]time.Time{k.ID: minute}, []keystore.UsageCount{{KeyID: k.ID, Minute: minute, Result: "ok", N: 3}}); err != nil {
		t.Fatalf("RecordUsage(migrated key) = %v", err)
	}
	rows, err := s.Usage(t.Context(), k.ID, time.Hour, minute.Add(-time.Hour), minute.Add(time.Hour))
	if err != nil || len(rows) != 1 || rows[0].N != 3 {
		t.Errorf("Usage(migrated key, 1h) = %+v, %v; want one row of 3", rows, err)
	}
	if _, err := s.Revoke(t.Context(), k.ID, now.Add(time.Second), keystore.Audit{Actor: apikey.Actor{Type: apikey.ActorAdmin, ID: "ops@host"}}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Audit(t.Context(), keystore.AuditFilter{KeyID: k.ID})
	if err != nil || len(evs) != 1 || evs[0].Action != keystore.ActionRevoked || evs[0].Owner != "org_a" {
		t.Errorf("Audit(migrated key) = %+v, %v; want its revocation only (nobody recorded its creation)", evs, err)
	}

	if err := s.Beat(t.Context(), keystore.Instance{ID: "inst_migrated", Hostname: "h", Version: "v", StartedAt: now, AppliedSeq: 1}); err != nil {
		t.Fatalf("Beat on the migrated database = %v", err)
	}
	ins, _, _, err := s.Instances(t.Context())
	if err != nil || len(ins) != 1 || ins[0].ID != "inst_migrated" {
		t.Errorf("Instances = %+v, %v; want the one that beat", ins, err)
	}
}

func TestAVersion5DatabasesUsageCountsOnceAfterTheMigrationAndARollup(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `CREATE TABLE keygate_schema (
	one     boolean PRIMARY KEY DEFAULT true CHECK (one),
	version integer NOT NULL
);
INSERT INTO keygate_schema (version) VALUES (5);`); err != nil {
		t.Fatal(err)
	}
	for v, m := range migrations[:5] {
		if _, err := conn.Exec(t.Context(), m); err != nil {
			t.Fatalf("creating the version-%d schema: %v", v+1, err)
		}
	}
	// Usage as version 5 wrote it: each count at all three steps, this
	// minute and an hour ago.
	now := time.Now().UTC()
	k := newKey(t, "used", now)
	if _, err := conn.Exec(t.Context(), `INSERT INTO keygate_keys (id, name, scope, expiry, hint, digest, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], k.CreatedAt); err != nil {
		t.Fatalf("inserting the key: %v", err)
	}
	for _, m := range []time.Time{now.Truncate(time.Minute), now.Add(-time.Hour).Truncate(time.Minute)} {
		for _, step := range keystore.Steps {
			if _, err := conn.Exec(t.Context(), `INSERT INTO keygate_usage (key_id, step, start, result, n) VALUES ($1, $2, $3, 'ok', 5)
ON CONFLICT (key_id, step, start, result) DO UPDATE SET n = keygate_usage.n + excluded.n`,
				k.ID, int32(step/time.Second), keystore.StepStart(m, step)); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, err := Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatalf("Open(version-5 database) = %v", err)
	}
	defer s.Close()
	day := now.Truncate(24 * time.Hour)
	total := func(when string) {
		t.Helper()
		storetest.CheckUsageTotals(t, s, k.ID, day.Add(-24*time.Hour), now.Add(time.Hour), 10, when)
	}
	total("after the migration")
	if err := s.Prune(t.Context(), now.Add(2*time.Hour), keystore.DefaultRetention); err != nil {
		t.Fatal(err)
	}
	total("after a rollup past both minutes")
}
