// Package sqlite is keygate's embedded key store: one SQLite file (pure Go,
// modernc.org/sqlite) in WAL mode, for gateways running on one host.
//
// Times are stored as unix microseconds in UTC, digests as 32-byte blobs;
// the secret of a key is never given to the store. Every change to a key
// also writes a row of the change log (table changes), whose AUTOINCREMENT
// seq is the store's change sequence; rows older than an hour are pruned
// on each write, the newest always kept.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// changeRetention is how long the change log keeps a change: far longer
// than any reader's poll interval, so only a reader that stopped for this
// long gets keystore.ErrTooOld.
const changeRetention = time.Hour

// busyTimeout is how long a connection waits for another process's write
// lock before failing with SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// Store is a key store in an SQLite file. Its methods are safe for
// concurrent use; several processes may open the same file.
type Store struct {
	db     *sql.DB
	closed atomic.Bool
	// writing holds a token while this process runs a write transaction:
	// writers queue here, cancellably, instead of polling SQLite's lock.
	writing chan struct{}

	getByID     *sql.Stmt
	getByDigest *sql.Stmt
	changes     *sql.Stmt

	// events hears of the audit events of each committed change.
	events keystore.EventHook
}

// keyColumns are what scanKey reads of a key: the columns of keys and
// its last use from last_used.
const keyColumns = `id, name, scope, expiry, hint, digest, created_at, expires_at, revoked_at,
	(SELECT at FROM last_used WHERE key_id = keys.id), replaced_by,
	owner, metadata, created_by_type, created_by_id, allowed_origins, allowed_ips, rate_limits`

// insertColumns are the columns insertKey writes.
const insertColumns = `id, name, scope, expiry, hint, digest, created_at, expires_at, revoked_at, replaced_by,
	owner, metadata, created_by_type, created_by_id, allowed_origins, allowed_ips, rate_limits`

// Open opens the key store in the SQLite file at path, creating the file
// and its directory (mode 0700, the file 0600) if needed, and migrating its
// schema to the version this code knows. It refuses a file written by a
// newer keygate.
func Open(ctx context.Context, path string) (*Store, error) {
	s, err := open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("opening key store %s: %w", path, err)
	}
	return s, nil
}

func open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("no file name given")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, err
	}
	// SQLite would create the file readable by everyone (umask allowing);
	// create it first so that it, and the -wal and -shm files SQLite gives
	// the same mode, are not.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}

	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, err
	}
	// Opening a connection parses the schema and runs the pragmas: keep
	// enough idle ones for concurrent readers.
	db.SetMaxIdleConns(8)
	s := &Store{db: db, writing: make(chan struct{}, 1)}
	if err := s.init(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// dsn returns the data source name of the file at the absolute path. The
// pragmas are DSN parameters, so that every connection of the pool gets
// them; _txlock=immediate makes every write transaction take the write
// lock at BEGIN, so two transactions never deadlock upgrading a read lock.
func dsn(path string) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// 8 MiB of pages per connection (SQLite's default is 2 MiB): enough
	// for every interior page of the digest index and of the keys table
	// of a million keys, so a lookup reads only its two leaves from the
	// file (page fetches 9.1 % of the CPU under the loadbench miss load
	// instead of 10.2 %; docs/LOADBENCH.md). At most 8 read connections
	// and the writer, filled as used.
	q.Add("_pragma", "cache_size(-8192)")
	q.Set("_txlock", "immediate")
	// A file: URI escapes whatever the path holds ('?', '#', '%').
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	return u.String()
}

func (s *Store) init(ctx context.Context) error {
	var mode string
	if err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return err
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, not WAL: the file system may not support WAL", mode)
	}
	if err := migrate(ctx, s.db); err != nil {
		return err
	}
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{
		{&s.getByID, `SELECT ` + keyColumns + ` FROM keys WHERE id = ?`},
		{&s.getByDigest, `SELECT ` + keyColumns + ` FROM keys WHERE digest = ?`},
		// One statement, so one snapshot: the bounds that decide
		// ErrTooOld and the changes returned cannot straddle a prune.
		{&s.changes, `SELECT 0, coalesce(min(seq), 0), coalesce(max(seq), 0), NULL, NULL FROM changes
			UNION ALL
			SELECT * FROM (SELECT 1, seq, 0, key_id, digest FROM changes WHERE seq > ? ORDER BY seq LIMIT ?)`},
	} {
		stmt, err := s.db.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("preparing statement: %w", err)
		}
		*p.stmt = stmt
	}
	return nil
}

// Create stores k and logs its creation as a change and an event.
func (s *Store) Create(ctx context.Context, k apikey.Key, a keystore.Audit) error {
	if err := keystore.CheckNew(k); err != nil {
		return fmt.Errorf("creating key: %w", err)
	}
	var events []keystore.Event
	err := s.write(ctx, "creating key", func(tx *sql.Tx) error {
		if err := insertKey(ctx, tx, k); err != nil {
			return err
		}
		if err := logChanges(ctx, tx, k); err != nil {
			return err
		}
		var err error
		events, err = insertEvents(ctx, tx, keystore.CreatedEvent(k, a, nil))
		return err
	})
	if err != nil {
		return err
	}
	s.events.Emit(events)
	return nil
}

// Get returns the key with the given ID.
func (s *Store) Get(ctx context.Context, id string) (apikey.Key, error) {
	if s.closed.Load() {
		return apikey.Key{}, keystore.ErrClosed
	}
	k, err := scanKey(s.getByID.QueryRowContext(ctx, id))
	if err != nil {
		return apikey.Key{}, s.fail("getting key", err)
	}
	return k, nil
}

// GetByDigest returns the key whose secret has digest d.
func (s *Store) GetByDigest(ctx context.Context, d apikey.Digest) (apikey.Key, error) {
	if s.closed.Load() {
		return apikey.Key{}, keystore.ErrClosed
	}
	k, err := scanKey(s.getByDigest.QueryRowContext(ctx, d[:]))
	if err != nil {
		return apikey.Key{}, s.fail("getting key by digest", err)
	}
	return k, nil
}

// List returns the keys matching f, newest first, ties broken by ID
// descending. Every part of f is judged in SQL; pages are read by keyset
// over the index keys_list (created_at DESC, id DESC, and the columns
// filters read), so a page costs the same however deep in the listing it
// is, and a filter that matches few keys reads only the index.
func (s *Store) List(ctx context.Context, f keystore.Filter) ([]apikey.Key, error) {
	if s.closed.Load() {
		return nil, keystore.ErrClosed
	}
	if !f.After.IsZero() && !f.Before.IsZero() {
		return nil, errors.New("listing keys: a filter may not set both After and Before")
	}
	var (
		conds []string
		args  []any
	)
	switch f.Status {
	case 0:
	case apikey.StatusActive:
		conds, args = append(conds, "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)"), append(args, micros(f.Now))
	case apikey.StatusRevoked:
		conds = append(conds, "revoked_at IS NOT NULL")
	case apikey.StatusExpired:
		conds, args = append(conds, "revoked_at IS NULL AND expires_at <= ?"), append(args, micros(f.Now))
	default:
		return nil, fmt.Errorf("listing keys: unknown status %d", f.Status)
	}
	if f.Scope != 0 {
		if !f.Scope.Valid() {
			return nil, fmt.Errorf("listing keys: unknown scope %d", f.Scope)
		}
		conds, args = append(conds, "scope = ?"), append(args, f.Scope.String())
	}
	if f.Owner != "" {
		conds, args = append(conds, "owner = ?"), append(args, f.Owner)
	}
	if f.Query != "" {
		// instr, not LIKE: the text is matched as it is, with no pattern
		// characters to escape. SQLite's lower() folds ASCII letters only,
		// as keystore.FoldQuery does.
		conds, args = append(conds, "(id = ? OR instr(lower(name), ?) > 0)"), append(args, f.Query, keystore.FoldQuery(f.Query))
	}
	if !f.NotUsedSince.IsZero() {
		conds, args = append(conds, "NOT EXISTS (SELECT 1 FROM last_used WHERE key_id = keys.id AND at >= ?)"), append(args, micros(f.NotUsedSince))
	}
	order := "created_at DESC, id DESC"
	switch {
	case !f.After.IsZero():
		conds, args = append(conds, "(created_at, id) < (?, ?)"), append(args, micros(f.After.CreatedAt), f.After.ID)
	case !f.Before.IsZero():
		conds, args = append(conds, "(created_at, id) > (?, ?)"), append(args, micros(f.Before.CreatedAt), f.Before.ID)
		order = "created_at, id"
	}
	// The keys are chosen by row ID first, from the index keys_list
	// alone, which holds every column a filter reads; only the chosen
	// rows are then read from the table.
	choose := `SELECT rowid FROM keys`
	if len(conds) > 0 {
		choose += ` WHERE ` + strings.Join(conds, " AND ")
	}
	choose += ` ORDER BY ` + order
	if f.Limit > 0 {
		choose, args = choose+` LIMIT ?`, append(args, f.Limit)
	}
	query := `SELECT ` + keyColumns + ` FROM keys WHERE rowid IN (` + choose + `) ORDER BY created_at DESC, id DESC`
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, s.fail("listing keys", err)
	}
	defer rows.Close()
	var keys []apikey.Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, s.fail("listing keys", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("listing keys", err)
	}
	return keys, nil
}

// Revoke sets the key's RevokedAt to at unless it is set already.
func (s *Store) Revoke(ctx context.Context, id string, at time.Time, a keystore.Audit) (apikey.Key, error) {
	var (
		k      apikey.Key
		events []keystore.Event
	)
	err := s.write(ctx, "revoking key", func(tx *sql.Tx) error {
		var err error
		if k, err = getKey(ctx, tx, id); err != nil {
			return err
		}
		if !k.RevokedAt.IsZero() {
			return nil
		}
		k, events, err = revoke(ctx, tx, k, at, a)
		return err
	})
	if err != nil {
		return apikey.Key{}, err
	}
	s.events.Emit(events)
	return k, nil
}

// revoke revokes k, read in tx and not revoked, at at, and logs the
// change and its event.
func revoke(ctx context.Context, tx *sql.Tx, k apikey.Key, at time.Time, a keystore.Audit) (apikey.Key, []keystore.Event, error) {
	k.RevokedAt = fromMicros(micros(at))
	if _, err := tx.ExecContext(ctx, `UPDATE keys SET revoked_at = ? WHERE id = ?`, micros(at), k.ID); err != nil {
		return apikey.Key{}, nil, err
	}
	if err := logChanges(ctx, tx, k); err != nil {
		return apikey.Key{}, nil, err
	}
	events, err := insertEvents(ctx, tx, keystore.RevokedEvent(k, a))
	return k, events, err
}

// ReportLeak records a leak report on the key of digest d and, if
// keystore.LeakAction says so, revokes it, in one transaction.
func (s *Store) ReportLeak(ctx context.Context, d apikey.Digest, r keystore.LeakReport, at time.Time) (apikey.Key, string, error) {
	var (
		k      apikey.Key
		taken  string
		events []keystore.Event
	)
	err := s.write(ctx, "recording leak report", func(tx *sql.Tx) error {
		var err error
		k, err = scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE digest = ?`, d[:]))
		if err != nil {
			return err
		}
		taken = keystore.LeakAction(k, r, at)
		if events, err = insertEvents(ctx, tx, keystore.LeakEvent(k, r, taken, at)); err != nil {
			return err
		}
		if taken != keystore.LeakRevoked {
			return nil
		}
		var revoked []keystore.Event
		k, revoked, err = revoke(ctx, tx, k, at, keystore.Audit{Actor: keystore.LeakActor})
		events = append(events, revoked...)
		return err
	})
	if err != nil {
		return apikey.Key{}, "", err
	}
	s.events.Emit(events)
	return k, taken, nil
}

// Rotate creates next, marks the key id replaced by it, and makes the key
// id expire at oldExpiresAt unless it expires sooner, in one transaction.
// A zero oldExpiresAt leaves the old key's expiry as it is. Write
// transactions take the write lock at BEGIN, so the old key cannot change
// between being judged and being marked.
func (s *Store) Rotate(ctx context.Context, id string, next apikey.Key, oldExpiresAt time.Time, a keystore.Audit) (apikey.Key, error) {
	if err := keystore.CheckNew(next); err != nil {
		return apikey.Key{}, fmt.Errorf("rotating key: %w", err)
	}
	var (
		old    apikey.Key
		events []keystore.Event
	)
	err := s.write(ctx, "rotating key", func(tx *sql.Tx) error {
		var err error
		if old, err = getKey(ctx, tx, id); err != nil {
			return err
		}
		before := old
		if err := keystore.Rotatable(old, next.CreatedAt); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, next); err != nil {
			return err
		}
		old.ReplacedBy = next.ID
		if exp := fromMicros(micros(oldExpiresAt)); !exp.IsZero() && (old.ExpiresAt.IsZero() || exp.Before(old.ExpiresAt)) {
			old.ExpiresAt = exp
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET replaced_by = ?, expires_at = ? WHERE id = ?`,
			next.ID, nullMicros(old.ExpiresAt), id); err != nil {
			return err
		}
		if err := logChanges(ctx, tx, next, old); err != nil {
			return err
		}
		events, err = insertEvents(ctx, tx, keystore.RotationEvents(before, old, next, a)...)
		return err
	})
	if err != nil {
		return apikey.Key{}, err
	}
	s.events.Emit(events)
	return old, nil
}

// Update sets the fields p names on the key id and logs the change, in one
// transaction.
func (s *Store) Update(ctx context.Context, id string, p keystore.Patch, a keystore.Audit) (apikey.Key, error) {
	if err := keystore.CheckPatch(p); err != nil {
		return apikey.Key{}, fmt.Errorf("updating key: %w", err)
	}
	var (
		k      apikey.Key
		events []keystore.Event
	)
	err := s.write(ctx, "updating key", func(tx *sql.Tx) error {
		var err error
		if k, err = getKey(ctx, tx, id); err != nil {
			return err
		}
		if !k.RevokedAt.IsZero() {
			return keystore.ErrRevoked
		}
		if p.IsZero() {
			return nil
		}
		old := k
		k = p.Apply(k)
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET name = ?, metadata = ?, allowed_origins = ?, allowed_ips = ?, rate_limits = ? WHERE id = ?`,
			k.Name, keystore.EncodeMetadata(k.Metadata),
			keystore.EncodeList(k.AllowedOrigins), keystore.EncodeList(k.AllowedIPs), keystore.EncodeList(k.RateLimits), id); err != nil {
			return err
		}
		if err := logChanges(ctx, tx, k); err != nil {
			return err
		}
		events, err = insertEvents(ctx, tx, keystore.UpdatedEvent(old, k, p, a, time.Now()))
		return err
	})
	if err != nil {
		return apikey.Key{}, err
	}
	s.events.Emit(events)
	return k, nil
}

// TouchLastUsed records the last use of keys, never moving one backwards,
// in one transaction.
func (s *Store) TouchLastUsed(ctx context.Context, uses map[string]time.Time) error {
	return s.RecordUsage(ctx, uses, nil)
}

// Changes returns the changes after since, oldest first, at most limit of
// them (all if limit <= 0), and the current sequence. It returns
// keystore.ErrTooOld when a change after since was pruned, which includes
// since 0 once the first changes are gone.
func (s *Store) Changes(ctx context.Context, since int64, limit int) ([]keystore.Change, int64, error) {
	if s.closed.Load() {
		return nil, 0, keystore.ErrClosed
	}
	since = max(since, 0)
	if limit <= 0 {
		limit = -1 // SQLite's "no limit"
	}
	rows, err := s.changes.QueryContext(ctx, since, limit)
	if err != nil {
		return nil, 0, s.fail("reading changes", err)
	}
	defer rows.Close()
	var (
		changes     []keystore.Change
		oldest, cur int64
	)
	for rows.Next() {
		var (
			kind, a, b int64
			keyID      sql.NullString
			digest     []byte
		)
		if err := rows.Scan(&kind, &a, &b, &keyID, &digest); err != nil {
			return nil, 0, s.fail("reading changes", err)
		}
		if kind == 0 {
			oldest, cur = a, b
			continue
		}
		c := keystore.Change{Seq: a, KeyID: keyID.String}
		if len(digest) != len(c.Digest) {
			return nil, 0, fmt.Errorf("reading changes: change %d has a digest of %d bytes", a, len(digest))
		}
		copy(c.Digest[:], digest)
		changes = append(changes, c)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, s.fail("reading changes", err)
	}
	// Sequence numbers have no gaps (a rolled back insert rolls back
	// AUTOINCREMENT too), so the changes up to oldest-1 were pruned.
	if cur > 0 && since < oldest-1 {
		return nil, cur, keystore.ErrTooOld
	}
	slices.SortFunc(changes, func(a, b keystore.Change) int { return cmp.Compare(a.Seq, b.Seq) })
	return changes, cur, nil
}

// Close closes the store. Closing it again does nothing.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	for _, stmt := range []*sql.Stmt{s.getByID, s.getByDigest, s.changes} {
		stmt.Close()
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing key store: %w", err)
	}
	return nil
}

// write runs fn in a write transaction. Errors of package keystore come
// back as they are; any other is wrapped with op.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if s.closed.Load() {
		return keystore.ErrClosed
	}
	select {
	case s.writing <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	defer func() { <-s.writing }()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(op, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return s.fail(op, err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail(op, err)
	}
	return nil
}

// fail returns err as the caller should see it: the errors of package
// keystore as they are, anything after Close as keystore.ErrClosed (the
// errors of database/sql say less), the rest wrapped with op.
func (s *Store) fail(op string, err error) error {
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return keystore.ErrNotFound
	case errors.Is(err, keystore.ErrNotFound), errors.Is(err, keystore.ErrExists), errors.Is(err, keystore.ErrRevoked),
		errors.Is(err, keystore.ErrReplaced), errors.Is(err, keystore.ErrExpired):
		return err
	case s.closed.Load():
		return keystore.ErrClosed
	}
	return fmt.Errorf("%s: %w", op, err)
}

// insertKey stores k, returning keystore.ErrExists if its ID or digest is
// taken.
func insertKey(ctx context.Context, tx *sql.Tx, k apikey.Key) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO keys (`+insertColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], micros(k.CreatedAt), nullMicros(k.ExpiresAt),
		sql.NullString{String: k.Owner, Valid: k.Owner != ""}, keystore.EncodeMetadata(k.Metadata),
		k.CreatedBy.Type, k.CreatedBy.ID,
		keystore.EncodeList(k.AllowedOrigins), keystore.EncodeList(k.AllowedIPs), keystore.EncodeList(k.RateLimits))
	var se *sqlite.Error
	if errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
		return keystore.ErrExists
	}
	return err
}

// getKey returns the key id as the transaction sees it.
func getKey(ctx context.Context, tx *sql.Tx, id string) (apikey.Key, error) {
	k, err := scanKey(tx.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return apikey.Key{}, keystore.ErrNotFound
	}
	return k, err
}

// logChanges writes a change for each key, and prunes the changes older
// than changeRetention but the newest.
func logChanges(ctx context.Context, tx *sql.Tx, keys ...apikey.Key) error {
	now := time.Now()
	for _, k := range keys {
		if _, err := tx.ExecContext(ctx, `INSERT INTO changes (key_id, digest, changed_at) VALUES (?, ?, ?)`,
			k.ID, k.Digest[:], micros(now)); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, `DELETE FROM changes WHERE changed_at < ? AND seq < (SELECT max(seq) FROM changes)`,
		micros(now.Add(-changeRetention)))
	return err
}

// scanKey reads a row of keyColumns.
func scanKey(row interface{ Scan(dest ...any) error }) (apikey.Key, error) {
	var (
		k                         apikey.Key
		scope, expiry             string
		digest                    []byte
		created                   int64
		expires, revoked, lastUse sql.NullInt64
		replacedBy, owner         sql.NullString
		metadata                  string
		origins, ips, limits      string
	)
	if err := row.Scan(&k.ID, &k.Name, &scope, &expiry, &k.Hint, &digest, &created, &expires, &revoked, &lastUse, &replacedBy,
		&owner, &metadata, &k.CreatedBy.Type, &k.CreatedBy.ID, &origins, &ips, &limits); err != nil {
		return apikey.Key{}, err
	}
	var err error
	k.Owner = owner.String
	if k.Metadata, err = keystore.DecodeMetadata(metadata); err != nil {
		return apikey.Key{}, fmt.Errorf("reading key %s: %w", k.ID, err)
	}
	for _, l := range []struct {
		dst *[]string
		src string
	}{{&k.AllowedOrigins, origins}, {&k.AllowedIPs, ips}, {&k.RateLimits, limits}} {
		if *l.dst, err = keystore.DecodeList(l.src); err != nil {
			return apikey.Key{}, fmt.Errorf("reading key %s: %w", k.ID, err)
		}
	}
	if k.Scope, err = apikey.ParseScope(scope); err != nil {
		return apikey.Key{}, fmt.Errorf("reading key %s: %w", k.ID, err)
	}
	if k.Expiry, err = apikey.ParseExpiry(expiry); err != nil {
		return apikey.Key{}, fmt.Errorf("reading key %s: %w", k.ID, err)
	}
	if len(digest) != len(k.Digest) {
		return apikey.Key{}, fmt.Errorf("reading key %s: digest of %d bytes", k.ID, len(digest))
	}
	copy(k.Digest[:], digest)
	k.CreatedAt = fromMicros(created)
	k.ExpiresAt = fromNullMicros(expires)
	k.RevokedAt = fromNullMicros(revoked)
	k.LastUsedAt = fromNullMicros(lastUse)
	k.ReplacedBy = replacedBy.String
	return k, nil
}

// micros returns t as stored: unix microseconds, rounded down.
func micros(t time.Time) int64 { return t.UnixMicro() }

// nullMicros is micros with NULL for the zero time.
func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

// fromMicros returns the UTC time of unix microseconds us.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// fromNullMicros is fromMicros with the zero time for NULL.
func fromNullMicros(us sql.NullInt64) time.Time {
	if !us.Valid {
		return time.Time{}
	}
	return fromMicros(us.Int64)
}

// Interface guards
var _ keystore.Store = (*Store)(nil)
