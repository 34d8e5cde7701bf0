package apikey

import (
	"fmt"
	"strings"
)

// Scope says which endpoints a key may call.
type Scope uint8

// The scopes a key can have. The zero value is no scope, so a Key that was
// never given one is rejected everywhere.
const (
	// ScopeFull keys are accepted on every route.
	ScopeFull Scope = iota + 1
	// ScopeWidget keys are for a web widget running in browsers: the widget
	// chat, history and archive endpoints only.
	ScopeWidget
	// ScopeRoutine keys are for schedulers: triggering routines only.
	ScopeRoutine
)

// Scopes lists every scope in the order they are documented.
var Scopes = []Scope{ScopeFull, ScopeWidget, ScopeRoutine}

var scopeNames = [...]string{ScopeFull: "full", ScopeWidget: "widget", ScopeRoutine: "routine"}

// ParseScope returns the scope named s: "full", "widget" or "routine".
func ParseScope(s string) (Scope, error) {
	for _, sc := range Scopes {
		if scopeNames[sc] == s {
			return sc, nil
		}
	}
	return 0, fmt.Errorf("unknown scope %s: want one of full, widget, routine", QuoteInput(s))
}

// Valid reports whether s is one of the defined scopes.
func (s Scope) Valid() bool { return s >= ScopeFull && s <= ScopeRoutine }

// String returns the scope's name, as written in configs and the admin API.
func (s Scope) String() string {
	if !s.Valid() {
		return fmt.Sprintf("Scope(%d)", uint8(s))
	}
	return scopeNames[s]
}

// MarshalText implements encoding.TextMarshaler.
func (s Scope) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("invalid scope %d", uint8(s))
	}
	return []byte(scopeNames[s]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Scope) UnmarshalText(text []byte) error {
	sc, err := ParseScope(string(text))
	if err != nil {
		return err
	}
	*s = sc
	return nil
}

// ScopeSet is the set of scopes a route accepts. A full key is accepted by
// every set, including the empty one, which therefore means "full keys only".
type ScopeSet uint8

// NewScopeSet returns the set holding scopes.
func NewScopeSet(scopes ...Scope) ScopeSet {
	var set ScopeSet
	for _, s := range scopes {
		set |= 1 << s
	}
	return set | 1<<ScopeFull
}

// Allows reports whether a key of scope s may use a route accepting set.
func (set ScopeSet) Allows(s Scope) bool {
	return s == ScopeFull || (s.Valid() && set&(1<<s) != 0)
}

// Scopes returns the scopes in set, full first.
func (set ScopeSet) Scopes() []Scope {
	var out []Scope
	for _, s := range Scopes {
		if set.Allows(s) {
			out = append(out, s)
		}
	}
	return out
}

// String lists the accepted scopes, comma separated: "full, widget".
func (set ScopeSet) String() string {
	names := make([]string, 0, len(Scopes))
	for _, s := range set.Scopes() {
		names = append(names, s.String())
	}
	return strings.Join(names, ", ")
}
