package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docana/keygate/internal/keystore"
)

// appliedChannel is the NOTIFY channel on which an instance announces that
// it applied changes, with its ID as payload: a change waiting for every
// instance (keyservice.Confirm) wakes up on it instead of polling.
const appliedChannel = "keygate_applied"

// Beat implements keystore.Registry.
func (s *Store) Beat(ctx context.Context, in keystore.Instance) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`
INSERT INTO keygate_instances (id, hostname, version, started_at, seen_at, applied_seq, cache_entries)
VALUES ($1, $2, $3, $4, clock_timestamp(), $5, $6)
ON CONFLICT (id) DO UPDATE SET
	hostname = EXCLUDED.hostname, version = EXCLUDED.version, started_at = EXCLUDED.started_at,
	seen_at = EXCLUDED.seen_at, cache_entries = EXCLUDED.cache_entries,
	applied_seq = GREATEST(keygate_instances.applied_seq, EXCLUDED.applied_seq)`,
			in.ID, in.Hostname, in.Version, in.StartedAt.UTC(), in.AppliedSeq, int64(in.CacheEntries))
		b.Queue(`DELETE FROM keygate_instances WHERE seen_at < clock_timestamp() - $1::bigint * interval '1 microsecond'`,
			keystore.DeadAfter.Microseconds())
		return tx.SendBatch(ctx, b).Close()
	})
}

// Applied implements keystore.Registry: the update and the notification
// go in one round trip, and the notification is sent when it commits.
func (s *Store) Applied(ctx context.Context, id string, seq int64) error {
	return s.write(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`UPDATE keygate_instances SET applied_seq = GREATEST(applied_seq, $2), seen_at = clock_timestamp() WHERE id = $1`, id, seq)
		b.Queue(`SELECT pg_notify($1, $2)`, appliedChannel, id)
		return tx.SendBatch(ctx, b).Close()
	})
}

// Deregister implements keystore.Registry.
func (s *Store) Deregister(ctx context.Context, id string) error {
	return s.read(ctx, func() error {
		_, err := s.pool.Exec(ctx, `DELETE FROM keygate_instances WHERE id = $1`, id)
		return err
	})
}

// Instances implements keystore.Registry. The sequence and the instances
// are read in one statement, so one snapshot.
func (s *Store) Instances(ctx context.Context) ([]keystore.Instance, int64, time.Time, error) {
	var (
		ins []keystore.Instance
		seq int64
		now time.Time
	)
	err := s.read(ctx, func() error {
		ins, seq, now = nil, 0, time.Time{}
		rows, err := s.pool.Query(ctx, `
SELECT c.seq, clock_timestamp(), i.id, i.hostname, i.version, i.started_at, i.seen_at, i.applied_seq, i.cache_entries
FROM keygate_change_counter c LEFT JOIN keygate_instances i ON true
ORDER BY i.id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id, host, version *string
				started, seen     *time.Time
				applied, entries  *int64
			)
			if err := rows.Scan(&seq, &now, &id, &host, &version, &started, &seen, &applied, &entries); err != nil {
				return err
			}
			if id == nil {
				continue
			}
			ins = append(ins, keystore.Instance{
				ID: *id, Hostname: *host, Version: *version,
				StartedAt: started.UTC(), SeenAt: seen.UTC(),
				AppliedSeq: *applied, CacheEntries: int(*entries),
			})
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, time.Time{}, s.fail("reading instances", err)
	}
	return ins, seq, now.UTC(), nil
}

// AppliedNotices implements keystore.Registry.
func (s *Store) AppliedNotices() <-chan struct{} { return s.applied.Wait() }
