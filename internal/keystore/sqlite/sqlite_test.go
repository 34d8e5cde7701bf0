package sqlite

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/storetest"
)

// openTemp opens a store in a new file under t.TempDir, closed at cleanup.
func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "keygate", "keys.db"))
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.RunWith(t, func(t *testing.T) keystore.Store { return openTemp(t) }, storetest.Options{
		AgeChanges: func(t *testing.T, ks keystore.Store) {
			s := ks.(*Store)
			if _, err := s.db.ExecContext(t.Context(), `UPDATE changes SET changed_at = changed_at - ?`,
				(changeRetention + time.Minute).Microseconds()); err != nil {
				t.Fatalf("aging changes: %v", err)
			}
		},
		Pair: func(t *testing.T) (keystore.Store, keystore.Store) {
			path := filepath.Join(t.TempDir(), "keys.db")
			var pair [2]keystore.Store
			for i := range pair {
				s, err := Open(t.Context(), path)
				if err != nil {
					t.Fatalf("Open = %v", err)
				}
				t.Cleanup(func() { s.Close() })
				pair[i] = s
			}
			return pair[0], pair[1]
		},
	})
}
