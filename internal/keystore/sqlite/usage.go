package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docana/keygate/internal/keystore"
)

// RecordUsage writes last-used times and usage counts, rolled up into
// every step, in one transaction.
func (s *Store) RecordUsage(ctx context.Context, uses map[string]time.Time, counts []keystore.UsageCount) error {
	if s.closed.Load() {
		return keystore.ErrClosed
	}
	rows := keystore.Rollup(counts)
	if len(uses) == 0 && len(rows) == 0 {
		return nil
	}
	return s.write(ctx, "recording usage", func(tx *sql.Tx) error {
		// One statement per table for the whole batch, its rows as one
		// JSON array: a statement per row costs a round of database/sql's
		// allocations and a parse each. Last-used times go in ID order,
		// so the updates walk the ID index forward; usage rows in
		// Rollup's. ("WHERE true" lets SQLite parse the upsert after a
		// SELECT.)
		if len(uses) > 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE keys SET last_used_at = u.value->>1
				FROM json_each(?) AS u
				WHERE keys.id = u.value->>0 AND (keys.last_used_at IS NULL OR keys.last_used_at < u.value->>1)`,
				usesJSON(uses)); err != nil {
				return err
			}
		}
		if len(rows) == 0 {
			return nil
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO usage (key_id, step, start, result, n)
			SELECT value->>0, value->>1, value->>2, value->>3, value->>4 FROM json_each(?) WHERE true
			ON CONFLICT (key_id, step, start, result) DO UPDATE SET n = n + excluded.n`, usageJSON(rows))
		return err
	})
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

// Usage returns the counts of key id at step in [from, to).
func (s *Store) Usage(ctx context.Context, id string, step time.Duration, from, to time.Time) ([]keystore.UsageRow, error) {
	if s.closed.Load() {
		return nil, keystore.ErrClosed
	}
	rows, err := s.db.QueryContext(ctx, `SELECT start, result, n FROM usage
		WHERE key_id = ? AND step = ? AND start >= ? AND start < ? ORDER BY start, result`,
		id, int64(step/time.Second), unixCeil(from), unixCeil(to))
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

// UsageByKey returns the totals of every key with requests in the range.
func (s *Store) UsageByKey(ctx context.Context, owner string, step time.Duration, from, to time.Time) ([]keystore.KeyTotal, error) {
	if s.closed.Load() {
		return nil, keystore.ErrClosed
	}
	q := `SELECT u.key_id, sum(CASE WHEN u.result = 'ok' THEN u.n ELSE 0 END), sum(CASE WHEN u.result = 'ok' THEN 0 ELSE u.n END)
		FROM usage u`
	args := []any{}
	if owner != "" {
		q += ` JOIN keys k ON k.id = u.key_id AND k.owner = ?`
		args = append(args, owner)
	}
	q += ` WHERE u.step = ? AND u.start >= ? AND u.start < ? GROUP BY u.key_id ORDER BY sum(u.n) DESC, u.key_id`
	args = append(args, int64(step/time.Second), unixCeil(from), unixCeil(to))
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

// unixCeil returns t in unix seconds, rounded up, so that a range bound
// between two steps excludes the step it falls in.
func unixCeil(t time.Time) int64 {
	u := t.Unix()
	if t.Nanosecond() > 0 {
		u++
	}
	return u
}

// Prune deletes usage and events older than r keeps. Deleting is
// idempotent, so processes sharing the file may prune at once.
func (s *Store) Prune(ctx context.Context, now time.Time, r keystore.Retention) error {
	return s.write(ctx, "pruning usage and audit events", func(tx *sql.Tx) error {
		for _, p := range []struct {
			step time.Duration
			keep time.Duration
		}{{keystore.StepMinute, r.Minute}, {keystore.StepHour, r.Hour}, {keystore.StepDay, r.Day}} {
			if p.keep <= 0 {
				continue
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM usage WHERE step = ? AND start < ?`,
				int64(p.step/time.Second), now.Add(-p.keep).Unix()); err != nil {
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
