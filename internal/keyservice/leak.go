package keyservice

import (
	"context"
	"fmt"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// Leak is a report that a key's secret was found in public.
type Leak struct {
	URL, Source string // from the report, stored in the event details
	Revoke      bool   // action revoke (true) or report (false)
}

// LeakOutcome is what ReportLeak did.
type LeakOutcome struct {
	Key         apikey.Key // as stored afterwards
	ActionTaken string     // "revoked", "none" (action report),
	// "already_inactive" (revoked or expired before),
	// "kept_public_widget" (widget key with allowed origins)
}

// ReportLeak records a key.leak_reported event (actor {"type":"system","id":"leak_report"},
// details {"url","source","action_taken"}) for the key whose digest is d and,
// when l.Revoke and the key is active and not a widget key with allowed
// origins, revokes it in the same transaction (with a key.revoked event).
// keystore.ErrNotFound when no key has digest d. Syncs the local cache.
// The decision is keystore.LeakAction, judged by the store inside its
// transaction. Views (ForOwner, As) do not apply: the report is keygate's
// own.
func (s *Service) ReportLeak(ctx context.Context, d apikey.Digest, l Leak) (LeakOutcome, error) {
	k, taken, err := s.store.ReportLeak(ctx, d, keystore.LeakReport{URL: l.URL, Source: l.Source, Revoke: l.Revoke}, s.Now())
	if err != nil {
		storeFailed(s.errs.revoke, err)
		return LeakOutcome{}, fmt.Errorf("recording leak report: %w", err)
	}
	s.withPending(&k)
	return LeakOutcome{Key: k, ActionTaken: taken}, s.sync(ctx)
}
