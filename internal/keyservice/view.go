package keyservice

import (
	"time"

	"github.com/docana/keygate/internal/apikey"
)

// KeyJSON is a key as the admin API, the CLI and the console show it. Times
// are UTC; a time that is not set is null, and so is ReplacedBy while no
// rotation replaced the key, and Owner for the operator's keys. Metadata is
// {} and the lists [] when unset, never null.
type KeyJSON struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Scope      string     `json:"scope"`
	Status     string     `json:"status"`
	Hint       string     `json:"hint"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	ReplacedBy *string    `json:"replaced_by"`

	Owner          *string           `json:"owner"`
	Metadata       map[string]string `json:"metadata"`
	CreatedBy      ActorJSON         `json:"created_by"`
	AllowedOrigins []string          `json:"allowed_origins"`
	AllowedIPs     []string          `json:"allowed_ips"`
	RateLimits     []string          `json:"rate_limits"`

	// Propagation is set in the answer to a change: which live instances
	// applied it (Service.Confirm).
	Propagation *Propagation `json:"propagation,omitempty"`
}

// ActorJSON is an apikey.Actor as shown: {"type": "admin", "id": "ops@host"}.
type ActorJSON struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// View returns k as shown at now, which decides its status.
func View(k apikey.Key, now time.Time) KeyJSON {
	return KeyJSON{
		ID:         k.ID,
		Name:       k.Name,
		Scope:      k.Scope.String(),
		Status:     k.Status(now).String(),
		Hint:       k.Hint,
		CreatedAt:  k.CreatedAt.UTC(),
		LastUsedAt: optional(k.LastUsedAt),
		ExpiresAt:  optional(k.ExpiresAt),
		RevokedAt:  optional(k.RevokedAt),
		ReplacedBy: optionalID(k.ReplacedBy),

		Owner:          optionalID(k.Owner),
		Metadata:       nonNilMap(k.Metadata),
		CreatedBy:      ActorJSON{Type: k.CreatedBy.Type, ID: k.CreatedBy.ID},
		AllowedOrigins: nonNilList(k.AllowedOrigins),
		AllowedIPs:     nonNilList(k.AllowedIPs),
		RateLimits:     nonNilList(k.RateLimits),
	}
}

// nonNilMap returns m, or an empty map for nil, so that it shows as {}.
// The key's own map is shared, not copied: it is never mutated.
func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// nonNilList returns l, or an empty slice for nil, so that it shows as [].
func nonNilList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func optionalID(id string) *string {
	if id == "" {
		return nil
	}
	return &id
}

func optional(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
