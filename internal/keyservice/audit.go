package keyservice

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
)

// AuditOptions selects a page of audit events. Every field is optional.
type AuditOptions struct {
	// Owner keeps the events of that owner's keys; a view (ForOwner) sees
	// its owner's only.
	Owner string
	// KeyID keeps the events of one key.
	KeyID string
	// Action keeps the events of one action (keystore.Actions).
	Action string
	// Since keeps the events since then (ParseSince); "" keeps all.
	Since string
	// Limit is the most events of the page, 1 to MaxLimit; 0 means
	// DefaultLimit.
	Limit int
	// Cursor is an AuditPage.Next of an earlier call with the same
	// filter: the page then starts after it.
	Cursor string
}

// AuditPage is one page of audit events, newest first.
type AuditPage struct {
	Events []keystore.Event
	// Next is the cursor of the next (older) page, "" on the last.
	Next string
}

// Audit returns a page of the audit events opts selects, newest first.
func (s *Service) Audit(ctx context.Context, opts AuditOptions) (AuditPage, error) {
	f := keystore.AuditFilter{Owner: opts.Owner, KeyID: opts.KeyID, Action: opts.Action}
	if f.Owner != "" {
		if err := apikey.CheckOwner(f.Owner); err != nil {
			return AuditPage{}, &InputError{Field: "owner", Message: err.Error()}
		}
	}
	if f.KeyID != "" && !apikey.ValidID(f.KeyID) {
		return AuditPage{}, &InputError{Field: "key_id", Message: `is not a key ID: IDs are "key_" and 22 letters or digits`}
	}
	if f.Action != "" && !slices.Contains(keystore.Actions, f.Action) {
		return AuditPage{}, &InputError{Field: "action", Message: fmt.Sprintf("must be one of key.created, key.updated, key.rotated, key.revoked, key.leak_reported, not %s", apikey.QuoteInput(f.Action))}
	}
	if opts.Since != "" {
		t, err := ParseSince(opts.Since, s.Now())
		if err != nil {
			return AuditPage{}, err
		}
		f.Since = t
	}
	limit := opts.Limit
	switch {
	case limit == 0:
		limit = DefaultLimit
	case limit < 0 || limit > MaxLimit:
		return AuditPage{}, &InputError{Field: "limit", Message: fmt.Sprintf("must be from 1 to %d", MaxLimit)}
	}
	if opts.Cursor != "" {
		n, err := strconv.ParseInt(opts.Cursor, 10, 64)
		if err != nil || n <= 0 || strconv.FormatInt(n, 10) != opts.Cursor {
			return AuditPage{}, &InputError{Field: "cursor", Message: "is not a cursor from a previous page"}
		}
		f.Before = n
	}
	if s.owned {
		if s.owner == "" || (f.Owner != "" && f.Owner != s.owner) {
			return AuditPage{}, nil
		}
		f.Owner = s.owner
	}
	f.Limit = limit + 1
	events, err := s.store.Audit(ctx, f)
	if err != nil {
		storeFailed(s.errs.list, err)
		return AuditPage{}, fmt.Errorf("reading audit events: %w", err)
	}
	var p AuditPage
	if len(events) > limit {
		events = events[:limit]
		p.Next = strconv.FormatInt(events[limit-1].ID, 10)
	}
	p.Events = events
	return p, nil
}

// EventJSON is an audit event as the admin API, the CLI and the console
// show it. Owner, RemoteIP and UserAgent are null when unknown; Changes
// and Details are {} when empty.
type EventJSON struct {
	ID        int64             `json:"id"`
	At        time.Time         `json:"at"`
	Action    string            `json:"action"`
	KeyID     string            `json:"key_id"`
	Owner     *string           `json:"owner"`
	Actor     ActorJSON         `json:"actor"`
	RemoteIP  *string           `json:"remote_ip"`
	UserAgent *string           `json:"user_agent"`
	Changes   map[string][2]any `json:"changes"`
	Details   map[string]string `json:"details"`
}

// EventView returns e as shown.
func EventView(e keystore.Event) EventJSON {
	changes := e.Changes
	if changes == nil {
		changes = map[string][2]any{}
	}
	return EventJSON{
		ID:        e.ID,
		At:        e.At.UTC(),
		Action:    e.Action,
		KeyID:     e.KeyID,
		Owner:     optionalID(e.Owner),
		Actor:     ActorJSON{Type: e.Actor.Type, ID: e.Actor.ID},
		RemoteIP:  optionalID(e.RemoteIP),
		UserAgent: optionalID(e.UserAgent),
		Changes:   changes,
		Details:   nonNilMap(e.Details),
	}
}
