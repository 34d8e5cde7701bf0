package postgres

import (
	"context"
	"errors"
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
// counts in one transaction, the counts added as keystore.Rollup says
// with the rollup state read first (FOR SHARE: a rollup step, which
// takes the row FOR UPDATE, waits for the writers that read the state
// before it, and they for it). The usage rows are upserted in Rollup's
// order, and the keys locked in ID order, so that instances writing
// overlapping batches wait for each other instead of deadlocking.
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
	if len(ids) == 0 && len(counts) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		var rows []keystore.UsageBucket
		if len(counts) > 0 {
			state, err := rollupState(ctx, tx, "FOR SHARE")
			if err != nil {
				return err
			}
			rows = keystore.Rollup(counts, state)
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

// rollupState reads the rollup state in tx, locked as lock says.
func rollupState(ctx context.Context, tx pgx.Tx, lock string) (keystore.RollupState, error) {
	var st keystore.RollupState
	if err := tx.QueryRow(ctx, `SELECT until, target, done_key FROM keygate_usage_rollup `+lock).Scan(&st.Until, &st.Target, &st.DoneKey); err != nil {
		return keystore.RollupState{}, fmt.Errorf("reading the usage rollup state: %w", err)
	}
	st.Until, st.Target = st.Until.UTC(), st.Target.UTC()
	return st, nil
}

// unrolledMinutes selects, from keygate_usage u and keygate_usage_rollup
// r, the minute rows whose counts are not in the hour and day rows yet:
// the negation of keystore.RollupState.Rolled. $1 is the first minute
// wanted, $2 the end.
const unrolledMinutes = `u.step = 60 AND u.start >= greatest(r.until, $1) AND u.start < $2
	AND (u.start >= r.target OR u.key_id COLLATE "C" > r.done_key)`

// bucket is the start of the step ($3 seconds) holding u.start.
const bucket = `to_timestamp(floor(extract(epoch FROM u.start) / $3::int) * $3::int)`

// Usage implements keystore.Store. At the hour and day steps, the minutes
// not rolled up yet are added.
func (s *Store) Usage(ctx context.Context, id string, step time.Duration, from, to time.Time) ([]keystore.UsageRow, error) {
	q := `SELECT start, result, n FROM keygate_usage
WHERE key_id = $4 AND step = $3 AND start >= $1 AND start < $2 ORDER BY start, result`
	if step != keystore.StepMinute {
		q = `SELECT start, result, sum(n)::bigint FROM (
	SELECT start, result, n FROM keygate_usage WHERE key_id = $4 AND step = $3 AND start >= $1 AND start < $2
	UNION ALL
	SELECT ` + bucket + `, u.result, u.n FROM keygate_usage_rollup r, keygate_usage u WHERE u.key_id = $4 AND ` + unrolledMinutes + `
) AS rows GROUP BY start, result ORDER BY start, result`
	}
	var out []keystore.UsageRow
	err := s.read(ctx, func() error {
		rows, err := s.pool.Query(ctx, q, keystore.StepCeil(from, step), keystore.StepCeil(to, step), int32(step/time.Second), id)
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

// UsageByKey implements keystore.Store, with the minutes not rolled up
// yet added at the hour and day steps.
func (s *Store) UsageByKey(ctx context.Context, owner string, step time.Duration, from, to time.Time) ([]keystore.KeyTotal, error) {
	rowsOf := `SELECT key_id, result, n FROM keygate_usage WHERE step = $3 AND start >= $1 AND start < $2`
	if step != keystore.StepMinute {
		rowsOf += ` UNION ALL SELECT u.key_id, u.result, u.n FROM keygate_usage_rollup r, keygate_usage u WHERE ` + unrolledMinutes
	}
	q := `SELECT u.key_id, sum(CASE WHEN u.result = 'ok' THEN u.n ELSE 0 END)::bigint, sum(CASE WHEN u.result = 'ok' THEN 0 ELSE u.n END)::bigint
FROM (` + rowsOf + `) AS u`
	args := []any{keystore.StepCeil(from, step), keystore.StepCeil(to, step), int32(step / time.Second)}
	if owner != "" {
		q += ` JOIN keygate_keys k ON k.id = u.key_id AND k.owner = $4`
		args = append(args, owner)
	}
	q += ` GROUP BY u.key_id ORDER BY sum(u.n) DESC, u.key_id`
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

// Prune implements keystore.Store. One instance rolls up and prunes at a
// time: each of its transactions takes the advisory lock pruneLock, and
// an instance that finds it taken skips its turn, as the work is the same.
func (s *Store) Prune(ctx context.Context, now time.Time, r keystore.Retention) error {
	if err := s.rollUp(ctx, keystore.RollupTarget(now)); err != nil {
		return s.fail("rolling up usage", err)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, pruneLock).Scan(&got); err != nil || !got {
			return err
		}
		state, err := rollupState(ctx, tx, "")
		if err != nil {
			return err
		}
		for _, p := range []struct {
			step time.Duration
			keep time.Duration
		}{{keystore.StepMinute, r.Minute}, {keystore.StepHour, r.Hour}, {keystore.StepDay, r.Day}} {
			if p.keep <= 0 {
				continue
			}
			before := now.Add(-p.keep)
			if p.step == keystore.StepMinute && state.Until.Before(before) {
				before = state.Until // never delete what is not rolled up
			}
			if _, err := tx.Exec(ctx, `DELETE FROM keygate_usage WHERE step = $1 AND start < $2`,
				int32(p.step/time.Second), before); err != nil {
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

// rollUp adds the minutes up to target to the hour and day rows, in
// transactions of keystore.RollupChunkKeys keys each (in byte order), so
// that no writer waits long for the state row. A rollup cut short goes on
// from where its state says at the next call, here or on another
// instance.
func (s *Store) rollUp(ctx context.Context, target time.Time) error {
	for chunks := 1; ; chunks++ {
		var done bool
		err := s.write(ctx, func(tx pgx.Tx) error {
			var got bool
			if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, pruneLock).Scan(&got); err != nil || !got {
				done = true // another instance is at it
				return err
			}
			st, err := rollupState(ctx, tx, "FOR UPDATE")
			if err != nil {
				return err
			}
			st, ok := st.Start(target)
			if !ok {
				done = true
				return nil
			}
			var upper string
			err = tx.QueryRow(ctx, `SELECT id FROM keygate_keys WHERE id COLLATE "C" > $1 ORDER BY id COLLATE "C" OFFSET $2 LIMIT 1`,
				st.DoneKey, keystore.RollupChunkKeys-1).Scan(&upper)
			last := errors.Is(err, pgx.ErrNoRows)
			if err != nil && !last {
				return err
			}
			// All at once if no minute of the range has a count: an idle
			// gateway's keys are not walked.
			var counted bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keygate_usage WHERE step = 60 AND start >= $1 AND start < $2)`,
				st.Until, st.Target).Scan(&counted); err != nil {
				return err
			}
			last = last || !counted
			steps := []time.Duration{keystore.StepHour, keystore.StepDay}
			if !counted {
				steps = nil
			}
			// LATERAL: the chunk's keys, then each key's minutes by the
			// primary key, not every key's minutes of the range per chunk.
			for _, step := range steps {
				if _, err := tx.Exec(ctx, `INSERT INTO keygate_usage (key_id, step, start, result, n)
SELECT u.key_id, $3::int, `+bucket+`, u.result, sum(u.n)
FROM keygate_keys k CROSS JOIN LATERAL (
	SELECT key_id, start, result, n FROM keygate_usage WHERE key_id = k.id AND step = 60 AND start >= $1 AND start < $2
) AS u
WHERE k.id COLLATE "C" > $4 AND ($5 OR k.id COLLATE "C" <= $6)
GROUP BY u.key_id, 3, u.result
ORDER BY u.key_id, 3, u.result
ON CONFLICT (key_id, step, start, result) DO UPDATE SET n = keygate_usage.n + excluded.n`,
					st.Until, st.Target, int32(step/time.Second), st.DoneKey, last, upper); err != nil {
					return err
				}
			}
			st, done = st.Done(upper, last)
			_, err = tx.Exec(ctx, `UPDATE keygate_usage_rollup SET until = $1, target = $2, done_key = $3`, st.Until, st.Target, st.DoneKey)
			return err
		})
		if err != nil || done || chunks == keystore.RollupChunksPerPrune {
			return err
		}
	}
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
func (s *Store) OnEvents(f func([]keystore.Event)) { s.events.OnEvents(f) }

// Interface guards
var _ keystore.EventListener = (*Store)(nil)
