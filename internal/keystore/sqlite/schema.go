package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations brings a database from schema version i (PRAGMA user_version)
// to i+1 with migrations[i]. Append only: a released migration never
// changes, as files out there already went through it.
var migrations = []string{
	// 1: the keys and the change log.
	//
	// Times are unix microseconds, UTC; NULL means "not set" (never
	// expires, not revoked, never used). Scope and expiry are kept by name,
	// so the file does not depend on the order of Go constants.
	`CREATE TABLE keys (
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
	CREATE INDEX changes_changed_at ON changes (changed_at);`,

	// 2: the ID of the key that replaced a key in a rotation; NULL while
	// none did. Keys of version 1 were never marked, so they read as not
	// replaced.
	`ALTER TABLE keys ADD COLUMN replaced_by TEXT;`,

	// 3: who the key belongs to and who made it, its metadata, and room
	// for the policy fields of later versions. owner is NULL for none;
	// metadata is a JSON object of strings, the lists JSON arrays of
	// strings (keystore.EncodeMetadata, EncodeList). Keys of version 2
	// read as the operator's (no owner), with no metadata, made by
	// keygate itself: nobody recorded who made them.
	`ALTER TABLE keys ADD COLUMN owner TEXT;
	ALTER TABLE keys ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
	ALTER TABLE keys ADD COLUMN created_by_type TEXT NOT NULL DEFAULT 'system';
	ALTER TABLE keys ADD COLUMN created_by_id TEXT NOT NULL DEFAULT '';
	ALTER TABLE keys ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '[]';
	ALTER TABLE keys ADD COLUMN allowed_ips TEXT NOT NULL DEFAULT '[]';
	ALTER TABLE keys ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '[]';`,

	// 4: usage counts and the audit log.
	//
	// usage holds one row per key, step (60, 3600 or 86400 seconds), start
	// (unix seconds, UTC) and result (version 4 added every batch to the
	// rows of all three steps; since 5, see below), and old rows are
	// deleted by step (keystore.Retention). audit holds one row per event, seq giving its
	// ID and order; changes and details are JSON objects. Keys of version 3
	// have no events: nobody recorded them.
	`CREATE TABLE usage (
		key_id TEXT    NOT NULL,
		step   INTEGER NOT NULL,
		start  INTEGER NOT NULL,
		result TEXT    NOT NULL,
		n      INTEGER NOT NULL,
		PRIMARY KEY (key_id, step, start, result)
	) STRICT, WITHOUT ROWID;
	CREATE INDEX usage_step_start ON usage (step, start);
	CREATE TABLE audit (
		seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
		at         INTEGER NOT NULL,
		action     TEXT    NOT NULL,
		key_id     TEXT    NOT NULL,
		owner      TEXT,
		actor_type TEXT    NOT NULL,
		actor_id   TEXT    NOT NULL,
		remote_ip  TEXT    NOT NULL,
		user_agent TEXT    NOT NULL,
		changes    TEXT    NOT NULL,
		details    TEXT    NOT NULL
	) STRICT;
	CREATE INDEX audit_key ON audit (key_id, seq);
	CREATE INDEX audit_owner ON audit (owner, seq) WHERE owner IS NOT NULL;
	CREATE INDEX audit_at ON audit (at);`,

	// 5: usage is written per minute and rolled up into hours and days
	// by the instances (keystore.RollupState); usage_rollup holds the
	// state, one row, times in unix seconds. A file with usage already
	// has every minute in its hour and day rows (version 4 wrote all three
	// steps), so its state starts at the next minute; one without starts
	// at 0.
	`CREATE TABLE usage_rollup (
		until    INTEGER NOT NULL,
		target   INTEGER NOT NULL,
		done_key TEXT    NOT NULL
	) STRICT;
	INSERT INTO usage_rollup (until, target, done_key)
		SELECT t, t, '' FROM (SELECT CASE WHEN EXISTS (SELECT 1 FROM usage)
			THEN (CAST(strftime('%s', 'now') AS INTEGER) / 60 + 1) * 60 ELSE 0 END AS t);`,

	// 6: last-used times move out of keys into a table of their own,
	// (key ID, unix microseconds). The recorder writes the last use of
	// every busy key about once a minute; an update of a keys row
	// rewrote a page of the wide keys table (and its WAL frame) for each
	// key, scattered over the file, while last_used packs ~100 keys a
	// page and stays in the page cache: 4 MB for 100,000 keys.
	`CREATE TABLE last_used (
		key_id TEXT    NOT NULL PRIMARY KEY,
		at     INTEGER NOT NULL
	) STRICT, WITHOUT ROWID;
	INSERT INTO last_used (key_id, at) SELECT id, last_used_at FROM keys WHERE last_used_at IS NOT NULL;
	ALTER TABLE keys DROP COLUMN last_used_at;`,

	// 7: usage rows are kept in time order, (step, start, key_id, result),
	// instead of by key. A minute's rows of every busy key are written
	// together once a minute (and rolled up together, and pruned
	// together): in time order they fill pages at the end of the table,
	// where by key each landed in its own key's pages, scattered over the
	// file, so that 100,000 busy keys rewrote (and read back) about
	// 100,000 pages every minute, more as the 48 hours of minutes grew. A
	// key's own rows are found by seeking each step of the range
	// (Store.Usage). usage_step_start goes with the old table: the
	// primary key now begins with its columns.
	`CREATE TABLE usage_by_time (
		key_id TEXT    NOT NULL,
		step   INTEGER NOT NULL,
		start  INTEGER NOT NULL,
		result TEXT    NOT NULL,
		n      INTEGER NOT NULL,
		PRIMARY KEY (step, start, key_id, result)
	) STRICT, WITHOUT ROWID;
	INSERT INTO usage_by_time (key_id, step, start, result, n)
		SELECT key_id, step, start, result, n FROM usage ORDER BY step, start, key_id, result;
	DROP TABLE usage;
	ALTER TABLE usage_by_time RENAME TO usage;`,
}

// indexes are created, if missing, every time a file is opened, after the
// migrations. An index changes no data and older keygate versions ignore
// it, so adding one needs no new schema version: a file made before it
// gets it on its first open by a keygate that knows it.
var indexes = []string{
	// keys_list covers what List filters on, in List's order, so that a
	// filtered page reads the index alone, never the table rows, until it
	// has its keys: a search that matches nothing reads 100,000 entries
	// of this index several times faster than it reads 100,000 rows
	// (docs/BENCHMARKS.md, "Pagination at 100,000 keys").
	`CREATE INDEX IF NOT EXISTS keys_list ON keys (created_at DESC, id DESC, revoked_at, expires_at, scope, name)`,
	// keys_owner serves the listing of one owner's keys (the console of a
	// customer, list --owner) in List's order, whatever the other owners
	// hold. Keys without an owner are left out of it.
	`CREATE INDEX IF NOT EXISTS keys_owner ON keys (owner, created_at DESC, id DESC) WHERE owner IS NOT NULL`,
}

// schemaVersion is the version of the schema this code reads and writes.
var schemaVersion = len(migrations)

// migrate brings the database up to schemaVersion in one transaction. The
// transaction takes the write lock first (BEGIN IMMEDIATE), so processes
// opening one file at once migrate it one after the other.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("starting migration: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if version > schemaVersion {
		return fmt.Errorf("the file has schema version %d, newer than this keygate knows (%d): it was written by a newer keygate; upgrade keygate or use another file", version, schemaVersion)
	}
	for v := version; v < schemaVersion; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrating schema from version %d to %d: %w", v, v+1, err)
		}
	}
	for _, idx := range indexes {
		if _, err := tx.ExecContext(ctx, idx); err != nil {
			return fmt.Errorf("creating index: %w", err)
		}
	}
	if version < schemaVersion {
		// PRAGMA takes no parameters; schemaVersion is a small integer of ours.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return fmt.Errorf("setting schema version: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing migration: %w", err)
	}
	return nil
}
