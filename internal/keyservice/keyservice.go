// Package keyservice is the one implementation of key management: creating,
// listing, showing, revoking and rotating keys, with the validation and the
// JSON view that the admin API, the CLI (through the admin API) and the
// console share.
package keyservice

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/metrics"
	"github.com/docana/keygate/internal/policy"
	"github.com/docana/keygate/internal/ratelimit"
)

// Limits on what a request may ask for.
const (
	// MaxNameLength is the longest key name, in characters.
	MaxNameLength = apikey.MaxNameLength
	// DefaultGrace is how long a rotated key keeps working when the request
	// names no grace period.
	DefaultGrace = 24 * time.Hour
	// MaxGrace is the longest grace period a rotation may give the old key.
	MaxGrace = 7 * 24 * time.Hour
)

// Invalidator drops what a cache holds of keys that changed. The service
// calls it after every change, so that a revocation made here takes effect
// on this instance before the change is reported done.
type Invalidator interface {
	Sync(ctx context.Context) error
}

// PendingUses reports last uses noted but not yet written to the store.
type PendingUses interface {
	Pending(id string) (time.Time, bool)
}

// InputError is a request the service refuses: Field names what is wrong,
// Message says why. The admin API answers it with 400.
type InputError struct {
	Field   string
	Message string
}

// Error returns "<field>: <message>".
func (e *InputError) Error() string { return e.Field + ": " + e.Message }

// Service manages keys in a store. Its methods are safe for concurrent use.
// Besides *InputError, its errors are keystore.ErrNotFound (no such key),
// keystore.ErrRevoked, keystore.ErrReplaced and keystore.ErrExpired (the key
// cannot be rotated), and anything else, which means the store failed.
type Service struct {
	store   keystore.Store
	format  *apikey.Format
	inv     Invalidator
	pending PendingUses
	now     func() time.Time
	errs    storeErrors
	fleet   *Fleet // nil: no confirmation (SetFleet)
	// owned says the service is a view bound to owner (ForOwner).
	owned bool
	owner string
	// audit is who makes the changes of this view (As); the zero value is
	// keygate itself.
	audit keystore.Audit
}

// storeErrors count the store calls that failed, by operation; nil counts
// nothing.
type storeErrors struct {
	create, list, get, revoke, rotate, update prometheus.Counter
}

// CountStoreErrors makes the service count its failed store calls in errs
// (caddy_apikey_store_errors_total), by op: create, list, get, revoke,
// rotate, update. Only failures of the store count: not bad input, a key not found
// or revoked, or a request whose context was cancelled. Call it before the
// service is used.
func (s *Service) CountStoreErrors(errs *prometheus.CounterVec) {
	s.errs = storeErrors{
		create: errs.WithLabelValues(metrics.OpCreate),
		list:   errs.WithLabelValues(metrics.OpList),
		get:    errs.WithLabelValues(metrics.OpGet),
		revoke: errs.WithLabelValues(metrics.OpRevoke),
		rotate: errs.WithLabelValues(metrics.OpRotate),
		update: errs.WithLabelValues(metrics.OpUpdate),
	}
}

// storeFailed counts err in c if it means the store failed.
func storeFailed(c prometheus.Counter, err error) {
	if c == nil || errors.Is(err, context.Canceled) {
		return
	}
	if status, _, _ := Answer(err, ""); status == http.StatusServiceUnavailable {
		c.Inc()
	}
}

// ErrNoOwner is what Create of a view bound to no owner (ForOwner(""))
// returns: such a view sees no key and makes none.
var ErrNoOwner = errors.New("the key service view is bound to no owner")

// New returns a service over store, making keys of format. inv and pending
// may be nil; now defaults to time.Now.
func New(store keystore.Store, format *apikey.Format, inv Invalidator, pending PendingUses, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, format: format, inv: inv, pending: pending, now: now}
}

// Now returns the service's current time in UTC, to the microsecond: the
// precision stores keep, so that a key read back equals the one returned
// when it was made.
func (s *Service) Now() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// ForOwner returns a view of the service bound to owner: List, Get,
// Revoke, Rotate and Update see only that owner's keys (a key of another
// owner, or of none, is keystore.ErrNotFound, as if it did not exist), and
// Create gives every key that owner, whatever NewKey.Owner says. It is how
// a customer's console is confined to its organisation. owner should be
// non-empty (the console answers 403 itself when it resolves to ""): a
// view bound to "" sees no key and Create fails with ErrNoOwner.
func (s *Service) ForOwner(owner string) *Service {
	v := *s
	v.owned, v.owner = true, owner
	return &v
}

// As returns a view of the service bound to who asks: every change made
// through it is written to the audit log with a's actor, remote IP and
// User-Agent. The admin API builds a from the Keygate-Actor
// header and the request; the console from its signed-in user. It
// combines with ForOwner in either order.
func (s *Service) As(a keystore.Audit) *Service {
	v := *s
	v.audit = a
	return &v
}

// NewKey is what Create needs.
type NewKey struct {
	// Name, Scope and ExpiresIn are as people give them: a name that
	// apikey.CheckName accepts, a scope name, an expiry preset.
	Name, Scope, ExpiresIn string
	// Owner is the customer the key belongs to; "" for none.
	Owner string
	// Metadata is sent upstream with the key's requests; nil for none.
	Metadata map[string]string
	// CreatedBy is who asks for the key (required; As does not set it, so
	// that a key's creator is always named by its caller).
	CreatedBy apikey.Actor
	// AllowedOrigins and AllowedIPs restrict where the key may be used
	// from (policy.CheckOrigins, policy.CheckIPs); they are stored
	// normalised. nil or empty for any origin or IP.
	AllowedOrigins, AllowedIPs []string
	// RateLimits are the key's own limits, "N/WINDOW"
	// (ratelimit.CheckLimits), stored normalised; nil or empty for its
	// scope's defaults.
	RateLimits []string
}

// Create makes a key and returns its secret, which is never available again,
// and its record. A view (ForOwner) gives the key its owner.
func (s *Service) Create(ctx context.Context, nk NewKey) (string, apikey.Key, error) {
	if err := checkName(nk.Name); err != nil {
		return "", apikey.Key{}, err
	}
	sc, err := apikey.ParseScope(nk.Scope)
	if err != nil {
		return "", apikey.Key{}, &InputError{Field: "scope", Message: err.Error()}
	}
	exp, err := apikey.ParseExpiry(nk.ExpiresIn)
	if err != nil {
		return "", apikey.Key{}, &InputError{Field: "expires_in", Message: err.Error()}
	}
	if s.owned {
		if s.owner == "" {
			return "", apikey.Key{}, ErrNoOwner
		}
		nk.Owner = s.owner
	}
	if nk.Owner != "" {
		if err := apikey.CheckOwner(nk.Owner); err != nil {
			return "", apikey.Key{}, &InputError{Field: "owner", Message: err.Error()}
		}
	}
	if err := checkMetadata(nk.Metadata); err != nil {
		return "", apikey.Key{}, err
	}
	if err := apikey.CheckActor(nk.CreatedBy); err != nil {
		return "", apikey.Key{}, &InputError{Field: "created_by", Message: err.Error()}
	}
	origins, err := checkList("allowed_origins", nk.AllowedOrigins, policy.CheckOrigins)
	if err != nil {
		return "", apikey.Key{}, err
	}
	ips, err := checkList("allowed_ips", nk.AllowedIPs, policy.CheckIPs)
	if err != nil {
		return "", apikey.Key{}, err
	}
	limits, err := checkList("rate_limits", nk.RateLimits, ratelimit.CheckLimits)
	if err != nil {
		return "", apikey.Key{}, err
	}
	secret, k, err := s.format.New(nk.Name, sc, exp, s.Now())
	if err != nil {
		return "", apikey.Key{}, fmt.Errorf("making key: %w", err)
	}
	k.Owner, k.Metadata, k.CreatedBy = nk.Owner, keystore.CloneMetadata(nk.Metadata), nk.CreatedBy
	k.AllowedOrigins, k.AllowedIPs, k.RateLimits = origins, ips, limits
	if err := s.store.Create(ctx, k, s.audit); err != nil {
		storeFailed(s.errs.create, err)
		return "", apikey.Key{}, fmt.Errorf("storing key %s: %w", k.ID, err)
	}
	// A create invalidates nothing a cache could hold but a negative entry
	// for the same digest, which a fresh random key cannot have; syncing
	// anyway keeps the local sequence current.
	return secret, k, s.sync(ctx)
}

// Get returns the key with the given ID.
func (s *Service) Get(ctx context.Context, id string) (apikey.Key, error) {
	if err := checkID(id); err != nil {
		return apikey.Key{}, err
	}
	k, err := s.get(ctx, id, s.errs.get)
	if err != nil {
		return apikey.Key{}, err
	}
	s.withPending(&k)
	return k, nil
}

// get reads the key id from the store, as this service may see it: a key
// outside a view's owner is keystore.ErrNotFound. A failure of the store
// counts in c.
func (s *Service) get(ctx context.Context, id string, c prometheus.Counter) (apikey.Key, error) {
	k, err := s.store.Get(ctx, id)
	if err == nil && !s.sees(k) {
		err = keystore.ErrNotFound
	}
	if err != nil {
		storeFailed(c, err)
		return apikey.Key{}, fmt.Errorf("getting key %s: %w", id, err)
	}
	return k, nil
}

// sees reports whether the service may see k: always, unless it is a view
// bound to another owner. A key's owner never changes, so what a view saw
// of a key still holds when it then changes it.
func (s *Service) sees(k apikey.Key) bool {
	return !s.owned || (s.owner != "" && k.Owner == s.owner)
}

// KeyUpdate lists the fields Update changes; nil fields stay as they are.
type KeyUpdate struct {
	// Name, if set, renames the key (apikey.CheckName).
	Name *string
	// Metadata, if set, replaces the key's metadata whole; an empty map
	// clears it.
	Metadata *map[string]string
	// AllowedOrigins and AllowedIPs, if set, replace the key's lists whole
	// (normalised as by Create); an empty list clears one, so that the key
	// accepts any origin or IP.
	AllowedOrigins, AllowedIPs *[]string
	// RateLimits, if set, replaces the key's rate limits whole; an empty
	// list clears them (its scope's defaults then apply). What the key
	// used so far still counts.
	RateLimits *[]string
}

// Update changes the key's name, metadata, allowed origins and IPs or rate
// limits and
// returns the key as it is
// afterwards. Like Revoke, it returns after this instance's cache has
// dropped the key, so the change is in force here when it returns, and on
// other instances when they follow the change sequence. A revoked key is
// keystore.ErrRevoked; an update that changes nothing returns the key.
func (s *Service) Update(ctx context.Context, id string, u KeyUpdate) (apikey.Key, error) {
	if err := checkID(id); err != nil {
		return apikey.Key{}, err
	}
	if u.Name != nil {
		if err := checkName(*u.Name); err != nil {
			return apikey.Key{}, err
		}
	}
	if u.Metadata != nil {
		if err := checkMetadata(*u.Metadata); err != nil {
			return apikey.Key{}, err
		}
	}
	p := keystore.Patch{Name: u.Name, Metadata: u.Metadata}
	for _, l := range []struct {
		field string
		in    *[]string
		check func([]string) ([]string, error)
		out   **[]string
	}{
		{"allowed_origins", u.AllowedOrigins, policy.CheckOrigins, &p.AllowedOrigins},
		{"allowed_ips", u.AllowedIPs, policy.CheckIPs, &p.AllowedIPs},
		{"rate_limits", u.RateLimits, ratelimit.CheckLimits, &p.RateLimits},
	} {
		if l.in == nil {
			continue
		}
		norm, err := checkList(l.field, *l.in, l.check)
		if err != nil {
			return apikey.Key{}, err
		}
		*l.out = &norm
	}
	if s.owned {
		if _, err := s.get(ctx, id, s.errs.update); err != nil {
			return apikey.Key{}, err
		}
	}
	k, err := s.store.Update(ctx, id, p, s.audit)
	if err != nil {
		storeFailed(s.errs.update, err)
		return apikey.Key{}, fmt.Errorf("updating key %s: %w", id, err)
	}
	s.withPending(&k)
	return k, s.sync(ctx)
}

// Revoke revokes the key with the given ID, at once and for good. Revoking
// a revoked key changes nothing. It returns after this instance's cache has
// dropped the key.
func (s *Service) Revoke(ctx context.Context, id string) (apikey.Key, error) {
	if err := checkID(id); err != nil {
		return apikey.Key{}, err
	}
	if s.owned {
		if _, err := s.get(ctx, id, s.errs.revoke); err != nil {
			return apikey.Key{}, err
		}
	}
	k, err := s.store.Revoke(ctx, id, s.Now(), s.audit)
	if err != nil {
		storeFailed(s.errs.revoke, err)
		return apikey.Key{}, fmt.Errorf("revoking key %s: %w", id, err)
	}
	s.withPending(&k)
	return k, s.sync(ctx)
}

// Rotate replaces the key with the given ID by a new one with the same name,
// scope, owner, metadata, creator and policy lists, and lifetime counted
// from now, and makes the old key expire after
// grace (a Go duration from 0s to 168h; "" means 24h) unless it expires
// sooner anyway. A key is replaced at most once: a revoked, expired or
// already replaced key is refused (keystore.ErrRevoked, ErrExpired,
// ErrReplaced). It returns the new key's secret, the new key and the old
// one as they are afterwards.
func (s *Service) Rotate(ctx context.Context, id, grace string) (secret string, next, previous apikey.Key, err error) {
	if err := checkID(id); err != nil {
		return "", apikey.Key{}, apikey.Key{}, err
	}
	g, err := parseGrace(grace)
	if err != nil {
		return "", apikey.Key{}, apikey.Key{}, err
	}
	old, err := s.get(ctx, id, s.errs.rotate)
	if err != nil {
		return "", apikey.Key{}, apikey.Key{}, err
	}
	// Judged here to answer without making a key in vain; the store judges
	// it again inside its transaction, which decides races.
	now := s.Now()
	if err := keystore.Rotatable(old, now); err != nil {
		return "", apikey.Key{}, apikey.Key{}, fmt.Errorf("rotating key %s: %w", id, err)
	}
	secret, next, err = s.format.New(old.Name, old.Scope, old.Expiry, now)
	if err != nil {
		return "", apikey.Key{}, apikey.Key{}, fmt.Errorf("making key: %w", err)
	}
	// The new key stands for the old one: same owner, metadata and
	// policies, and the same creator (Rotate is not told who asks).
	next.Owner, next.Metadata, next.CreatedBy = old.Owner, old.Metadata, old.CreatedBy
	next.AllowedOrigins, next.AllowedIPs, next.RateLimits = old.AllowedOrigins, old.AllowedIPs, old.RateLimits
	previous, err = s.store.Rotate(ctx, id, next, now.Add(g), s.audit)
	if err != nil {
		storeFailed(s.errs.rotate, err)
		return "", apikey.Key{}, apikey.Key{}, fmt.Errorf("rotating key %s: %w", id, err)
	}
	s.withPending(&previous)
	return secret, next, previous, s.sync(ctx)
}

// sync makes this instance's cache forget the keys that just changed. The
// change itself is stored by then; if the cache cannot catch up, the caller
// hears of it, since a revocation not yet in force here must not be
// reported done.
func (s *Service) sync(ctx context.Context) error {
	if s.inv == nil {
		return nil
	}
	if err := s.inv.Sync(ctx); err != nil {
		return fmt.Errorf("applying the change to this instance's cache: %w", err)
	}
	return nil
}

// withPending merges a last use noted but not yet written into k.
func (s *Service) withPending(k *apikey.Key) {
	if s.pending == nil {
		return
	}
	if t, ok := s.pending.Pending(k.ID); ok && t.After(k.LastUsedAt) {
		k.LastUsedAt = t.UTC()
	}
}

// checkName applies apikey.CheckName, the one rule for names.
func checkName(name string) error {
	if err := apikey.CheckName(name); err != nil {
		return &InputError{Field: "name", Message: err.Error()}
	}
	return nil
}

// checkMetadata applies apikey.CheckMetadata.
func checkMetadata(m map[string]string) error {
	if err := apikey.CheckMetadata(m); err != nil {
		return &InputError{Field: "metadata", Message: err.Error()}
	}
	return nil
}

// checkList normalises an allowed_origins or allowed_ips list with check
// (policy.CheckOrigins, policy.CheckIPs). A bad entry is an InputError on
// "<field>[<index>]", counting from 0.
func checkList(field string, list []string, check func([]string) ([]string, error)) ([]string, error) {
	norm, err := check(list)
	if err != nil {
		if ee, ok := errors.AsType[*policy.EntryError](err); ok {
			return nil, &InputError{Field: fmt.Sprintf("%s[%d]", field, ee.Index), Message: ee.Err.Error()}
		}
		return nil, &InputError{Field: field, Message: err.Error()}
	}
	return norm, nil
}

func checkID(id string) error {
	if !apikey.ValidID(id) {
		return &InputError{Field: "id", Message: `is not a key ID: IDs are "key_" and 22 letters or digits`}
	}
	return nil
}

func parseGrace(grace string) (time.Duration, error) {
	if grace == "" {
		return DefaultGrace, nil
	}
	g, err := time.ParseDuration(grace)
	if err != nil {
		return 0, &InputError{Field: "grace", Message: "is not a duration such as 24h, 30m or 0s"}
	}
	if g < 0 || g > MaxGrace {
		return 0, &InputError{Field: "grace", Message: fmt.Sprintf("must be between 0s and %s, not %s", "168h", g)}
	}
	return g, nil
}
