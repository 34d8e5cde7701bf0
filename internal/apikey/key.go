package apikey

import (
	"crypto/rand"
	"fmt"
	"time"
)

// Key is a stored API key: everything about it except its secret, which is
// never kept. Times are UTC; a zero time means "not set" (never expires, not
// revoked, never used).
type Key struct {
	// ID identifies the key in lists, logs and headers: "key_" and 22
	// base62 characters. It is not secret.
	ID string
	// Name is the label people gave the key, such as "CI/CD Pipeline".
	Name string
	// Scope says which routes accept the key.
	Scope Scope
	// Expiry is the preset the key was created with; rotation gives the
	// new key the same lifetime.
	Expiry Expiry
	// Hint helps people recognise the key: "dk_…" and its last 4 characters.
	Hint string
	// Digest is the SHA-256 of the whole key, the only form it is stored in.
	Digest Digest
	// CreatedAt is when the key was created.
	CreatedAt time.Time
	// ExpiresAt is when the key stops working; zero for never.
	ExpiresAt time.Time
	// RevokedAt is when the key was revoked; zero while it is not. Once set
	// it never changes.
	RevokedAt time.Time
	// ReplacedBy is the ID of the key that replaced this one in a
	// rotation; empty while none did. Once set it never changes: a key is
	// replaced at most once.
	ReplacedBy string
	// LastUsedAt is the latest request the key authenticated; zero if none.
	LastUsedAt time.Time
	// Owner is the customer the key belongs to ("" for the operator's keys).
	Owner string
	// Metadata is free-form data sent upstream; nil when unset. Never mutated after creation
	// (treat as read-only; an update stores a new map).
	Metadata map[string]string
	// CreatedBy says who created the key.
	CreatedBy Actor
	// AllowedOrigins, AllowedIPs and RateLimits are room for later issues (stored as JSON
	// arrays of strings, [] when unset); nil when unset.
	AllowedOrigins []string
	AllowedIPs     []string
	RateLimits     []string
}

// Status is a key's state at a given time.
type Status uint8

// The statuses a key can be in. Revoked wins over expired: a revoked key
// stays "revoked" after its expiry passes.
const (
	StatusActive Status = iota + 1
	StatusRevoked
	StatusExpired
)

var statusNames = [...]string{StatusActive: "active", StatusRevoked: "revoked", StatusExpired: "expired"}

// Statuses lists every status.
var Statuses = []Status{StatusActive, StatusRevoked, StatusExpired}

// ParseStatus returns the status named s: "active", "revoked" or "expired".
func ParseStatus(s string) (Status, error) {
	for _, st := range Statuses {
		if statusNames[st] == s {
			return st, nil
		}
	}
	return 0, fmt.Errorf("unknown status %s: want one of active, revoked, expired", QuoteInput(s))
}

// String returns the status's name.
func (s Status) String() string {
	if s < StatusActive || s > StatusExpired {
		return fmt.Sprintf("Status(%d)", uint8(s))
	}
	return statusNames[s]
}

// MarshalText implements encoding.TextMarshaler.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Status returns the key's status at now.
func (k *Key) Status(now time.Time) Status {
	switch {
	case !k.RevokedAt.IsZero():
		return StatusRevoked
	case k.Expired(now):
		return StatusExpired
	}
	return StatusActive
}

// Expired reports whether the key's expiry has passed at now. A key expires
// at its ExpiresAt instant exactly.
func (k *Key) Expired(now time.Time) bool {
	return !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt)
}

// IDPrefix starts every key ID.
const IDPrefix = "key_"

// idLength is the number of random base62 characters in an ID (≈131 bits).
const idLength = 22

// NewID returns a new random key ID, such as "key_4fQ9...".
func NewID() (string, error) {
	b := make([]byte, len(IDPrefix)+idLength)
	copy(b, IDPrefix)
	if err := randomBase62(b[len(IDPrefix):]); err != nil {
		return "", err
	}
	return string(b), nil
}

// ValidID reports whether id has the shape of a key ID. Admin requests use
// it to reject garbage before it reaches the store or a log.
func ValidID(id string) bool {
	if len(id) != len(IDPrefix)+idLength || id[:len(IDPrefix)] != IDPrefix {
		return false
	}
	for i := len(IDPrefix); i < len(id); i++ {
		if base62Value[id[i]] < 0 {
			return false
		}
	}
	return true
}

// randomBase62 fills b with uniformly random base62 characters from
// crypto/rand, rejecting bytes ≥ 248 so that no character is more likely
// than another.
func randomBase62(b []byte) error {
	var buf [64]byte
	n := 0
	for n < len(b) {
		if _, err := rand.Read(buf[:]); err != nil {
			return fmt.Errorf("reading random bytes: %w", err)
		}
		for _, c := range buf {
			if c >= 248 { // 248 = 4 * 62
				continue
			}
			b[n] = base62Alphabet[c%62]
			n++
			if n == len(b) {
				break
			}
		}
	}
	return nil
}
