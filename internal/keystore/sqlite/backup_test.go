package sqlite

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docana/keygate/internal/keystore"
)

// TestBackupWhileWriting takes a copy while another goroutine keeps
// creating keys, and checks that the copy opens as a store holding every
// key committed before the backup, each with its change-log row (one
// transaction is never half in the copy), the revocation made before it,
// no secret, and that nothing is left next to the database.
func TestBackupWhileWriting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.db")
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var secrets []string
	var before []string
	for i := range 20 {
		secret, k := newKey(t, "before")
		if err := s.Create(t.Context(), k, keystore.Audit{}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := s.Revoke(t.Context(), k.ID, testNow, keystore.Audit{}); err != nil {
				t.Fatal(err)
			}
		}
		secrets = append(secrets, secret)
		before = append(before, k.ID)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var created atomic.Int64
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, k := newKey(t, "during")
			if err := s.Create(t.Context(), k, keystore.Audit{}); err != nil {
				t.Error(err)
				return
			}
			created.Add(1)
		}
	})
	// Let the writer get going, so the copy is taken among writes.
	for created.Load() < 5 && !t.Failed() {
		time.Sleep(time.Millisecond)
	}
	b, err := s.Backup(t.Context())
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("Backup = %v", err)
	}
	data, err := io.ReadAll(b.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != b.Size {
		t.Errorf("read %d bytes, Size says %d", len(data), b.Size)
	}
	if !bytes.HasPrefix(data, []byte("SQLite format 3\x00")) {
		t.Fatalf("the copy does not start with SQLite's header: %q", data[:min(16, len(data))])
	}
	// Bytes 18 and 19 of the header are 1 in rollback-journal mode, 2 in
	// WAL mode: the copy is one file, with no -wal file to go with it.
	if data[18] != 1 || data[19] != 1 {
		t.Errorf("the copy's file format bytes are %d %d, want 1 1 (rollback journal)", data[18], data[19])
	}
	for _, secret := range secrets {
		if bytes.Contains(data, []byte(secret)) {
			t.Fatal("the copy holds a secret")
		}
	}

	// Nothing but the store's own files is left next to it.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.Contains([]string{"keys.db", "keys.db-wal", "keys.db-shm"}, e.Name()) {
			t.Errorf("left next to the database: %s", e.Name())
		}
	}

	restored := filepath.Join(t.TempDir(), "restored.db")
	if err := os.WriteFile(restored, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(t.Context(), restored)
	if err != nil {
		t.Fatalf("opening the copy: %v", err)
	}
	defer r.Close()
	for i, id := range before {
		k, err := r.Get(t.Context(), id)
		if err != nil {
			t.Fatalf("key %d of before the backup: %v", i, err)
		}
		if revoked := !k.RevokedAt.IsZero(); revoked != (i == 0) {
			t.Errorf("key %d: revoked %v in the copy, want %v", i, revoked, i == 0)
		}
	}
	var keys, changes int
	if err := r.db.QueryRow(`SELECT (SELECT count(*) FROM keys), (SELECT count(DISTINCT key_id) FROM changes)`).Scan(&keys, &changes); err != nil {
		t.Fatal(err)
	}
	if keys != changes {
		t.Errorf("the copy has %d keys but changes for %d: a transaction was cut", keys, changes)
	}
	if keys <= len(before) || int64(keys) > int64(len(before))+created.Load() {
		t.Errorf("the copy has %d keys, want between %d and %d", keys, len(before)+1, int64(len(before))+created.Load())
	}
	t.Logf("copy: %d bytes, %d keys (%d before, %d created while copying)", len(data), keys, len(before), created.Load())
}

func TestBackupOfClosedStore(t *testing.T) {
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.Backup(t.Context()); !errors.Is(err, keystore.ErrClosed) {
		t.Errorf("Backup of a closed store = %v, want ErrClosed", err)
	}
}
