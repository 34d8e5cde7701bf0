package caddymodule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// sqliteHeader starts every SQLite database file.
const sqliteHeader = "SQLite format 3\x00"

// backupCommand is apikey backup FILE.
func (c cli) backupCommand() *cobra.Command {
	backup := &cobra.Command{
		Use:   "backup FILE [--force]",
		Short: "Writes a consistent copy of the running gateway's SQLite key store to FILE",
		Long: `Asks the running gateway for a copy of its SQLite key store (GET
/apikeys/backup), taken at one instant while it serves, and writes it to
FILE: first to a temporary file in FILE's directory, then renamed, so FILE
is never half written. FILE gets mode 0600. An existing FILE is kept
unless --force is given.

The copy holds the keys' digests, never a secret; it is a complete SQLite
database that keygate opens as it is: restore it with 'store sqlite FILE'
or by putting it in place of keys.db while keygate is stopped. A gateway
using PostgreSQL answers that its store is backed up with pg_dump.`,
		Args: cobra.ExactArgs(1),
		RunE: c.runBackup,
	}
	backup.Flags().Bool("force", false, "Replace FILE if it exists")
	return backup
}

// runBackup runs apikey backup.
func (c cli) runBackup(cmd *cobra.Command, args []string) error {
	file := args[0]
	force, _ := cmd.Flags().GetBool("force")
	if !force {
		if _, err := os.Lstat(file); err == nil {
			return fmt.Errorf("%s exists: use --force to replace it", file)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	addr, err := adminAddress(cmd)
	if err != nil {
		return err
	}
	header := make(http.Header)
	header.Set(actorHeader, cliActor())
	resp, err := caddycmd.AdminAPIRequest(addr, http.MethodGet, adminBackupPath, header, nil)
	if err != nil {
		return adminError(addr, err)
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != backupContentType {
		return fmt.Errorf("the admin API at %s answered %q, not a database (%s): is this keygate?", addr, resp.Header.Get("Content-Type"), backupContentType)
	}
	n, err := writeAtomically(file, force, resp.Body, resp.ContentLength)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Wrote a backup of the key store to %s (%d bytes).\n", file, n)
	return nil
}

// writeAtomically writes r, which must hold an SQLite database of length
// size (-1 for unknown), to a temporary file next to file and then puts it
// in place: renamed over file when replace is set, else linked, which
// fails rather than replace a file made meanwhile.
func writeAtomically(file string, replace bool, r io.Reader, size int64) (int64, error) {
	dir, base := filepath.Split(file)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, r)
	if err == nil && size >= 0 && n != size {
		err = fmt.Errorf("the answer ended after %d of %d bytes", n, size)
	}
	if err == nil {
		err = checkHeader(tmp)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("receiving the backup: %v (%s is unchanged)", err, file)
	}
	if replace {
		err = os.Rename(tmp.Name(), file)
	} else {
		err = os.Link(tmp.Name(), file)
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}

// checkHeader checks that f starts like an SQLite database.
func checkHeader(f *os.File) error {
	head := make([]byte, len(sqliteHeader))
	if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, []byte(sqliteHeader)) {
		return errors.New("the answer is not an SQLite database")
	}
	return nil
}
