package keyservice

import (
	"time"

	"github.com/docana/keygate/internal/apikey"
)

// KeyJSON is a key as the admin API, the CLI and the console show it. Times
// are UTC; a time that is not set is null, and so is ReplacedBy while no
// rotation replaced the key.
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
	}
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
