package keystore_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/sqlite"
	"github.com/docana/keygate/internal/keystore/storetest"
)

func TestMemoryRegistry(t *testing.T) {
	storetest.RunRegistry(t, func(t *testing.T) (keystore.Store, keystore.Registry) {
		s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "keys.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, keystore.NewMemoryRegistry(func(ctx context.Context) (int64, error) {
			_, seq, err := s.Changes(ctx, math.MaxInt64, 1)
			return seq, err
		}, nil)
	})
}
