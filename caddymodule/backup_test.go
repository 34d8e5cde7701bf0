package caddymodule

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

const testDB = sqliteHeader + "rest of the database"

// TestWriteAtomically checks that apikey backup puts a whole database in
// place or nothing: a cut answer, a body that is not SQLite, a failed
// read and an existing file without --force all leave the target as it
// was and no temporary file behind.
func TestWriteAtomically(t *testing.T) {
	for _, tt := range []struct {
		name    string
		body    io.Reader
		size    int64
		replace bool
		old     string // the target's content before, "" for none
		wantErr string
	}{
		{"new file", strings.NewReader(testDB), int64(len(testDB)), false, "", ""},
		{"unknown length", strings.NewReader(testDB), -1, false, "", ""},
		{"replaced with force", strings.NewReader(testDB), int64(len(testDB)), true, "old", ""},
		{"cut answer", strings.NewReader(testDB[:20]), int64(len(testDB)), false, "", "ended after 20 of 36 bytes"},
		{"not a database", strings.NewReader("<html>hello</html>, long enough"), -1, false, "", "not an SQLite database"},
		{"failed read", iotest.ErrReader(errors.New("connection reset")), -1, true, "old", "connection reset"},
		{"existing file kept without force", strings.NewReader(testDB), int64(len(testDB)), false, "old", "file exists"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "keys-backup.db")
			if tt.old != "" {
				if err := os.WriteFile(file, []byte(tt.old), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			n, err := writeAtomically(file, tt.replace, tt.body, tt.size)
			got, _ := os.ReadFile(file)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
				if string(got) != tt.old {
					t.Errorf("target holds %q after a failure, want %q", got, tt.old)
				}
			} else {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if string(got) != testDB || n != int64(len(testDB)) {
					t.Errorf("target holds %q (%d written), want the database", got, n)
				}
				info, _ := os.Stat(file)
				if info.Mode().Perm() != 0o600 {
					t.Errorf("mode %v, want 0600", info.Mode().Perm())
				}
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.Name() != "keys-backup.db" {
					t.Errorf("left behind: %s", e.Name())
				}
			}
		})
	}
}
