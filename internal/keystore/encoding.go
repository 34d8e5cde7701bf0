package keystore

import (
	"encoding/json"
	"fmt"
)

// The stores keep a key's metadata as a JSON object of strings, "{}" when
// it has none, and AllowedOrigins, AllowedIPs and RateLimits as JSON arrays
// of strings, "[]" when unset. These helpers are the one encoding both
// stores use.

// EncodeMetadata returns m as stored: a JSON object, "{}" for none.
// encoding/json writes the names sorted, so equal maps store equal text.
func EncodeMetadata(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, err := json.Marshal(m)
	if err != nil {
		// A map of strings always marshals.
		panic(fmt.Sprintf("encoding metadata: %v", err))
	}
	return string(b)
}

// DecodeMetadata reads metadata as EncodeMetadata stored it; "{}" (and,
// for robustness, "") is nil.
func DecodeMetadata(s string) (map[string]string, error) {
	if s == "" || s == "{}" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("metadata is not a JSON object of strings: %w", err)
	}
	return CloneMetadata(m), nil
}

// EncodeList returns l as stored: a JSON array, "[]" for none.
func EncodeList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, err := json.Marshal(l)
	if err != nil {
		panic(fmt.Sprintf("encoding list: %v", err))
	}
	return string(b)
}

// DecodeList reads a list as EncodeList stored it; "[]" (and "") is nil.
func DecodeList(s string) ([]string, error) {
	if s == "" || s == "[]" {
		return nil, nil
	}
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("list is not a JSON array of strings: %w", err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}
