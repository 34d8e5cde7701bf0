// Package keystore defines where API keys are kept: the Store interface that
// every backend implements, and the errors they share. The conformance suite
// in keystore/storetest checks a backend against every rule written here;
// each backend lives in a package of its own (keystore/sqlite,
// keystore/postgres).
package keystore

import (
	"context"
	"errors"
	"time"

	"github.com/docana/keygate/internal/apikey"
)

// Errors every backend returns for the same situations, checked with
// errors.Is. Any other error means the store could not answer: the caller
// treats it as "store unavailable", never as "no such key".
var (
	// ErrNotFound: no key has that ID or digest.
	ErrNotFound = errors.New("api key not found")
	// ErrRevoked: the operation needs a key that is not revoked (rotate).
	ErrRevoked = errors.New("api key is revoked")
	// ErrReplaced: the operation needs a key that was not replaced by a
	// rotation (rotate).
	ErrReplaced = errors.New("api key was replaced by a rotation")
	// ErrExpired: the operation needs a key that is not expired (rotate).
	ErrExpired = errors.New("api key is expired")
	// ErrExists: Create was given an ID or digest that is already stored.
	ErrExists = errors.New("api key already exists")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("key store is closed")
)

// Store keeps API keys. Its methods are safe for concurrent use, by
// goroutines of one process and by several processes sharing a backend.
// Every method that changes a key (Create, Revoke, Rotate) bumps the
// store-wide change sequence in the same transaction; TouchLastUsed does not.
// Times are stored with at least microsecond precision and returned in UTC.
type Store interface {
	// Create stores k, whose ID, digest and times are set by the caller
	// (apikey.Format.New). k.RevokedAt and k.LastUsedAt must be zero.
	Create(ctx context.Context, k apikey.Key) error
	// Get returns the key with the given ID, or ErrNotFound.
	Get(ctx context.Context, id string) (apikey.Key, error)
	// GetByDigest returns the key whose secret has digest d, or ErrNotFound.
	GetByDigest(ctx context.Context, d apikey.Digest) (apikey.Key, error)
	// List returns the keys matching f, newest (CreatedAt) first, ties
	// broken by ID descending.
	List(ctx context.Context, f Filter) ([]apikey.Key, error)
	// Revoke sets the key's RevokedAt to at, unless it is already set, and
	// returns the key as stored afterwards. Revoking a revoked key changes
	// nothing and bumps no sequence. ErrNotFound if there is no such key.
	Revoke(ctx context.Context, id string, at time.Time) (apikey.Key, error)
	// Rotate creates next and, in the same transaction, makes the key id
	// expire at oldExpiresAt unless it expires sooner anyway. It returns
	// the old key as stored afterwards. ErrNotFound if there is no such key,
	// ErrRevoked if it is revoked.
	Rotate(ctx context.Context, id string, next apikey.Key, oldExpiresAt time.Time) (apikey.Key, error)
	// TouchLastUsed records when keys were last used, by key ID. A time
	// older than the stored one is ignored, so last use never moves
	// backwards; unknown IDs are ignored.
	TouchLastUsed(ctx context.Context, uses map[string]time.Time) error
	// Changes returns the changes after sequence number since, oldest first,
	// at most limit of them, and the store's current sequence number.
	// A fresh store's sequence is 0. If changes after since were pruned,
	// it returns ErrTooOld with the current sequence: the caller must drop
	// everything it cached.
	Changes(ctx context.Context, since int64, limit int) ([]Change, int64, error)
	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
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

// Filter selects keys for List.
type Filter struct {
	// Status keeps only keys with this status at Now; zero keeps all.
	Status apikey.Status
	// Now is the time at which Status is judged.
	Now time.Time
}

// Notifier is implemented by stores that push changes made by other
// processes as they happen (postgres, with LISTEN/NOTIFY). A receive on the
// channel means "the sequence may have moved: call Changes"; notices may be
// merged or lost, so a reader also polls. The channel is closed by Close.
type Notifier interface {
	Notices() <-chan struct{}
}
