// Package keystore defines where API keys are kept: the Store interface that
// every backend implements, and the errors they share. The conformance suite
// in keystore/storetest checks a backend against every rule written here;
// each backend lives in a package of its own (keystore/sqlite,
// keystore/postgres).
package keystore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/policy"
	"github.com/docana/keygate/internal/ratelimit"
)

// Errors every backend returns for the same situations, checked with
// errors.Is. Any other error means the store could not answer: the caller
// treats it as "store unavailable", never as "no such key".
var (
	// ErrNotFound: no key has that ID or digest.
	ErrNotFound = errors.New("api key not found")
	// ErrRevoked: the operation needs a key that is not revoked (rotate,
	// update).
	ErrRevoked = errors.New("api key is revoked")
	// ErrExpired: the operation needs a key that has not expired (rotate).
	ErrExpired = errors.New("api key has expired")
	// ErrReplaced: the operation needs a key that no rotation replaced yet
	// (rotate: a key is replaced at most once).
	ErrReplaced = errors.New("api key was already replaced")
	// ErrInvalidKey: Create or Rotate was given a key that breaks a rule of
	// CheckNew, or Update a patch that CheckPatch refuses. Nothing was
	// stored.
	ErrInvalidKey = errors.New("invalid api key record")
	// ErrExists: Create was given an ID or digest that is already stored.
	ErrExists = errors.New("api key already exists")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("key store is closed")
)

// Store keeps API keys. Its methods are safe for concurrent use, by
// goroutines of one process and by several processes sharing a backend.
// Every method that changes a key (Create, Revoke, Rotate, Update,
// ReportLeak when it revokes) bumps the store-wide change sequence and
// appends its audit events (see Event) in the same transaction, so a
// failed change leaves no event and a change never lacks one;
// TouchLastUsed and RecordUsage do neither.
// Times are stored with at least microsecond precision and returned in UTC.
type Store interface {
	// Create stores k, whose ID, digest and times are set by the caller
	// (apikey.Format.New). A key that CheckNew refuses is refused with an
	// error wrapping ErrInvalidKey, before anything is stored. Its event
	// is key.created (CreatedEvent), with a's actor and origin.
	Create(ctx context.Context, k apikey.Key, a Audit) error
	// Get returns the key with the given ID, or ErrNotFound.
	Get(ctx context.Context, id string) (apikey.Key, error)
	// GetByDigest returns the key whose secret has digest d, or ErrNotFound.
	GetByDigest(ctx context.Context, d apikey.Digest) (apikey.Key, error)
	// List returns the keys matching f, newest (CreatedAt) first, ties
	// broken by ID descending.
	List(ctx context.Context, f Filter) ([]apikey.Key, error)
	// Revoke sets the key's RevokedAt to at, unless it is already set, and
	// returns the key as stored afterwards. Revoking a revoked key changes
	// nothing, bumps no sequence and writes no event. ErrNotFound if there
	// is no such key. Its event is key.revoked (RevokedEvent).
	Revoke(ctx context.Context, id string, at time.Time, a Audit) (apikey.Key, error)
	// Rotate creates next and, in the same transaction, sets the key id's
	// ReplacedBy to next.ID and makes it expire at oldExpiresAt unless it
	// expires sooner anyway. It returns the old key as stored afterwards.
	// next is checked as Create checks a key (ErrInvalidKey). The old key
	// is judged inside the transaction, at next.CreatedAt (the time of the
	// rotation): ErrNotFound if there is no such key, ErrRevoked if it is
	// revoked, ErrReplaced if a rotation replaced it already, ErrExpired if
	// it has expired; then nothing is stored. So of two rotations of one
	// key racing, one succeeds and the other gets ErrReplaced. Its events
	// are RotationEvents: key.created for next, key.rotated for the old
	// key.
	Rotate(ctx context.Context, id string, next apikey.Key, oldExpiresAt time.Time, a Audit) (apikey.Key, error)
	// Update changes the fields of the key id that p sets, each replaced
	// whole, and returns the key as stored afterwards. It records one
	// change (the key, with its digest, so that caches drop it), even if
	// the values are the same; a patch that sets nothing changes nothing
	// and records none. A patch that CheckPatch refuses is an error
	// wrapping ErrInvalidKey; ErrNotFound if there is no such key,
	// ErrRevoked if it is revoked (judged inside the transaction); then
	// nothing is stored. Expired and replaced keys may be updated. Its
	// event is key.updated (UpdatedEvent), written whenever a change is.
	Update(ctx context.Context, id string, p Patch, a Audit) (apikey.Key, error)
	// ReportLeak records, at at, that the secret of the key whose digest is
	// d was found in public: a key.leak_reported event (LeakEvent) with
	// what LeakAction decides, judged inside the transaction; when that is
	// LeakRevoked, the key is revoked at at in the same transaction, with
	// a key.revoked event and a change. It returns the key as stored
	// afterwards and the action taken; ErrNotFound if no key has digest d.
	ReportLeak(ctx context.Context, d apikey.Digest, r LeakReport, at time.Time) (apikey.Key, string, error)
	// TouchLastUsed records when keys were last used, by key ID. A time
	// older than the stored one is ignored, so last use never moves
	// backwards; unknown IDs are ignored.
	TouchLastUsed(ctx context.Context, uses map[string]time.Time) error
	// RecordUsage does what TouchLastUsed does with uses and adds counts
	// (Rollup, with the store's RollupState read in the same
	// transaction), in one transaction: the batch of the last-used
	// recorder. Counts of unknown IDs are written too, but no rollup
	// adds them to hours and days.
	RecordUsage(ctx context.Context, uses map[string]time.Time, counts []UsageCount) error
	// Usage returns the counts of key id at step (StepMinute, StepHour or
	// StepDay) whose start is in [from, to), oldest first.
	Usage(ctx context.Context, id string, step time.Duration, from, to time.Time) ([]UsageRow, error)
	// UsageByKey returns, for each key with requests in steps of step
	// starting in [from, to), and of owner unless owner is "", its
	// admitted and refused requests, busiest (OK+Refused) first, ties by
	// key ID.
	UsageByKey(ctx context.Context, owner string, step time.Duration, from, to time.Time) ([]KeyTotal, error)
	// Audit returns the audit events f selects, newest first.
	Audit(ctx context.Context, f AuditFilter) ([]Event, error)
	// Prune rolls the minutes up to RollupTarget(now) into hours and days
	// (RollupState), then deletes the usage and audit events older at now
	// than r keeps (minute rows only once rolled up). Safe to call from
	// several instances at once.
	Prune(ctx context.Context, now time.Time, r Retention) error
	// Changes returns the changes after sequence number since, oldest first,
	// at most limit of them, and the store's current sequence number.
	// A fresh store's sequence is 0. If changes after since were pruned,
	// it returns ErrTooOld with the current sequence: the caller must drop
	// everything it cached.
	Changes(ctx context.Context, since int64, limit int) ([]Change, int64, error)
	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}

// CheckNew checks what a store asks of a key to create, by Create or as
// the new key of Rotate: a key ID (apikey.ValidID), a name that
// apikey.CheckName accepts, a defined scope, an expiry preset, a hint, a
// digest that is not all zeros, a creation time, an expiry time set if and
// only if the preset is not "never" and then after the creation, no
// RevokedAt, ReplacedBy or LastUsedAt, an owner that is "" or that
// apikey.CheckOwner accepts, metadata that apikey.CheckMetadata accepts,
// a creator that apikey.CheckActor accepts, allowed origins and IPs that
// CheckAllowed accepts, and rate limits that CheckRateLimits accepts. Every backend calls it, so that
// none stores a key it cannot read back. The error wraps ErrInvalidKey;
// it never quotes the name, the owner or metadata, and the ID only when it
// is well formed.
func CheckNew(k apikey.Key) error {
	if err := checkNew(k); err != nil {
		if apikey.ValidID(k.ID) {
			return fmt.Errorf("%w %s: %v", ErrInvalidKey, k.ID, err)
		}
		return fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return nil
}

func checkNew(k apikey.Key) error {
	switch {
	case !apikey.ValidID(k.ID):
		return errors.New(`ID is not "key_" and 22 letters or digits`)
	case !k.Scope.Valid():
		return fmt.Errorf("scope %d is not defined", k.Scope)
	case k.Hint == "":
		return errors.New("hint is empty")
	case k.Digest == apikey.Digest{}:
		return errors.New("digest is all zeros")
	case k.CreatedAt.IsZero():
		return errors.New("creation time is not set")
	case !k.RevokedAt.IsZero() || !k.LastUsedAt.IsZero() || k.ReplacedBy != "":
		return errors.New("a new key must not be revoked, used or replaced yet")
	}
	if err := apikey.CheckName(k.Name); err != nil {
		return fmt.Errorf("name %w", err)
	}
	if _, err := apikey.ParseExpiry(string(k.Expiry)); err != nil {
		// ParseExpiry would quote the value whole.
		return errors.New("expiry preset is not one of 1h, 1d, 1w, 1mo, 1y, never")
	}
	switch {
	case k.Expiry == apikey.ExpiryNever && !k.ExpiresAt.IsZero():
		return errors.New("a key that never expires has an expiry time")
	case k.Expiry != apikey.ExpiryNever && !k.ExpiresAt.After(k.CreatedAt):
		return fmt.Errorf("a key of expiry %s must expire after its creation", k.Expiry)
	}
	if k.Owner != "" {
		if err := apikey.CheckOwner(k.Owner); err != nil {
			return fmt.Errorf("owner %w", err)
		}
	}
	if err := apikey.CheckMetadata(k.Metadata); err != nil {
		return fmt.Errorf("metadata %w", err)
	}
	if err := apikey.CheckActor(k.CreatedBy); err != nil {
		return fmt.Errorf("created_by %w", err)
	}
	if err := CheckAllowed(k.AllowedOrigins, k.AllowedIPs); err != nil {
		return err
	}
	return CheckRateLimits(k.RateLimits)
}

// CheckRateLimits reports why limits cannot be a key's RateLimits as
// stored, or nil if they can: a list that ratelimit.CheckLimits accepts
// and returns unchanged (normalised, each window once). Its errors name
// the entry's index and quote at most 12 bytes of it.
func CheckRateLimits(limits []string) error {
	norm, err := ratelimit.CheckLimits(limits)
	if err != nil {
		return fmt.Errorf("rate_limits: %w", err)
	}
	for i := range norm {
		if norm[i] != limits[i] {
			return fmt.Errorf("rate_limits: entry %d is not in normal form (%s, not %s)",
				i, apikey.QuoteInput(norm[i]), apikey.QuoteInput(limits[i]))
		}
	}
	return nil
}

// CheckAllowed reports why origins and ips cannot be a key's
// AllowedOrigins and AllowedIPs as stored, or nil if they can: each a list
// that policy.CheckOrigins or policy.CheckIPs accepts and returns
// unchanged, that is already normalised and without duplicates, so that
// every store holds one form (the key service normalises what it is
// given). Its errors name the list and the entry's index, and quote at
// most 12 bytes of the entry.
func CheckAllowed(origins, ips []string) error {
	for _, l := range []struct {
		name  string
		list  []string
		check func([]string) ([]string, error)
	}{{"allowed_origins", origins, policy.CheckOrigins}, {"allowed_ips", ips, policy.CheckIPs}} {
		norm, err := l.check(l.list)
		if err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		if len(norm) != len(l.list) {
			return fmt.Errorf("%s: holds an entry twice", l.name)
		}
		for i := range norm {
			if norm[i] != l.list[i] {
				return fmt.Errorf("%s: entry %d is not in normal form (%s, not %s)",
					l.name, i, apikey.QuoteInput(norm[i]), apikey.QuoteInput(l.list[i]))
			}
		}
	}
	return nil
}

// Patch lists the fields Store.Update changes; a nil field stays as it is.
type Patch struct {
	// Name, if set, replaces the key's name.
	Name *string
	// Metadata, if set, replaces the key's metadata whole; an empty map
	// clears it (the key then reads back with nil Metadata).
	Metadata *map[string]string
	// AllowedOrigins and AllowedIPs, if set, replace the key's lists whole;
	// an empty list clears one (the key then reads back with nil, and
	// accepts any origin or IP).
	AllowedOrigins *[]string
	AllowedIPs     *[]string
	// RateLimits, if set, replaces the key's rate limits whole; an empty
	// list clears them (the key then reads back with nil, and its scope's
	// default limits apply). What the key used is kept either way: it is
	// counted by key ID and window, not by limit.
	RateLimits *[]string
}

// IsZero reports whether p changes nothing.
func (p Patch) IsZero() bool {
	return p.Name == nil && p.Metadata == nil && p.AllowedOrigins == nil && p.AllowedIPs == nil &&
		p.RateLimits == nil
}

// CheckPatch checks what a store asks of a patch: a name that
// apikey.CheckName accepts, metadata that apikey.CheckMetadata accepts,
// allowed origins and IPs that CheckAllowed accepts, and rate limits that
// CheckRateLimits accepts. The error wraps ErrInvalidKey and quotes
// neither the name nor metadata.
func CheckPatch(p Patch) error {
	if p.Name != nil {
		if err := apikey.CheckName(*p.Name); err != nil {
			return fmt.Errorf("%w: name %v", ErrInvalidKey, err)
		}
	}
	if p.Metadata != nil {
		if err := apikey.CheckMetadata(*p.Metadata); err != nil {
			return fmt.Errorf("%w: metadata %v", ErrInvalidKey, err)
		}
	}
	var origins, ips []string
	if p.AllowedOrigins != nil {
		origins = *p.AllowedOrigins
	}
	if p.AllowedIPs != nil {
		ips = *p.AllowedIPs
	}
	if err := CheckAllowed(origins, ips); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	if p.RateLimits != nil {
		if err := CheckRateLimits(*p.RateLimits); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidKey, err)
		}
	}
	return nil
}

// Apply returns k with p's fields set. A patch's metadata map and lists are
// copied, and empty ones become nil, as stores read them back.
func (p Patch) Apply(k apikey.Key) apikey.Key {
	if p.Name != nil {
		k.Name = *p.Name
	}
	if p.Metadata != nil {
		k.Metadata = CloneMetadata(*p.Metadata)
	}
	if p.AllowedOrigins != nil {
		k.AllowedOrigins = cloneList(*p.AllowedOrigins)
	}
	if p.AllowedIPs != nil {
		k.AllowedIPs = cloneList(*p.AllowedIPs)
	}
	if p.RateLimits != nil {
		k.RateLimits = cloneList(*p.RateLimits)
	}
	return k
}

// cloneList returns a copy of l, nil if l is empty: how stores give lists
// back.
func cloneList(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return append([]string(nil), l...)
}

// CloneMetadata returns a copy of m, nil if m is empty: how stores give
// metadata back.
func CloneMetadata(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Rotatable returns why the key old, as stored, cannot be rotated at now,
// or nil: ErrRevoked, ErrReplaced or ErrExpired, in that order. Stores
// judge it inside their rotation's transaction; the key service judges it
// first too, to answer without making a key in vain.
func Rotatable(old apikey.Key, now time.Time) error {
	switch {
	case !old.RevokedAt.IsZero():
		return ErrRevoked
	case old.ReplacedBy != "":
		return ErrReplaced
	case old.Expired(now):
		return ErrExpired
	}
	return nil
}

// ErrTooOld is returned by Changes when the changes asked for are no longer
// kept.
var ErrTooOld = errors.New("changes since that sequence are no longer kept")

// Change says that a key changed: it was created, revoked or rotated.
type Change struct {
	// Seq is the change's sequence number, increasing by store.
	Seq int64
	// KeyID is the key that changed.
	KeyID string
	// Digest is the changed key's digest, which a cache is keyed by.
	Digest apikey.Digest
}

// Filter selects keys for List. The zero value of each field but Now
// selects everything; the fields combine with AND.
type Filter struct {
	// Status keeps only keys with this status at Now; zero keeps all.
	Status apikey.Status
	// Now is the time at which Status is judged.
	Now time.Time
	// Scope keeps only keys of this scope; zero keeps all.
	Scope apikey.Scope
	// Owner keeps only the keys of this owner, compared exactly; "" keeps
	// all (the keys of every owner and of none).
	Owner string
	// Query keeps the keys whose ID is Query exactly, or whose name holds
	// Query as a substring, ASCII letters compared without case: every
	// backend folds A-Z to a-z and nothing else, so that "ÉTÉ" does not
	// find "été" on any of them (SQLite's lower() folds ASCII only, and
	// PostgreSQL's would fold by the database's collation). "" keeps all.
	// The text is matched literally: %, _ and \ are not patterns.
	Query string
	// NotUsedSince keeps only the keys not used at or after it: never
	// used, or last used before it (as written; uses still pending in a
	// recorder are the caller's to judge). Zero keeps all.
	NotUsedSince time.Time
	// After keeps only the keys listed after this position, that is
	// created before it, or at the same time with a smaller ID: the next
	// page of a listing. Zero (no ID) starts at the newest key.
	After Position
	// Before keeps only the keys listed before this position: the previous
	// page. List then returns the Limit keys nearest to it, still newest
	// first. Zero (no ID) means no bound. After and Before may not both be
	// set.
	Before Position
	// Limit is the most keys returned; 0 (or less) means no limit.
	Limit int
}

// Position is a place in the listing order (CreatedAt descending, then ID
// descending): the position of the key with that CreatedAt and ID, which
// need not exist any more. CreatedAt is taken to the microsecond.
type Position struct {
	CreatedAt time.Time
	ID        string
}

// IsZero reports whether p is no position.
func (p Position) IsZero() bool { return p.ID == "" }

// PositionOf returns the position of k in the listing order.
func PositionOf(k apikey.Key) Position { return Position{CreatedAt: k.CreatedAt, ID: k.ID} }

// FoldQuery returns q as every backend compares it with names: ASCII
// letters lowered, every other character as it is.
func FoldQuery(q string) string {
	b := []byte(q)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Notifier is implemented by stores that push changes made by other
// processes as they happen (postgres, with LISTEN/NOTIFY). A receive on the
// channel means "the sequence may have moved: call Changes"; notices may be
// merged or lost, so a reader also polls. The channel is closed by Close.
type Notifier interface {
	Notices() <-chan struct{}
}
