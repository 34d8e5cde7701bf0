package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/sqlite"
)

// adminBackupPath is the route of GET /apikeys/backup: a consistent copy
// of the SQLite key store, taken while the gateway serves.
const adminBackupPath = adminAPIKeysPath + "/backup"

// backupContentType is the media type of an SQLite database file
// (registered with IANA).
const backupContentType = "application/vnd.sqlite3"

// backupper is a key store that can copy itself while it serves: the
// sqlite store. The postgres store is backed up with pg_dump.
type backupper interface {
	Backup(ctx context.Context) (*sqlite.BackupFile, error)
}

// backupTimeout bounds copying the store and sending the copy, rather
// than adminTimeout: a large store takes longer to copy and send than a
// key change, and a client reading slowly must not hold the copy open
// for ever.
const backupTimeout = 10 * time.Minute

// handleBackup serves GET /apikeys/backup: the body is the copy, a
// complete SQLite database holding digests and never a secret.
func (adminAPI) handleBackup(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, r, http.MethodGet)
	}
	if len(r.URL.Query()) != 0 {
		return badRequest(errors.New("GET /apikeys/backup takes no query parameters"))
	}
	store, err := runningStore()
	if err != nil {
		if apiErr, ok := errors.AsType[caddy.APIError](err); ok && apiErr.HTTPStatus == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		return err
	}
	return serveBackup(w, r, store)
}

// serveBackup copies store and sends the copy as the answer.
func serveBackup(w http.ResponseWriter, r *http.Request, store keystore.Store) error {
	b, ok := store.(backupper)
	if !ok {
		return caddy.APIError{
			HTTPStatus: http.StatusNotImplemented,
			Err:        errors.New("this key store is PostgreSQL: back up its database with pg_dump (docs/OPERATIONS.md); GET /apikeys/backup copies the sqlite store only"),
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), backupTimeout)
	defer cancel()
	// The admin server sets no write timeout; this one covers the copy and
	// the transfer. An error means the connection cannot have one, which
	// leaves the transfer bounded by the client only.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(backupTimeout))
	f, err := b.Backup(ctx)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		return caddy.APIError{
			HTTPStatus: http.StatusServiceUnavailable,
			Err:        fmt.Errorf("key store unavailable: %v", err),
		}
	}
	defer f.Close()
	w.Header().Set("Content-Type", backupContentType)
	w.Header().Set("Content-Length", strconv.FormatInt(f.Size, 10))
	w.Header().Set("Content-Disposition", `attachment; filename="keys.db"`)
	w.WriteHeader(http.StatusOK)
	// An error here is the client's going away, or the disk failing under
	// the copy: the status is sent, and the short body tells the client,
	// which checks the length.
	_, _ = io.Copy(w, f)
	return nil
}

// runningStore returns the key store of the running config's apikeys app,
// with the errors runningKeyService gives when there is none.
func runningStore() (keystore.Store, error) {
	app, err := caddy.ActiveContext().AppIfConfigured("apikeys")
	if _, err := keyServiceOf(app, err); err != nil {
		return nil, err
	}
	res := app.(*App).res
	if res == nil {
		return nil, caddy.APIError{
			HTTPStatus: http.StatusServiceUnavailable,
			Err:        errors.New("keygate's key store is not open"),
		}
	}
	return res.store, nil
}
