package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrationLock is the key of the transaction-level advisory lock that
// serialises migrations, so that gateway instances starting at the same
// moment create the schema once. It is a constant of keygate's own
// ("keygate" in ASCII), shared by every instance and version.
const migrationLock int64 = 0x6b657967617465

// migrations are the schema versions, in order: migrations[i] takes the
// schema from version i to i+1. A released migration is never edited; a
// change of schema appends one.
var migrations = []string{
	// v1: keys, the change log and its counter.
	//
	// keygate_change_counter is a single row holding the current change
	// sequence (seq) and the highest sequence pruned from the log
	// (pruned). Every transaction that changes a key updates that row, so
	// the row lock serialises them: sequence numbers are given out and
	// committed in the same order, and a reader that sees change N also
	// sees every change before it.
	`
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
`,
	// v2: the ID of the key that replaced a key in a rotation; NULL while
	// none did. Keys of v1 were never marked, so they read as not replaced.
	`ALTER TABLE keygate_keys ADD COLUMN replaced_by text;`,
	// v3: who the key belongs to and who made it, its metadata, and room
	// for the policy fields of later versions. owner is NULL for none;
	// metadata is a JSON object of strings, the lists JSON arrays of
	// strings, kept as text (keystore.EncodeMetadata, EncodeList) as in
	// SQLite. Keys of v2 read as the operator's (no owner), with no
	// metadata, made by keygate itself: nobody recorded who made them.
	`
ALTER TABLE keygate_keys
	ADD COLUMN owner text,
	ADD COLUMN metadata text NOT NULL DEFAULT '{}',
	ADD COLUMN created_by_type text NOT NULL DEFAULT 'system',
	ADD COLUMN created_by_id text NOT NULL DEFAULT '',
	ADD COLUMN allowed_origins text NOT NULL DEFAULT '[]',
	ADD COLUMN allowed_ips text NOT NULL DEFAULT '[]',
	ADD COLUMN rate_limits text NOT NULL DEFAULT '[]';
CREATE INDEX keygate_keys_owner ON keygate_keys (owner, created_at DESC, id DESC) WHERE owner IS NOT NULL;
`,
	// v4: usage counts and the audit log, as in SQLite. keygate_usage
	// holds one row per key, step (seconds), start and result; in v4 every
	// batch added to the rows of all three steps (since v6, see there). keygate_audit holds one row per event;
	// events are written in the transactions of key changes, which the
	// change counter's row lock serialises, so seq order is commit order.
	`
CREATE TABLE keygate_usage (
	key_id text NOT NULL,
	step   integer NOT NULL,
	start  timestamptz NOT NULL,
	result text NOT NULL,
	n      bigint NOT NULL,
	PRIMARY KEY (key_id, step, start, result)
);
CREATE INDEX keygate_usage_step_start ON keygate_usage (step, start);
CREATE TABLE keygate_audit (
	seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at         timestamptz NOT NULL,
	action     text NOT NULL,
	key_id     text NOT NULL,
	owner      text,
	actor_type text NOT NULL,
	actor_id   text NOT NULL,
	remote_ip  text NOT NULL,
	user_agent text NOT NULL,
	changes    text NOT NULL,
	details    text NOT NULL
);
CREATE INDEX keygate_audit_key ON keygate_audit (key_id, seq);
CREATE INDEX keygate_audit_owner ON keygate_audit (owner, seq) WHERE owner IS NOT NULL;
CREATE INDEX keygate_audit_at ON keygate_audit (at);
`,

	// v5: the gateway instances sharing
	// the database (keystore.Registry). A row is written by its instance
	// every sync_interval and whenever it applies changes; seen_at is the
	// server's clock, so instances on hosts whose clocks differ are
	// judged alike.
	`
CREATE TABLE keygate_instances (
	id            text PRIMARY KEY,
	hostname      text NOT NULL,
	version       text NOT NULL,
	started_at    timestamptz NOT NULL,
	seen_at       timestamptz NOT NULL,
	applied_seq   bigint NOT NULL,
	cache_entries bigint NOT NULL
);
`,

	// v6: usage is written per minute and rolled up into hours and days
	// by the instances (keystore.RollupState); keygate_usage_rollup holds
	// the state, one row. A database with usage already has every minute
	// in its hour and day rows (v4 wrote all three steps), so its state
	// starts at the next minute; one without starts at the epoch. The
	// rollup goes through the keys in byte order, as Go compares the
	// state's done_key, whatever the database's collation: hence
	// COLLATE "C" and the index keygate_keys_id_c.
	`
CREATE TABLE keygate_usage_rollup (
	until    timestamptz NOT NULL,
	target   timestamptz NOT NULL,
	done_key text COLLATE "C" NOT NULL
);
INSERT INTO keygate_usage_rollup (until, target, done_key)
	SELECT t, t, '' FROM (SELECT CASE WHEN EXISTS (SELECT 1 FROM keygate_usage)
		THEN date_trunc('minute', now()) + interval '1 minute' ELSE 'epoch'::timestamptz END AS t) AS s;
CREATE INDEX keygate_keys_id_c ON keygate_keys (id COLLATE "C");
`,
}

// migrate brings the schema up to the newest version. The advisory lock,
// taken first in the transaction and released by its end, makes
// concurrent callers wait for each other; each then sees the version the
// previous one committed.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("taking the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `
CREATE TABLE IF NOT EXISTS keygate_schema (
	one     boolean PRIMARY KEY DEFAULT true CHECK (one),
	version integer NOT NULL
)`); err != nil {
			return fmt.Errorf("creating the schema version table: %w", err)
		}
		var version int
		err := tx.QueryRow(ctx, `SELECT version FROM keygate_schema`).Scan(&version)
		switch {
		case err == pgx.ErrNoRows:
			version = 0
			if _, err := tx.Exec(ctx, `INSERT INTO keygate_schema (version) VALUES (0)`); err != nil {
				return fmt.Errorf("recording the schema version: %w", err)
			}
		case err != nil:
			return fmt.Errorf("reading the schema version: %w", err)
		}
		if version > len(migrations) {
			return fmt.Errorf("the database schema is at version %d, newer than this keygate knows (%d): upgrade keygate", version, len(migrations))
		}
		for v := version; v < len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migrating the schema to version %d: %w", v+1, err)
			}
		}
		if version < len(migrations) {
			if _, err := tx.Exec(ctx, `UPDATE keygate_schema SET version = $1`, len(migrations)); err != nil {
				return fmt.Errorf("recording the schema version: %w", err)
			}
		}
		return nil
	})
}
