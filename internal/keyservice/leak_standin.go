package keyservice

// STAND-IN, replaced at merge by h-usage's ReportLeak: the lead deletes
// this file. It has exactly the contract's signature and makes the same
// decisions (GetByDigest, then a plain store Revoke), but records no
// key.leak_reported event: the audit trail is h-usage's.

import (
	"context"
	"fmt"

	"github.com/docana/keygate/internal/apikey"
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
//
// This stand-in records no event (replaced at merge by h-usage's ReportLeak).
func (s *Service) ReportLeak(ctx context.Context, d apikey.Digest, l Leak) (LeakOutcome, error) {
	k, err := s.store.GetByDigest(ctx, d)
	if err != nil {
		storeFailed(s.errs.get, err)
		return LeakOutcome{}, fmt.Errorf("getting the reported key: %w", err)
	}
	now := s.Now()
	switch {
	case k.Status(now) != apikey.StatusActive:
		return LeakOutcome{Key: k, ActionTaken: "already_inactive"}, nil
	case !l.Revoke:
		return LeakOutcome{Key: k, ActionTaken: "none"}, nil
	case k.Scope == apikey.ScopeWidget && len(k.AllowedOrigins) > 0:
		return LeakOutcome{Key: k, ActionTaken: "kept_public_widget"}, nil
	}
	revoked, err := s.store.Revoke(ctx, k.ID, now)
	if err != nil {
		storeFailed(s.errs.revoke, err)
		return LeakOutcome{}, fmt.Errorf("revoking key %s: %w", k.ID, err)
	}
	return LeakOutcome{Key: revoked, ActionTaken: "revoked"}, s.sync(ctx)
}
