package postgres

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docana/keygate/internal/keystore"
)

// pruneLock is the key of the advisory lock that lets one instance at a
// time prune usage and events: the others skip their turn, as the work
// is the same ("keygate" + 1).
const pruneLock = migrationLock + 1

// RecordUsage implements keystore.Store: last-used times and usage
// counts, rolled up into every step, in one transaction. The usage rows
// are upserted in keystore.Rollup's order, and the keys locked in ID
// order, so that instances writing overlapping batches wait for each
// other instead of deadlocking.
func (s *Store) RecordUsage(ctx context.Context, uses map[string]time.Time, counts []keystore.UsageCount) error {
	if s.closed.Load() {
		return keystore.ErrClosed
	}
	ids := make([]string, 0, len(uses))
	for id, t := range uses {
		if !t.IsZero() {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	times := make([]time.Time, len(ids))
	for i, id := range ids {
		times[i] = uses[id]
	}
	rows := keystore.Rollup(counts)
	if len(ids) == 0 && len(rows) == 0 {
		return nil
	}
	var (
		keyIDs  = make([]string, len(rows))
		steps   = make([]int32, len(rows))
		starts  = make([]time.Time, len(rows))
		results = make([]string, len(rows))
		ns      = make([]int64, len(rows))
	)
	for i, r := range rows {
		keyIDs[i], steps[i], starts[i], results[i], ns[i] = r.KeyID, int32(r.Step/time.Second), r.Start, r.Result, r.N
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		if len(ids) > 0 {
			b.Queue(touchLastUsed, ids, times)
		}
		if len(rows) > 0 {
			b.Queue(`INSERT INTO keygate_usage (key_id, step, start, result, n)
SELECT key_id, step, start, result, n FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::text[], $5::bigint[]) WITH ORDINALITY AS u(key_id, step, start, result, n, o)
ORDER BY o
ON CONFLICT (key_id, step, start, result) DO UPDATE SET n = keygate_usage.n + excluded.n`, keyIDs, steps, starts, results, ns)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return s.fail("recording usage", err)
	}
	return nil
}

// Usage implements keystore.Store.
func (s *Store) Usage(ctx context.Context, id string, step time.Duration, from, to time.Time) ([]keystore.UsageRow, error) {
	var out []keystore.UsageRow
	err := s.read(ctx, func() error {
		rows, err := s.pool.Query(ctx, `SELECT start, result, n FROM keygate_usage
WHERE key_id = $1 AND step = $2 AND start >= $3 AND start < $4 ORDER BY start, result`, id, int32(step/time.Second), from, to)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (keystore.UsageRow, error) {
			var r keystore.UsageRow
			err := row.Scan(&r.Start, &r.Result, &r.N)
			r.Start = r.Start.UTC()
			return r, err
		})
		return err
	})
	if err != nil {
		return nil, s.fail("reading usage", err)
	}
	return out, nil
}

// UsageByKey implements keystore.Store.
func (s *Store) UsageByKey(ctx context.Context, owner string, step time.Duration, from, to time.Time) ([]keystore.KeyTotal, error) {
	q := `SELECT u.key_id, sum(CASE WHEN u.result = 'ok' THEN u.n ELSE 0 END)::bigint, sum(CASE WHEN u.result = 'ok' THEN 0 ELSE u.n END)::bigint
FROM keygate_usage u`
	args := []any{int32(step / time.Second), from, to}
	if owner != "" {
		q += ` JOIN keygate_keys k ON k.id = u.key_id AND k.owner = $4`
		args = append(args, owner)
	}
	q += ` WHERE u.step = $1 AND u.start >= $2 AND u.start < $3 GROUP BY u.key_id ORDER BY sum(u.n) DESC, u.key_id`
	var out []keystore.KeyTotal
	err := s.read(ctx, func() error {
		rows, err := s.pool.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (keystore.KeyTotal, error) {
			var t keystore.KeyTotal
			err := row.Scan(&t.KeyID, &t.OK, &t.Refused)
			return t, err
		})
		return err
	})
	if err != nil {
		return nil, s.fail("reading usage by key", err)
	}
	return out, nil
}

// Prune implements keystore.Store. One instance prunes at a time: the
// others find the advisory lock taken and skip their turn.
func (s *Store) Prune(ctx context.Context, now time.Time, r keystore.Retention) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, pruneLock).Scan(&got); err != nil || !got {
			return err
		}
		for _, p := range []struct {
			step time.Duration
			keep time.Duration
		}{{keystore.StepMinute, r.Minute}, {keystore.StepHour, r.Hour}, {keystore.StepDay, r.Day}} {
			if p.keep <= 0 {
				continue
			}
			if _, err := tx.Exec(ctx, `DELETE FROM keygate_usage WHERE step = $1 AND start < $2`,
				int32(p.step/time.Second), now.Add(-p.keep)); err != nil {
				return err
			}
		}
		if r.Audit > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM keygate_audit WHERE at < $1`, now.Add(-r.Audit)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.fail("pruning usage and audit events", err)
	}
	return nil
}

const eventColumns = `seq, at, action, key_id, owner, actor_type, actor_id, remote_ip, user_agent, changes, details`

// Audit implements keystore.Store.
func (s *Store) Audit(ctx context.Context, f keystore.AuditFilter) ([]keystore.Event, error) {
	var (
		conds []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Owner != "" {
		conds = append(conds, `owner = `+arg(f.Owner))
	}
	if f.KeyID != "" {
		conds = append(conds, `key_id = `+arg(f.KeyID))
	}
	if f.Action != "" {
		conds = append(conds, `action = `+arg(f.Action))
	}
	if !f.Since.IsZero() {
		conds = append(conds, `at >= `+arg(f.Since))
	}
	if f.Before > 0 {
		conds = append(conds, `seq < `+arg(f.Before))
	}
	q := `SELECT ` + eventColumns + ` FROM keygate_audit`
	if len(conds) > 0 {
		q += ` WHERE ` + strings.Join(conds, ` AND `)
	}
	q += ` ORDER BY seq DESC`
	if f.Limit > 0 {
		q += ` LIMIT ` + arg(f.Limit)
	}
	var out []keystore.Event
	err := s.read(ctx, func() error {
		rows, err := s.pool.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (keystore.Event, error) {
			var (
				e                keystore.Event
				owner            *string
				changes, details string
			)
			if err := row.Scan(&e.ID, &e.At, &e.Action, &e.KeyID, &owner, &e.Actor.Type, &e.Actor.ID,
				&e.RemoteIP, &e.UserAgent, &changes, &details); err != nil {
				return e, err
			}
			e.At = e.At.UTC()
			if owner != nil {
				e.Owner = *owner
			}
			var err error
			if e.Changes, err = keystore.DecodeChanges(changes); err != nil {
				return e, fmt.Errorf("audit event %d: %w", e.ID, err)
			}
			if e.Details, err = keystore.DecodeMetadata(details); err != nil {
				return e, fmt.Errorf("audit event %d: %w", e.ID, err)
			}
			return e, nil
		})
		return err
	})
	if err != nil {
		return nil, s.fail("reading audit events", err)
	}
	return out, nil
}

// insertEvents appends events to the audit log in tx and returns them
// with their IDs.
func insertEvents(ctx context.Context, tx pgx.Tx, events ...keystore.Event) ([]keystore.Event, error) {
	for i := range events {
		e := &events[i]
		var owner *string
		if e.Owner != "" {
			owner = &e.Owner
		}
		err := tx.QueryRow(ctx, `INSERT INTO keygate_audit (at, action, key_id, owner, actor_type, actor_id, remote_ip, user_agent, changes, details)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq`,
			e.At, e.Action, e.KeyID, owner, e.Actor.Type, e.Actor.ID, e.RemoteIP, e.UserAgent,
			keystore.EncodeChanges(e.Changes), keystore.EncodeMetadata(e.Details)).Scan(&e.ID)
		if err != nil {
			return nil, err
		}
	}
	return events, nil
}

// OnEvents implements keystore.EventListener.
func (s *Store) OnEvents(f func([]keystore.Event)) {
	if f == nil {
		s.onEvents.Store(nil)
		return
	}
	s.onEvents.Store(&f)
}

// emit tells the listener of events that were committed.
func (s *Store) emit(events []keystore.Event) {
	if f := s.onEvents.Load(); f != nil && len(events) > 0 {
		(*f)(events)
	}
}

// Interface guards
var _ keystore.EventListener = (*Store)(nil)
