package main

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docana/keygate/internal/keystore/sqlite"
)

// TestCopyDatasetRefusesFilesWithoutTheDatasetKeys checks that
// -compare-dataset's check turns away a file that is not a loadbench
// dataset of this key derivation, and that the file handed over is copied,
// never opened in place. (A positive case needs the million-key dataset:
// the benchmark's own runs are that check.)
func TestCopyDatasetRefusesFilesWithoutTheDatasetKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	// A store of the right schema holding only dataset keys 0 and 1.
	partial := filepath.Join(dir, "partial.db")
	s, err := sqlite.Open(ctx, partial)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: filepath.ToSlash(partial)}).String())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		k := keyOf(i)
		if _, err := db.ExecContext(ctx, `INSERT INTO keys (id, name, scope, expiry, hint, digest, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			k.ID, k.Name, k.Scope.String(), string(k.Expiry), k.Hint, k.Digest[:], k.CreatedAt.UnixMicro()); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	notSQLite := filepath.Join(dir, "text.db")
	if err := os.WriteFile(notSQLite, []byte("not a database, just text long enough to be read as a header"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		src     string
		wantErr string
	}{
		{"keys missing", partial, "does not hold dataset key 9999"},
		{"not a database", notSQLite, "reading dataset key 0"},
		{"no such file", filepath.Join(dir, "absent.db"), "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before []byte
			if b, err := os.ReadFile(tt.src); err == nil {
				before = b
			}
			dst := filepath.Join(t.TempDir(), "copy.db")
			err := copyDataset(ctx, tt.src, dst)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("copyDataset(%s) = %v, want an error containing %q", tt.name, err, tt.wantErr)
			}
			if before != nil {
				after, err := os.ReadFile(tt.src)
				if err != nil || string(after) != string(before) {
					t.Errorf("the file handed over changed (err %v)", err)
				}
			}
		})
	}
}
