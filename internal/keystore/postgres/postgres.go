// Package postgres is the PostgreSQL key store, shared by several gateway
// instances. It creates and migrates its schema on open, keeps a change
// log ordered by one store-wide sequence, and pushes changes made by any
// instance to the others with LISTEN/NOTIFY (keystore.Notifier).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// channel is the NOTIFY channel every change is announced on, with the
// new sequence number as payload.
const channel = "keygate_changes"

// keepChanges is how long the change log keeps a change before a write
// prunes it. Readers that fall further behind get keystore.ErrTooOld.
const keepChanges = time.Hour

// Store is a keystore.Store backed by PostgreSQL. It is safe for
// concurrent use, by goroutines and by several processes sharing the
// database.
type Store struct {
	pool   *pgxpool.Pool
	logger *zap.Logger

	closed    atomic.Bool
	closeOnce sync.Once

	notices chan struct{}
	applied keystore.Broadcast // AppliedNotices
	cancel  context.CancelFunc // stops the listener
	done    chan struct{}      // closed when the listener has stopped

	// events hears of the audit events of each committed change.
	events keystore.EventHook
}

// options are the hooks tests use to reach into Open.
type options struct {
	// dial connects the listener; nil means pgx.ConnectConfig with the
	// pool's connection settings.
	dial func(ctx context.Context) (*pgx.Conn, error)
}

// Open connects to the PostgreSQL database named by dsn (a URL or
// keyword/value string, as libpq and pgx accept, including pool settings
// such as pool_max_conns), creates or migrates the schema, and starts
// listening for the changes other instances make. A nil logger discards
// the listener's logs. ctx bounds the opening only.
func Open(ctx context.Context, dsn string, logger *zap.Logger) (*Store, error) {
	return open(ctx, dsn, logger, options{})
}

func open(ctx context.Context, dsn string, logger *zap.Logger, opts options) (*Store, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	// pgx redacts the password from its parse errors; the DSN itself is
	// never put in an error, as it may hold one.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("opening postgres key store: %w", err)
	}
	// Name the sessions, so that a database administrator can tell
	// keygate's apart in pg_stat_activity, unless the DSN names them.
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = DefaultApplicationName
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening postgres key store: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening postgres key store: %w", explainMissingDatabase(err, &cfg.ConnConfig.Config))
	}
	if opts.dial == nil {
		connCfg := cfg.ConnConfig
		opts.dial = func(ctx context.Context) (*pgx.Conn, error) {
			return pgx.ConnectConfig(ctx, connCfg.Copy())
		}
	}
	// The first LISTEN happens here, so that every change committed after
	// Open returns is announced, and a database that refuses LISTEN fails
	// Open rather than a background loop.
	conn, err := listen(ctx, opts.dial)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening postgres key store: listening for changes: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		pool:    pool,
		logger:  logger,
		notices: make(chan struct{}, 1),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	l := &listener{dial: opts.dial, notify: s.notify, applied: s.applied.Notify, logger: logger}
	go func() {
		defer close(s.done)
		l.run(lctx, conn)
	}()
	return s, nil
}

// DefaultApplicationName is the application_name of keygate's sessions
// when the DSN sets none.
const DefaultApplicationName = "keygate"

// Notices implements keystore.Notifier: a receive means the sequence may
// have moved. A notice is also sent after the listener (re)connects, as
// changes may have been missed while it was away.
func (s *Store) Notices() <-chan struct{} { return s.notices }

// notify sends a notice unless one is already pending.
func (s *Store) notify() {
	select {
	case s.notices <- struct{}{}:
	default:
	}
}

// Close stops the listener, waits for it, and closes the connections.
// Closing again does nothing.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.cancel()
		<-s.done
		close(s.notices)
		s.pool.Close()
	})
	return nil
}

// keyColumns are the columns scanKey reads, in its order.
const keyColumns = `id, name, scope, expiry, hint, digest, created_at, expires_at, revoked_at, last_used_at, replaced_by,
	owner, metadata, created_by_type, created_by_id, allowed_origins, allowed_ips, rate_limits`

// Create implements keystore.Store.
func (s *Store) Create(ctx context.Context, k apikey.Key, a keystore.Audit) error {
	if err := keystore.CheckNew(k); err != nil {
		return fmt.Errorf("creating key: %w", err)
	}
	var events []keystore.Event
	err := s.write(ctx, func(tx pgx.Tx) error {
		if err := insertKey(ctx, tx, k); err != nil {
			return err
		}
		var err error
		if events, err = insertEvents(ctx, tx, keystore.CreatedEvent(k, a, nil)); err != nil {
			return err
		}
		return recordChanges(ctx, tx, k)
	})
	if err != nil {
		return s.fail("creating key "+k.ID, err)
	}
	s.events.Emit(events)
	return nil
}

// Get implements keystore.Store.
func (s *Store) Get(ctx context.Context, id string) (apikey.Key, error) {
	var k apikey.Key
	err := s.read(ctx, func() error {
		var err error
		k, err = scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM keygate_keys WHERE id = $1`, id))
		return err
	})
	if err != nil {
		return apikey.Key{}, s.fail("getting key "+id, err)
	}
	return k, nil
}

// GetByDigest implements keystore.Store.
func (s *Store) GetByDigest(ctx context.Context, d apikey.Digest) (apikey.Key, error) {
	var k apikey.Key
	err := s.read(ctx, func() error {
		var err error
		k, err = scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM keygate_keys WHERE digest = $1`, d[:]))
		return err
	})
	if err != nil {
		return apikey.Key{}, s.fail("getting key by digest", err)
	}
	return k, nil
}

// List implements keystore.Store. Every part of the filter is judged in
// SQL; as stored times are whole microseconds, "expires_at <= now" there
// agrees with apikey.Key.Expired in Go. Pages are read by keyset over the
// index keygate_keys_created_at (created_at DESC, id DESC).
func (s *Store) List(ctx context.Context, f keystore.Filter) ([]apikey.Key, error) {
	if !f.After.IsZero() && !f.Before.IsZero() {
		return nil, errors.New("listing keys: a filter may not set both After and Before")
	}
	var (
		conds []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	switch f.Status {
	case 0:
	case apikey.StatusActive:
		conds = append(conds, `revoked_at IS NULL AND (expires_at IS NULL OR expires_at > `+arg(f.Now)+`)`)
	case apikey.StatusRevoked:
		conds = append(conds, `revoked_at IS NOT NULL`)
	case apikey.StatusExpired:
		conds = append(conds, `revoked_at IS NULL AND expires_at <= `+arg(f.Now))
	default:
		return nil, fmt.Errorf("listing keys: unknown status %v", f.Status)
	}
	if f.Scope != 0 {
		if !f.Scope.Valid() {
			return nil, fmt.Errorf("listing keys: unknown scope %d", f.Scope)
		}
		conds = append(conds, `scope = `+arg(f.Scope.String()))
	}
	if f.Owner != "" {
		conds = append(conds, `owner = `+arg(f.Owner))
	}
	if f.Query != "" {
		// strpos, not LIKE: the text is matched as it is, with no pattern
		// characters to escape. translate folds ASCII letters only, as
		// keystore.FoldQuery does and SQLite's lower() does; lower() or
		// ILIKE here would fold by the collation, differently from SQLite.
		conds = append(conds, `(id = `+arg(f.Query)+` OR strpos(translate(name, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'), `+arg(keystore.FoldQuery(f.Query))+`) > 0)`)
	}
	if !f.NotUsedSince.IsZero() {
		conds = append(conds, `(last_used_at IS NULL OR last_used_at < `+arg(f.NotUsedSince)+`)`)
	}
	order := `created_at DESC, id DESC`
	switch {
	case !f.After.IsZero():
		conds = append(conds, `(created_at, id) < (`+arg(f.After.CreatedAt.Truncate(time.Microsecond))+`, `+arg(f.After.ID)+`)`)
	case !f.Before.IsZero():
		conds = append(conds, `(created_at, id) > (`+arg(f.Before.CreatedAt.Truncate(time.Microsecond))+`, `+arg(f.Before.ID)+`)`)
		order = `created_at, id`
	}
	query := `SELECT ` + keyColumns + ` FROM keygate_keys`
	if len(conds) > 0 {
		query += ` WHERE ` + strings.Join(conds, ` AND `)
	}
	query += ` ORDER BY ` + order
	if f.Limit > 0 {
		query += ` LIMIT ` + arg(f.Limit)
	}
	if !f.Before.IsZero() {
		// The keys nearest to Before were read oldest first; list them
		// newest first like every other page.
		query = `SELECT * FROM (` + query + `) AS page ORDER BY created_at DESC, id DESC`
	}
	var keys []apikey.Key
	err := s.read(ctx, func() error {
		rows, err := s.pool.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		keys, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (apikey.Key, error) { return scanKey(row) })
		return err
	})
	if err != nil {
		return nil, s.fail("listing keys", err)
	}
	return keys, nil
}

// Revoke implements keystore.Store.
func (s *Store) Revoke(ctx context.Context, id string, at time.Time, a keystore.Audit) (apikey.Key, error) {
	var (
		k      apikey.Key
		events []keystore.Event
	)
	err := s.write(ctx, func(tx pgx.Tx) error {
		var err error
		k, err = scanKey(tx.QueryRow(ctx, `UPDATE keygate_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING `+keyColumns, id, at))
		if errors.Is(err, keystore.ErrNotFound) {
			// Missing, or revoked already: then nothing changes.
			k, err = scanKey(tx.QueryRow(ctx, `SELECT `+keyColumns+` FROM keygate_keys WHERE id = $1`, id))
			return err
		}
		if err != nil {
			return err
		}
		if events, err = insertEvents(ctx, tx, keystore.RevokedEvent(k, a)); err != nil {
			return err
		}
		return recordChanges(ctx, tx, k)
	})
	if err != nil {
		return apikey.Key{}, s.fail("revoking key "+id, err)
	}
	s.events.Emit(events)
	return k, nil
}

// ReportLeak implements keystore.Store. The key's row is locked (FOR
// UPDATE) before it is judged, so a concurrent revocation or rotation
// either comes first and is seen, or waits.
func (s *Store) ReportLeak(ctx context.Context, d apikey.Digest, r keystore.LeakReport, at time.Time) (apikey.Key, string, error) {
	var (
		k      apikey.Key
		taken  string
		events []keystore.Event
	)
	err := s.write(ctx, func(tx pgx.Tx) error {
		var err error
		k, err = scanKey(tx.QueryRow(ctx, `SELECT `+keyColumns+` FROM keygate_keys WHERE digest = $1 FOR UPDATE`, d[:]))
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
		k, err = scanKey(tx.QueryRow(ctx, `UPDATE keygate_keys SET revoked_at = $2 WHERE id = $1 RETURNING `+keyColumns, k.ID, at))
		if err != nil {
			return err
		}
		revoked, err := insertEvents(ctx, tx, keystore.RevokedEvent(k, keystore.Audit{Actor: keystore.LeakActor}))
		if err != nil {
			return err
		}
		events = append(events, revoked...)
		return recordChanges(ctx, tx, k)
	})
	if err != nil {
		return apikey.Key{}, "", s.fail("recording leak report", err)
	}
	s.events.Emit(events)
	return k, taken, nil
}

// Rotate implements keystore.Store. Two changes are recorded: next (a
// digest a cache may hold as unknown) and the old key. The old key's row
// is locked (FOR UPDATE) before it is judged, so a concurrent rotation or
// revocation of it waits for this one and then sees it replaced.
func (s *Store) Rotate(ctx context.Context, id string, next apikey.Key, oldExpiresAt time.Time, a keystore.Audit) (apikey.Key, error) {
	if err := keystore.CheckNew(next); err != nil {
		return apikey.Key{}, fmt.Errorf("rotating key: %w", err)
	}
	var (
		old    apikey.Key
		events []keystore.Event
	)
	err := s.write(ctx, func(tx pgx.Tx) error {
		var err error
		old, err = scanKey(tx.QueryRow(ctx, `SELECT `+keyColumns+` FROM keygate_keys WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		if err := keystore.Rotatable(old, next.CreatedAt); err != nil {
			return err
		}
		if err := insertKey(ctx, tx, next); err != nil {
			return err
		}
		before := old
		expiresAt := old.ExpiresAt
		if !oldExpiresAt.IsZero() && (expiresAt.IsZero() || oldExpiresAt.Before(expiresAt)) {
			expiresAt = oldExpiresAt
		}
		old, err = scanKey(tx.QueryRow(ctx, `UPDATE keygate_keys SET replaced_by = $2, expires_at = $3 WHERE id = $1 RETURNING `+keyColumns,
			id, next.ID, nullTime(expiresAt)))
		if err != nil {
			return err
		}
		if events, err = insertEvents(ctx, tx, keystore.RotationEvents(before, old, next, a)...); err != nil {
			return err
		}
		return recordChanges(ctx, tx, next, old)
	})
	if err != nil {
		return apikey.Key{}, s.fail("rotating key "+id, err)
	}
	s.events.Emit(events)
	return old, nil
}

// Update implements keystore.Store. The key's row is locked (FOR UPDATE)
// before it is judged, so a concurrent revocation either comes first and
// is seen, or waits for this update.
func (s *Store) Update(ctx context.Context, id string, p keystore.Patch, a keystore.Audit) (apikey.Key, error) {
	if err := keystore.CheckPatch(p); err != nil {
		return apikey.Key{}, fmt.Errorf("updating key: %w", err)
	}
	var (
		k      apikey.Key
		events []keystore.Event
	)
	err := s.write(ctx, func(tx pgx.Tx) error {
		var err error
		k, err = scanKey(tx.QueryRow(ctx, `SELECT `+keyColumns+` FROM keygate_keys WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
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
		if _, err := tx.Exec(ctx, `UPDATE keygate_keys SET name = $2, metadata = $3, allowed_origins = $4, allowed_ips = $5, rate_limits = $6 WHERE id = $1`,
			id, k.Name, keystore.EncodeMetadata(k.Metadata),
			keystore.EncodeList(k.AllowedOrigins), keystore.EncodeList(k.AllowedIPs), keystore.EncodeList(k.RateLimits)); err != nil {
			return err
		}
		if events, err = insertEvents(ctx, tx, keystore.UpdatedEvent(old, k, p, a, time.Now())); err != nil {
			return err
		}
		return recordChanges(ctx, tx, k)
	})
	if err != nil {
		return apikey.Key{}, s.fail("updating key "+id, err)
	}
	s.events.Emit(events)
	return k, nil
}

// TouchLastUsed implements keystore.Store with one statement for the whole
// batch. The rows are locked in ID order first, so that instances
// flushing overlapping batches at once wait for each other instead of
// deadlocking; rows whose stored time is already as new are not touched.
func (s *Store) TouchLastUsed(ctx context.Context, uses map[string]time.Time) error {
	if s.closed.Load() {
		return keystore.ErrClosed
	}
	ids := make([]string, 0, len(uses))
	for id, t := range uses {
		if !t.IsZero() {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Strings(ids)
	times := make([]time.Time, len(ids))
	for i, id := range ids {
		times[i] = uses[id]
	}
	err := s.read(ctx, func() error {
		_, err := s.pool.Exec(ctx, touchLastUsed, ids, times)
		return err
	})
	if err != nil {
		return s.fail("recording last use of keys", err)
	}
	return nil
}

// touchLastUsed sets the last-used times $2 of the keys $1, sorted by ID,
// where they are newer than the stored ones.
const touchLastUsed = `
WITH u AS (
	SELECT id, t FROM unnest($1::text[], $2::timestamptz[]) AS u(id, t)
), locked AS (
	SELECT k.id, u.t FROM keygate_keys k JOIN u ON u.id = k.id
	WHERE k.last_used_at IS NULL OR k.last_used_at < u.t
	ORDER BY k.id
	FOR UPDATE OF k
)
UPDATE keygate_keys k SET last_used_at = locked.t
FROM locked
WHERE k.id = locked.id AND (k.last_used_at IS NULL OR k.last_used_at < locked.t)`

// Changes implements keystore.Store. The current sequence, the pruning
// floor and the changes are read by one statement, so from one snapshot:
// as change-producing transactions commit in sequence order, a snapshot
// that holds change N holds every change before it.
func (s *Store) Changes(ctx context.Context, since int64, limit int) ([]keystore.Change, int64, error) {
	if limit <= 0 {
		limit = 0 // LIMIT NULL: no limit
	}
	var (
		changes []keystore.Change
		current int64
	)
	err := s.read(ctx, func() error {
		changes = changes[:0]
		rows, err := s.pool.Query(ctx, `
SELECT n.seq, n.pruned, c.seq, c.key_id, c.digest
FROM keygate_change_counter n
LEFT JOIN LATERAL (
	SELECT seq, key_id, digest FROM keygate_changes
	WHERE seq > $1 AND n.pruned <= $1
	ORDER BY seq
	LIMIT NULLIF($2::bigint, 0)
) c ON true
ORDER BY c.seq`, since, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		var pruned int64
		for rows.Next() {
			var (
				seq    *int64
				keyID  *string
				digest []byte
			)
			if err := rows.Scan(&current, &pruned, &seq, &keyID, &digest); err != nil {
				return err
			}
			if seq == nil {
				continue
			}
			c := keystore.Change{Seq: *seq, KeyID: *keyID}
			if len(digest) != len(c.Digest) {
				return fmt.Errorf("change %d has a digest of %d bytes", *seq, len(digest))
			}
			copy(c.Digest[:], digest)
			changes = append(changes, c)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if since < pruned {
			return keystore.ErrTooOld
		}
		return nil
	})
	if errors.Is(err, keystore.ErrTooOld) {
		return nil, current, keystore.ErrTooOld
	}
	if err != nil {
		return nil, 0, s.fail("reading key changes", err)
	}
	return changes, current, nil
}

// recordChanges, in a transaction that changed keys, appends one change
// per key to the log, prunes the log, and announces the new sequence on
// commit. The counter update comes last in the transaction but one round
// trip, as its row lock serialises every writer until commit.
func recordChanges(ctx context.Context, tx pgx.Tx, keys ...apikey.Key) error {
	var seq int64
	if err := tx.QueryRow(ctx, `UPDATE keygate_change_counter SET seq = seq + $1 RETURNING seq`, len(keys)).Scan(&seq); err != nil {
		return err
	}
	ids := make([]string, len(keys))
	digests := make([][]byte, len(keys))
	for i := range keys {
		ids[i] = keys[i].ID
		digests[i] = keys[i].Digest[:]
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO keygate_changes (seq, key_id, digest)
SELECT $1::bigint + u.n, u.id, u.digest FROM unnest($2::text[], $3::bytea[]) WITH ORDINALITY AS u(id, digest, n)`,
		seq-int64(len(keys)), ids, digests)
	b.Queue(`WITH d AS (
	DELETE FROM keygate_changes WHERE seq < $1 AND changed_at < clock_timestamp() - $2::bigint * interval '1 microsecond' RETURNING seq
)
UPDATE keygate_change_counter SET pruned = GREATEST(pruned, (SELECT max(seq) FROM d))`, seq, keepChanges.Microseconds())
	b.Queue(`SELECT pg_notify($1, $2)`, channel, fmt.Sprint(seq))
	return tx.SendBatch(ctx, b).Close()
}

// insertKey inserts k, which keystore.CheckNew accepted; an ID or digest
// already stored is ErrExists.
func insertKey(ctx context.Context, tx pgx.Tx, k apikey.Key) error {
	var owner *string
	if k.Owner != "" {
		owner = &k.Owner
	}
	_, err := tx.Exec(ctx, `INSERT INTO keygate_keys (`+keyColumns+`)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, NULL, $9, $10, $11, $12, $13, $14, $15)`,
		k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:],
		k.CreatedAt, nullTime(k.ExpiresAt),
		owner, keystore.EncodeMetadata(k.Metadata), k.CreatedBy.Type, k.CreatedBy.ID,
		keystore.EncodeList(k.AllowedOrigins), keystore.EncodeList(k.AllowedIPs), keystore.EncodeList(k.RateLimits))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return keystore.ErrExists
	}
	return err
}

// scanKey reads the keyColumns of one row; no row is ErrNotFound.
func scanKey(row pgx.Row) (apikey.Key, error) {
	var (
		k                                apikey.Key
		scope, expiry                    string
		digest                           []byte
		expiresAt, revokedAt, lastUsedAt *time.Time
		replacedBy, owner                *string
		metadata, origins, ips, limits   string
	)
	err := row.Scan(&k.ID, &k.Name, &scope, &expiry, &k.Hint, &digest, &k.CreatedAt, &expiresAt, &revokedAt, &lastUsedAt, &replacedBy,
		&owner, &metadata, &k.CreatedBy.Type, &k.CreatedBy.ID, &origins, &ips, &limits)
	if errors.Is(err, pgx.ErrNoRows) {
		return apikey.Key{}, keystore.ErrNotFound
	}
	if err != nil {
		return apikey.Key{}, err
	}
	if k.Scope, err = apikey.ParseScope(scope); err != nil {
		return apikey.Key{}, fmt.Errorf("key %s: %w", k.ID, err)
	}
	if k.Expiry, err = apikey.ParseExpiry(expiry); err != nil {
		return apikey.Key{}, fmt.Errorf("key %s: %w", k.ID, err)
	}
	if len(digest) != len(k.Digest) {
		return apikey.Key{}, fmt.Errorf("key %s has a digest of %d bytes", k.ID, len(digest))
	}
	copy(k.Digest[:], digest)
	k.CreatedAt = k.CreatedAt.UTC()
	k.ExpiresAt = utc(expiresAt)
	k.RevokedAt = utc(revokedAt)
	k.LastUsedAt = utc(lastUsedAt)
	if replacedBy != nil {
		k.ReplacedBy = *replacedBy
	}
	if owner != nil {
		k.Owner = *owner
	}
	if k.Metadata, err = keystore.DecodeMetadata(metadata); err != nil {
		return apikey.Key{}, fmt.Errorf("key %s: %w", k.ID, err)
	}
	for _, l := range []struct {
		dst *[]string
		src string
	}{{&k.AllowedOrigins, origins}, {&k.AllowedIPs, ips}, {&k.RateLimits, limits}} {
		if *l.dst, err = keystore.DecodeList(l.src); err != nil {
			return apikey.Key{}, fmt.Errorf("key %s: %w", k.ID, err)
		}
	}
	return k, nil
}

// nullTime maps the zero time, "not set", to NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// utc maps NULL to the zero time and anything else to UTC.
func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// read runs fn, a statement that can run twice without harm, and runs it
// again on fresh connections if it failed because its connection was lost
// (the server restarted, or an administrator ended the session): pgxpool
// checks only connections idle for over a second, so after a restart the
// busiest ones fail first.
func (s *Store) read(ctx context.Context, fn func() error) error {
	if s.closed.Load() {
		return keystore.ErrClosed
	}
	err := fn()
	if connectionLost(ctx, err) {
		s.pool.Reset()
		err = fn()
	}
	return err
}

// write runs fn in a transaction and commits it. A transaction whose BEGIN
// failed on a lost connection committed nothing, so it is retried once on
// fresh connections; any later failure is returned as is.
func (s *Store) write(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if s.closed.Load() {
		return keystore.ErrClosed
	}
	tx, err := s.pool.Begin(ctx)
	if connectionLost(ctx, err) {
		s.pool.Reset()
		tx, err = s.pool.Begin(ctx)
	}
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it does nothing
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// fail returns the error of operation op: the keystore sentinels as they
// are, ErrClosed if the store was closed meanwhile, anything else wrapped.
func (s *Store) fail(op string, err error) error {
	switch {
	case errors.Is(err, keystore.ErrNotFound), errors.Is(err, keystore.ErrExists),
		errors.Is(err, keystore.ErrRevoked), errors.Is(err, keystore.ErrReplaced),
		errors.Is(err, keystore.ErrExpired), errors.Is(err, keystore.ErrClosed),
		errors.Is(err, keystore.ErrTooOld):
		return err
	case s.closed.Load():
		return keystore.ErrClosed
	}
	return fmt.Errorf("%s: %w", op, err)
}

// connectionLost reports whether err means the connection it came from is
// gone, rather than the statement failing or ctx ending.
func connectionLost(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 57P: admin_shutdown, crash_shutdown, cannot_connect_now
		// (sent as the server ends a session); class 08: connection
		// exceptions.
		return len(pgErr.Code) == 5 && (pgErr.Code[:3] == "57P" || pgErr.Code[:2] == "08")
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || pgconn.SafeToRetry(err)
}

// Interface guards
var (
	_ keystore.Store    = (*Store)(nil)
	_ keystore.Notifier = (*Store)(nil)
	_ keystore.Registry = (*Store)(nil)
)
