package keystore

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/docana/keygate/internal/apikey"
)

// Audit says who makes a change and from where. The zero Audit is keygate
// itself: actor {"type": "system", "id": ""}.
type Audit struct {
	Actor     apikey.Actor
	RemoteIP  string // "" when unknown
	UserAgent string // "" when unknown; stores keep at most 256 bytes
}

// Limits of what an audit event keeps of its Audit.
const (
	// MaxUserAgentLength is the most bytes of a User-Agent an event keeps.
	MaxUserAgentLength = 256
	// MaxRemoteIPLength is the most bytes of a remote address an event
	// keeps: an IPv6 address with a zone fits.
	MaxRemoteIPLength = 64
)

// The actions of audit events.
const (
	ActionCreated      = "key.created"
	ActionUpdated      = "key.updated"
	ActionRotated      = "key.rotated"
	ActionRevoked      = "key.revoked"
	ActionLeakReported = "key.leak_reported"
)

// Actions lists every action, in the order the docs name them.
var Actions = []string{ActionCreated, ActionUpdated, ActionRotated, ActionRevoked, ActionLeakReported}

// LeakActor is who reports a leaked key: keygate's leak-report endpoint.
var LeakActor = apikey.Actor{Type: apikey.ActorSystem, ID: "leak_report"}

// Event is one entry of the audit log: a change to a key, written by the
// store in the transaction of the change. It never holds a secret or a
// digest.
type Event struct {
	// ID is given by the store: events of one store have increasing IDs,
	// in the order they were committed.
	ID int64
	// At is when the change was made, to the microsecond, UTC.
	At     time.Time
	Action string
	KeyID  string
	// Owner is the key's owner, "" for none.
	Owner     string
	Actor     apikey.Actor
	RemoteIP  string
	UserAgent string
	// Changes maps a field of the key to its value before and after, as
	// JSON values (nil for "not set"); nil for none.
	Changes map[string][2]any
	// Details holds what else the action records; nil for none.
	Details map[string]string
}

// AuditFilter selects events for Store.Audit; zero fields select all. The
// events come newest (highest ID) first.
type AuditFilter struct {
	// Owner keeps the events of that owner's keys.
	Owner string
	// KeyID keeps the events of that key.
	KeyID string
	// Action keeps the events of that action.
	Action string
	// Since keeps the events at or after it.
	Since time.Time
	// Before keeps the events whose ID is below it: the next page.
	Before int64
	// Limit is the most events returned; 0 means no limit.
	Limit int
}

// LeakReport is a report that the secret of a key was found in public.
type LeakReport struct {
	URL, Source string
	// Revoke asks to revoke the key (the endpoint's action revoke).
	Revoke bool
}

// What ReportLeak did, in its event's details (action_taken).
const (
	LeakRevoked          = "revoked"
	LeakNone             = "none"
	LeakAlreadyInactive  = "already_inactive"
	LeakKeptPublicWidget = "kept_public_widget"
)

// LeakAction decides what a leak report r does to the key k, as stored, at
// now: nothing when the report only records ("none"); nothing to a key
// revoked or expired before ("already_inactive"); nothing to a widget key
// with allowed origins, public by design and useless elsewhere
// ("kept_public_widget"); else the key is revoked ("revoked").
func LeakAction(k apikey.Key, r LeakReport, now time.Time) string {
	switch {
	case !r.Revoke:
		return LeakNone
	case k.Status(now) != apikey.StatusActive:
		return LeakAlreadyInactive
	case k.Scope == apikey.ScopeWidget && len(k.AllowedOrigins) > 0:
		return LeakKeptPublicWidget
	}
	return LeakRevoked
}

// patchFields are the fields of a key a Patch may change, as events name
// them: one line each, so a field added to Patch is one line here.
var patchFields = []struct {
	name  string
	set   func(p Patch) bool
	value func(k apikey.Key) any
}{
	{"name", func(p Patch) bool { return p.Name != nil }, func(k apikey.Key) any { return k.Name }},
	{"metadata", func(p Patch) bool { return p.Metadata != nil }, func(k apikey.Key) any { return jsonMap(k.Metadata) }},
	{"allowed_origins", func(p Patch) bool { return p.AllowedOrigins != nil }, func(k apikey.Key) any { return jsonList(k.AllowedOrigins) }},
	{"allowed_ips", func(p Patch) bool { return p.AllowedIPs != nil }, func(k apikey.Key) any { return jsonList(k.AllowedIPs) }},
	{"rate_limits", func(p Patch) bool { return p.RateLimits != nil }, func(k apikey.Key) any { return jsonList(k.RateLimits) }},
}

// everything is a patch that sets every field, for the changes of a
// created key.
var everything = Patch{Name: new(string), Metadata: new(map[string]string), AllowedOrigins: new([]string), AllowedIPs: new([]string), RateLimits: new([]string)}

// PatchChanges returns the changes p made from old to updated: each field
// p sets whose value differs, as [old, new].
func PatchChanges(old, updated apikey.Key, p Patch) map[string][2]any {
	changes := map[string][2]any{}
	for _, f := range patchFields {
		if !f.set(p) {
			continue
		}
		o, n := f.value(old), f.value(updated)
		if !sameJSON(o, n) {
			changes[f.name] = [2]any{o, n}
		}
	}
	return changes
}

// CreatedEvent is the event of creating k.
func CreatedEvent(k apikey.Key, a Audit, details map[string]string) Event {
	changes := map[string][2]any{"scope": {nil, k.Scope.String()}}
	if !k.ExpiresAt.IsZero() {
		changes["expires_at"] = [2]any{nil, jsonTime(k.ExpiresAt)}
	}
	if k.Owner != "" {
		changes["owner"] = [2]any{nil, k.Owner}
	}
	for _, f := range patchFields {
		if f.set(everything) {
			changes[f.name] = [2]any{nil, f.value(k)}
		}
	}
	return newEvent(ActionCreated, k, k.CreatedAt, a, changes, details)
}

// UpdatedEvent is the event of updating old to updated with p at at.
func UpdatedEvent(old, updated apikey.Key, p Patch, a Audit, at time.Time) Event {
	return newEvent(ActionUpdated, updated, at, a, PatchChanges(old, updated, p), nil)
}

// RevokedEvent is the event of revoking k, as stored afterwards.
func RevokedEvent(k apikey.Key, a Audit) Event {
	return newEvent(ActionRevoked, k, k.RevokedAt, a, map[string][2]any{"revoked_at": {nil, jsonTime(k.RevokedAt)}}, nil)
}

// RotatedEvent is the event, recorded on the old key, of rotating before
// (as it was) to after (as stored afterwards) for next.
func RotatedEvent(before, after, next apikey.Key, a Audit) Event {
	changes := map[string][2]any{"replaced_by": {nil, after.ReplacedBy}}
	if !before.ExpiresAt.Equal(after.ExpiresAt) {
		changes["expires_at"] = [2]any{jsonTime(before.ExpiresAt), jsonTime(after.ExpiresAt)}
	}
	return newEvent(ActionRotated, after, next.CreatedAt, a, changes, map[string]string{"new_key_id": next.ID})
}

// RotationEvents are the events of a rotation: key.created for next, with
// the old key's ID in its details, and key.rotated for the old key.
func RotationEvents(before, after, next apikey.Key, a Audit) []Event {
	return []Event{
		CreatedEvent(next, a, map[string]string{"rotated_from": before.ID}),
		RotatedEvent(before, after, next, a),
	}
}

// LeakEvent is the event of a leak report r on k at at, with what was
// done.
func LeakEvent(k apikey.Key, r LeakReport, taken string, at time.Time) Event {
	return newEvent(ActionLeakReported, k, at, Audit{Actor: LeakActor}, nil,
		map[string]string{"url": r.URL, "source": r.Source, "action_taken": taken})
}

func newEvent(action string, k apikey.Key, at time.Time, a Audit, changes map[string][2]any, details map[string]string) Event {
	if len(changes) == 0 {
		changes = nil
	}
	if a.Actor.Type == "" {
		// The zero Audit is keygate itself.
		a.Actor = apikey.Actor{Type: apikey.ActorSystem, ID: a.Actor.ID}
	}
	return Event{
		At:        at.UTC().Truncate(time.Microsecond),
		Action:    action,
		KeyID:     k.ID,
		Owner:     k.Owner,
		Actor:     a.Actor,
		RemoteIP:  fitText(a.RemoteIP, MaxRemoteIPLength),
		UserAgent: fitText(a.UserAgent, MaxUserAgentLength),
		Changes:   changes,
		Details:   details,
	}
}

// fitText cuts s to at most n bytes without splitting a character, and
// replaces invalid UTF-8, so that both stores keep it as it is.
func fitText(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1] // at most three bytes of a cut character
	}
	return s
}

func jsonTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func jsonList(l []string) any {
	if len(l) == 0 {
		return []string{}
	}
	return slices.Clone(l)
}

func jsonMap(m map[string]string) any {
	if len(m) == 0 {
		return map[string]string{}
	}
	return CloneMetadata(m)
}

func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// EncodeChanges returns an event's changes as stored: a JSON object, "{}"
// for none.
func EncodeChanges(c map[string][2]any) string {
	if len(c) == 0 {
		return "{}"
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("encoding changes: %v", err))
	}
	return string(b)
}

// DecodeChanges reads changes as EncodeChanges stored them.
func DecodeChanges(s string) (map[string][2]any, error) {
	if s == "" || s == "{}" {
		return nil, nil
	}
	var c map[string][2]any
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return nil, fmt.Errorf("changes are not a JSON object of pairs: %w", err)
	}
	return c, nil
}

// EventListener is implemented by stores that tell a function of every
// audit event once the transaction that wrote it committed (both
// backends): how the apikeys.audit logger hears of them.
type EventListener interface {
	// OnEvents makes the store call f with the events of each committed
	// change, in order; nil stops it. f must not block.
	OnEvents(f func([]Event))
}

// EventHook is the part of a store that implements EventListener: the
// function set by OnEvents, called by Emit once a change committed. Its
// zero value calls nothing; it is safe for concurrent use.
type EventHook struct {
	f atomic.Pointer[func([]Event)]
}

// OnEvents implements EventListener.
func (h *EventHook) OnEvents(f func([]Event)) {
	if f == nil {
		h.f.Store(nil)
		return
	}
	h.f.Store(&f)
}

// Emit tells the listener, if any, of events that were committed.
func (h *EventHook) Emit(events []Event) {
	if f := h.f.Load(); f != nil && len(events) > 0 {
		(*f)(events)
	}
}
