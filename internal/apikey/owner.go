package apikey

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Limits of a key's owner, metadata and creator.
const (
	// MaxOwnerLength is the longest owner, in bytes (owners are ASCII).
	MaxOwnerLength = 128
	// MaxMetadataEntries is the most entries a key's metadata may hold.
	MaxMetadataEntries = 16
	// MaxMetadataNameLength is the longest metadata name, in bytes.
	MaxMetadataNameLength = 32
	// MaxMetadataValueLength is the longest metadata value, in bytes.
	MaxMetadataValueLength = 256
	// MaxActorIDLength is the longest Actor.ID, in bytes.
	MaxActorIDLength = 128
	// MaxPolicyEntries is the most entries each of AllowedOrigins,
	// AllowedIPs and RateLimits may hold, and MaxPolicyEntryLength the
	// longest entry, in bytes, until the issues that give them meaning
	// set their own rules.
	MaxPolicyEntries     = 32
	MaxPolicyEntryLength = 256
)

// The types of Actor.
const (
	ActorAdmin   = "admin"
	ActorConsole = "console"
	ActorSystem  = "system"
)

// Actor is who made a change: Type is "admin" (the admin API), "console"
// or "system" (keygate itself); ID names them and may be "".
type Actor struct {
	Type string
	ID   string
}

// CheckOwner reports why s cannot be a key's owner, or nil if it can: 1 to
// MaxOwnerLength characters from A-Z a-z 0-9 . _ : @ -. Its errors never
// quote s.
func CheckOwner(s string) error {
	if s == "" {
		return errors.New("must not be empty (leave it out for no owner)")
	}
	if len(s) > MaxOwnerLength {
		return fmt.Errorf("must be at most %d characters, not %d", MaxOwnerLength, len(s))
	}
	for i := 0; i < len(s); i++ {
		if !ownerByte(s[i]) {
			return fmt.Errorf("must hold only A-Z a-z 0-9 . _ : @ -, not byte 0x%02x at %d", s[i], i)
		}
	}
	return nil
}

func ownerByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '.', '_', ':', '@', '-':
		return true
	}
	return false
}

// CheckMetadata reports why m cannot be a key's metadata, or nil if it can:
// at most MaxMetadataEntries entries, names matching [a-z][a-z0-9_]{0,31},
// values of at most MaxMetadataValueLength bytes of valid UTF-8 with no
// control or format characters (Cc, Cf), as they are sent upstream in
// headers and placeholders. Its errors name the entry only when its name
// is valid, and never quote a value.
func CheckMetadata(m map[string]string) error {
	if len(m) > MaxMetadataEntries {
		return fmt.Errorf("must hold at most %d entries, not %d", MaxMetadataEntries, len(m))
	}
	for name, value := range m {
		if err := checkMetadataName(name); err != nil {
			return err
		}
		if err := checkText(value, MaxMetadataValueLength); err != nil {
			return fmt.Errorf("value of %s %w", name, err)
		}
	}
	return nil
}

func checkMetadataName(name string) error {
	if name == "" || len(name) > MaxMetadataNameLength {
		return fmt.Errorf("names must be 1 to %d characters, not %d", MaxMetadataNameLength, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z':
		case i > 0 && ('0' <= c && c <= '9' || c == '_'):
		default:
			return errors.New("names must match [a-z][a-z0-9_]{0,31}: a lower-case letter, then lower-case letters, digits or _")
		}
	}
	return nil
}

// checkText reports why s is not at most max bytes of valid UTF-8 without
// control or format characters. Its errors start with a verb phrase
// ("must …") and never quote s.
func checkText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("must be at most %d bytes, not %d", max, len(s))
	}
	if !utf8.ValidString(s) {
		return errors.New("must be valid UTF-8")
	}
	for _, r := range s {
		switch {
		case unicode.Is(unicode.Cc, r):
			return fmt.Errorf("must not hold control characters (%U)", r)
		case unicode.Is(unicode.Cf, r):
			return fmt.Errorf("must not hold format characters (%U)", r)
		}
	}
	return nil
}

// CheckActor reports why a cannot say who made a change, or nil if it can:
// Type is ActorAdmin, ActorConsole or ActorSystem, and ID at most
// MaxActorIDLength bytes of valid UTF-8 without control or format
// characters. Its errors never quote the ID.
func CheckActor(a Actor) error {
	switch a.Type {
	case ActorAdmin, ActorConsole, ActorSystem:
	default:
		return errors.New(`type must be "admin", "console" or "system"`)
	}
	if err := checkText(a.ID, MaxActorIDLength); err != nil {
		return fmt.Errorf("id %w", err)
	}
	return nil
}

// CheckPolicyList reports why list cannot be one of a key's AllowedOrigins,
// AllowedIPs or RateLimits, or nil if it can. These fields are room for the
// issues that give them meaning, which will tighten the rule; until then an
// entry is 1 to MaxPolicyEntryLength bytes of text without control or
// format characters, at most MaxPolicyEntries of them.
func CheckPolicyList(list []string) error {
	if len(list) > MaxPolicyEntries {
		return fmt.Errorf("must hold at most %d entries, not %d", MaxPolicyEntries, len(list))
	}
	for i, e := range list {
		if e == "" {
			return fmt.Errorf("entry %d must not be empty", i)
		}
		if err := checkText(e, MaxPolicyEntryLength); err != nil {
			return fmt.Errorf("entry %d %w", i, err)
		}
	}
	return nil
}
