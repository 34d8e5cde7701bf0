package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/docana/keygate/internal/keystore"
)

// BackupFile is a consistent copy of a store's database, taken by
// Store.Backup: an open file already removed from the directory, so
// nothing is left on disk however the reader ends. Close it when done.
type BackupFile struct {
	*os.File
	// Size is the length of the copy in bytes.
	Size int64
}

// Backup copies the database as it is at one instant, while the store
// keeps serving, and returns the copy open for reading.
//
// The copy is made by SQLite's VACUUM INTO, which reads the database in
// one read transaction: in WAL mode writers go on meanwhile, and the copy
// holds every transaction committed before it started and none after. It
// is written into a new directory next to the database (the same file
// system, where the store has room and the right to write, not a /tmp
// that may be small or private), as a file of mode 0600 like the
// database, and unlinked as soon as it is open. The copy is a complete
// database in rollback-journal mode with no -wal file beside it, at the
// store's schema version; keygate opens it like any store file.
//
// Like the database, the copy holds keys' digests and never a secret, but
// it is as sensitive as the database: with it, an attacker may test
// guessed secrets offline against the digests.
func (s *Store) Backup(ctx context.Context) (*BackupFile, error) {
	if s.closed.Load() {
		return nil, keystore.ErrClosed
	}
	b, err := s.backup(ctx)
	if err != nil {
		return nil, s.fail("backing up key store", err)
	}
	return b, nil
}

func (s *Store) backup(ctx context.Context) (*BackupFile, error) {
	var seq int
	var name, path string
	if err := s.db.QueryRowContext(ctx, "SELECT seq, name, file FROM pragma_database_list WHERE name = 'main'").Scan(&seq, &name, &path); err != nil {
		return nil, fmt.Errorf("finding the database file: %w", err)
	}
	if path == "" {
		return nil, errors.New("the database has no file")
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), "."+filepath.Base(path)+".backup-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	dst := filepath.Join(dir, "copy.db")
	// VACUUM INTO accepts an existing file if it is empty: create it with
	// the database's mode, which SQLite would not.
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if _, err := s.db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return nil, fmt.Errorf("copying the database: %w", err)
	}
	f, err = os.Open(dst)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	// The deferred RemoveAll unlinks the copy; the open file stays
	// readable until closed.
	return &BackupFile{File: f, Size: info.Size()}, nil
}
