package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docana/keygate/internal/keystore"
)

// RecordUsage writes last-used times and usage counts in one
// transaction: every count to its minute row, and to its hour and day rows
// too if the rollup state read in the transaction says its minute is
// rolled up already (keystore.Rollup).
func (s *Store) RecordUsage(ctx context.Context, uses map[string]time.Time, counts []keystore.UsageCount) error {
	if s.closed.Load() {
		return keystore.ErrClosed
	}
	if len(uses) == 0 && len(counts) == 0 {
		return nil
	}
	return s.write(ctx, "recording usage", func(tx *sql.Tx) error {
		// One statement per table for the whole batch, its rows as one
		// JSON array: a statement per row costs a round of database/sql's
		// allocations and a parse each. Last-used times go in ID order,
		// so the upserts walk last_used forward (unknown IDs left out);
		// usage rows in Rollup's. ("WHERE true" lets SQLite parse the upsert after a
		// SELECT.)
		if len(uses) > 0 {
			if _, err := tx.ExecContext(ctx, `INSERT INTO last_used (key_id, at)
				SELECT value->>0, value->>1 FROM json_each(?) WHERE EXISTS (SELECT 1 FROM keys WHERE id = value->>0)
				ON CONFLICT (key_id) DO UPDATE SET at = excluded.at WHERE excluded.at > at`,
				usesJSON(uses)); err != nil {
				return err
			}
		}
		if len(counts) == 0 {
			return nil
		}
		state, err := rollupState(ctx, tx)
		if err != nil {
			return err
		}
		rows := keystore.Rollup(counts, state)
		if len(rows) == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO usage (key_id, step, start, result, n)
			SELECT value->>0, value->>1, value->>2, value->>3, value->>4 FROM json_each(?) WHERE true
			ON CONFLICT (step, start, key_id, result) DO UPDATE SET n = n + excluded.n`, usageJSON(rows))
		return err
	})
}

// rollupState reads the rollup state in tx.
func rollupState(ctx context.Context, tx *sql.Tx) (keystore.RollupState, error) {
	var (
		st            keystore.RollupState
		until, target int64
	)
	if err := tx.QueryRowContext(ctx, `SELECT until, target, done_key FROM usage_rollup`).Scan(&until, &target, &st.DoneKey); err != nil {
		return keystore.RollupState{}, fmt.Errorf("reading the usage rollup state: %w", err)
	}
	st.Until, st.Target = time.Unix(until, 0).UTC(), time.Unix(target, 0).UTC()
	return st, nil
}

// usesJSON encodes last-used times as a JSON array of [key_id, unix
// microseconds], sorted by key ID. Zero times are left out.
func usesJSON(uses map[string]time.Time) string {
	ids := slices.Sorted(maps.Keys(uses))
	b := make([]byte, 0, 48*len(ids))
	b = append(b, '[')
	for _, id := range ids {
		if uses[id].IsZero() {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendQuote(b, id)
		b = append(b, ',')
		b = strconv.AppendInt(b, micros(uses[id]), 10)
		b = append(b, ']')
	}
	return string(append(b, ']'))
}

// usageJSON encodes rows as a JSON array of [key_id, step seconds, start
// unix seconds, result, n]. Key IDs and results are JSON-quoted.
func usageJSON(rows []keystore.UsageBucket) string {
	b := make([]byte, 0, 64*len(rows))
	b = append(b, '[')
	for i, r := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendQuote(b, r.KeyID)
		b = append(b, ',')
		b = strconv.AppendInt(b, int64(r.Step/time.Second), 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, r.Start.Unix(), 10)
		b = append(b, ',')
		b = strconv.AppendQuote(b, r.Result)
		b = append(b, ',')
		b = strconv.AppendInt(b, r.N, 10)
		b = append(b, ']')
	}
	return string(append(b, ']'))
}

// unrolledMinutes selects, from usage u and usage_rollup r, the minute
// rows whose counts are not in the hour and day rows yet: the negation of
// keystore.RollupState.Rolled. ?1 is the first minute wanted, ?2 the end.
const unrolledMinutes = `u.step = 60 AND u.start >= max(r.until, ?1) AND u.start < ?2
	AND (u.start >= r.target OR u.key_id > r.done_key)`

// startsIn returns a common table expression named name: the distinct
// starts of step's rows in [from, to) (SQL expressions), then a NULL. Each
// is one seek by the primary key, past every key's rows of the start
// before it: usage rows are in time order (schema 7), so the rows of one
// key, or of one chunk of keys, are found by seeking each start the range
// holds, where a range of starts would read every key's rows, and where
// the starts a range could hold (every minute since the rollup state's
// until, which can be long ago) may be far more than those it holds.
func startsIn(name, step, from, to string) string {
	next := `(SELECT min(start) FROM usage WHERE step = ` + step + ` AND start %s AND start < ` + to + `)`
	return name + `(start) AS (SELECT ` + fmt.Sprintf(next, ">= "+from) + `
		UNION ALL SELECT ` + fmt.Sprintf(next, "> "+name+".start") + ` FROM ` + name + ` WHERE ` + name + `.start IS NOT NULL)`
}

// Usage returns the counts of key id at step in [from, to). At the hour
// and day steps, the minutes not rolled up yet are added.
func (s *Store) Usage(ctx context.Context, id string, step time.Duration, from, to time.Time) ([]keystore.UsageRow, error) {
	if s.closed.Load() {
		return nil, keystore.ErrClosed
	}
	secs := int64(step / time.Second)
	// CROSS JOIN keeps the starts outside: a seek for the key's rows of
	// each. The minutes not rolled up are among those from the rollup
	// state's until on.
	q := `WITH RECURSIVE ` + startsIn("starts", "?4", "?1", "?2") + `
		SELECT u.start, u.result, u.n FROM starts s CROSS JOIN usage u ON u.step = ?4 AND u.start = s.start AND u.key_id = ?3
		ORDER BY u.start, u.result`
	if step != keystore.StepMinute {
		q = `WITH RECURSIVE ` + startsIn("starts", "?4", "?1", "?2") + `,
			` + startsIn("minutes", "60", "(SELECT max(until, ?1) FROM usage_rollup)", "?2") + `
		SELECT start, result, sum(n) FROM (
			SELECT u.start, u.result, u.n FROM starts s CROSS JOIN usage u ON u.step = ?4 AND u.start = s.start AND u.key_id = ?3
			UNION ALL
			SELECT u.start - u.start % ?4, u.result, u.n FROM minutes m CROSS JOIN usage u ON u.step = 60 AND u.start = m.start AND u.key_id = ?3
				CROSS JOIN usage_rollup r WHERE ` + unrolledMinutes + `
		) GROUP BY start, result ORDER BY start, result`
	}
	rows, err := s.db.QueryContext(ctx, q, keystore.StepCeil(from, step).Unix(), keystore.StepCeil(to, step).Unix(), id, secs)
	if err != nil {
		return nil, s.fail("reading usage", err)
	}
	defer rows.Close()
	var out []keystore.UsageRow
	for rows.Next() {
		var (
			r     keystore.UsageRow
			start int64
		)
		if err := rows.Scan(&start, &r.Result, &r.N); err != nil {
			return nil, s.fail("reading usage", err)
		}
		r.Start = time.Unix(start, 0).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("reading usage", err)
	}
	return out, nil
}

// UsageByKey returns the totals of every key with requests in the range,
// the minutes not rolled up yet added at the hour and day steps.
func (s *Store) UsageByKey(ctx context.Context, owner string, step time.Duration, from, to time.Time) ([]keystore.KeyTotal, error) {
	if s.closed.Load() {
		return nil, keystore.ErrClosed
	}
	rowsOf := `SELECT key_id, result, n FROM usage WHERE step = ?3 AND start >= ?1 AND start < ?2`
	if step != keystore.StepMinute {
		rowsOf += ` UNION ALL SELECT u.key_id, u.result, u.n FROM usage_rollup r, usage u WHERE ` + unrolledMinutes
	}
	q := `SELECT u.key_id, sum(CASE WHEN u.result = 'ok' THEN u.n ELSE 0 END), sum(CASE WHEN u.result = 'ok' THEN 0 ELSE u.n END)
		FROM (` + rowsOf + `) u`
	args := []any{keystore.StepCeil(from, step).Unix(), keystore.StepCeil(to, step).Unix(), int64(step / time.Second)}
	if owner != "" {
		q += ` JOIN keys k ON k.id = u.key_id AND k.owner = ?4`
		args = append(args, owner)
	}
	q += ` GROUP BY u.key_id ORDER BY sum(u.n) DESC, u.key_id`
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.fail("reading usage by key", err)
	}
	defer rows.Close()
	var out []keystore.KeyTotal
	for rows.Next() {
		var t keystore.KeyTotal
		if err := rows.Scan(&t.KeyID, &t.OK, &t.Refused); err != nil {
			return nil, s.fail("reading usage by key", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("reading usage by key", err)
	}
	return out, nil
}

// Prune rolls minutes up into hours and days, then deletes usage and
// events older than r keeps; minute rows only once rolled up. Rolling up
// and deleting are idempotent, so processes sharing the file may prune at
// once.
func (s *Store) Prune(ctx context.Context, now time.Time, r keystore.Retention) error {
	if err := s.rollUp(ctx, keystore.RollupTarget(now)); err != nil {
		return err
	}
	return s.write(ctx, "pruning usage and audit events", func(tx *sql.Tx) error {
		state, err := rollupState(ctx, tx)
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
				before = state.Until
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM usage WHERE step = ? AND start < ?`,
				int64(p.step/time.Second), before.Unix()); err != nil {
				return err
			}
		}
		if r.Audit > 0 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM audit WHERE at < ?`, micros(now.Add(-r.Audit))); err != nil {
				return err
			}
		}
		return nil
	})
}

// rollUp adds the minutes up to target to the hour and day rows, in
// transactions of keystore.RollupChunkKeys keys each (in ID order), so
// that writers, revocations among them, never wait long for the write
// lock. A rollup cut short (an error, a stop) goes on from where its state
// says at the next call.
func (s *Store) rollUp(ctx context.Context, target time.Time) error {
	for chunks := 1; ; chunks++ {
		var done bool
		err := s.write(ctx, "rolling up usage", func(tx *sql.Tx) error {
			st, err := rollupState(ctx, tx)
			if err != nil {
				return err
			}
			st, ok := st.Start(target)
			if !ok {
				done = true
				return nil
			}
			// The chunk: the next RollupChunkKeys keys after DoneKey, or
			// all the rest; all at once if no minute of the range has a
			// count (an idle gateway's million keys are not walked).
			var upper string
			err = tx.QueryRowContext(ctx, `SELECT id FROM keys WHERE id > ? ORDER BY id LIMIT 1 OFFSET ?`,
				st.DoneKey, keystore.RollupChunkKeys-1).Scan(&upper)
			last := errors.Is(err, sql.ErrNoRows)
			if err != nil && !last {
				return err
			}
			var one int
			err = tx.QueryRowContext(ctx, `SELECT 1 FROM usage WHERE step = 60 AND start >= ? AND start < ? LIMIT 1`,
				st.Until.Unix(), st.Target.Unix()).Scan(&one)
			idle := errors.Is(err, sql.ErrNoRows)
			if err != nil && !idle {
				return err
			}
			// For each minute of the range with rows (CROSS JOIN keeps
			// them outside), the chunk's keys are one range of the
			// primary key; a range of minutes would read every key's
			// rows for every chunk, quadratic in the keys. The last chunk
			// has no upper bound: it also takes the counts of IDs after
			// the last key's.
			chunk := `u.key_id > ?4`
			args := []any{0, st.Until.Unix(), st.Target.Unix(), st.DoneKey}
			if !last {
				chunk, args = chunk+` AND u.key_id <= ?5`, append(args, upper)
			}
			for _, step := range []time.Duration{keystore.StepHour, keystore.StepDay} {
				if idle {
					last = true
					break
				}
				args[0] = int64(step / time.Second)
				q := `WITH RECURSIVE ` + startsIn("minutes", "60", "?2", "?3") + `
					INSERT INTO usage (key_id, step, start, result, n)
					SELECT u.key_id, ?1, u.start - u.start % ?1, u.result, sum(u.n)
					FROM minutes m CROSS JOIN usage u ON u.step = 60 AND u.start = m.start AND ` + chunk + `
					GROUP BY u.key_id, u.start - u.start % ?1, u.result
					ON CONFLICT (step, start, key_id, result) DO UPDATE SET n = n + excluded.n`
				if _, err := tx.ExecContext(ctx, q, args...); err != nil {
					return err
				}
			}
			st, done = st.Done(upper, last)
			_, err = tx.ExecContext(ctx, `UPDATE usage_rollup SET until = ?, target = ?, done_key = ?`,
				st.Until.Unix(), st.Target.Unix(), st.DoneKey)
			return err
		})
		if err != nil || done || chunks == keystore.RollupChunksPerPrune {
			return err
		}
	}
}

const eventColumns = `seq, at, action, key_id, owner, actor_type, actor_id, remote_ip, user_agent, changes, details`

// Audit returns the events f selects, newest first.
func (s *Store) Audit(ctx context.Context, f keystore.AuditFilter) ([]keystore.Event, error) {
	if s.closed.Load() {
		return nil, keystore.ErrClosed
	}
	var (
		conds []string
		args  []any
	)
	if f.Owner != "" {
		conds, args = append(conds, "owner = ?"), append(args, f.Owner)
	}
	if f.KeyID != "" {
		conds, args = append(conds, "key_id = ?"), append(args, f.KeyID)
	}
	if f.Action != "" {
		conds, args = append(conds, "action = ?"), append(args, f.Action)
	}
	if !f.Since.IsZero() {
		conds, args = append(conds, "at >= ?"), append(args, micros(f.Since))
	}
	if f.Before > 0 {
		conds, args = append(conds, "seq < ?"), append(args, f.Before)
	}
	q := `SELECT ` + eventColumns + ` FROM audit`
	if len(conds) > 0 {
		q += ` WHERE ` + strings.Join(conds, " AND ")
	}
	q += ` ORDER BY seq DESC`
	if f.Limit > 0 {
		q, args = q+` LIMIT ?`, append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.fail("reading audit events", err)
	}
	defer rows.Close()
	var out []keystore.Event
	for rows.Next() {
		var (
			e                keystore.Event
			at               int64
			owner            sql.NullString
			changes, details string
		)
		if err := rows.Scan(&e.ID, &at, &e.Action, &e.KeyID, &owner, &e.Actor.Type, &e.Actor.ID, &e.RemoteIP, &e.UserAgent, &changes, &details); err != nil {
			return nil, s.fail("reading audit events", err)
		}
		e.At, e.Owner = fromMicros(at), owner.String
		if e.Changes, err = keystore.DecodeChanges(changes); err != nil {
			return nil, fmt.Errorf("reading audit event %d: %w", e.ID, err)
		}
		if e.Details, err = keystore.DecodeMetadata(details); err != nil {
			return nil, fmt.Errorf("reading audit event %d: %w", e.ID, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("reading audit events", err)
	}
	return out, nil
}

// insertEvents appends events to the audit log in tx and returns them
// with their IDs.
func insertEvents(ctx context.Context, tx *sql.Tx, events ...keystore.Event) ([]keystore.Event, error) {
	for i := range events {
		e := &events[i]
		err := tx.QueryRowContext(ctx, `INSERT INTO audit (at, action, key_id, owner, actor_type, actor_id, remote_ip, user_agent, changes, details)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
			micros(e.At), e.Action, e.KeyID, sql.NullString{String: e.Owner, Valid: e.Owner != ""},
			e.Actor.Type, e.Actor.ID, e.RemoteIP, e.UserAgent,
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
