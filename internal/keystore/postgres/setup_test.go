package postgres

import (
	"net/url"
	"strings"
	"testing"

	"github.com/docana/keygate/internal/keystore/postgres/pgtest"
)

// TestMissingDatabaseSaysHowToCreateIt opens a database that does not
// exist, with a password in the DSN (the test server trusts local users
// and ignores it), and checks that the error says how to create the
// database and never holds the password.
func TestMissingDatabaseSaysHowToCreateIt(t *testing.T) {
	// NewDatabase skips or fails, as every PostgreSQL test does, when the
	// server is missing; its database proves the server answers.
	pgtest.NewDatabase(t)
	dsn := pgtest.WithDatabase(t, pgtest.ServerDSN(), "keygate_missing_db")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Skipf("the test server's DSN is not a URL (%v); this test needs one to add a password", err)
	}
	u.User = url.UserPassword(u.User.Username(), "s3cret-pw")
	s, err := Open(t.Context(), u.String(), nil)
	if err == nil {
		s.Close()
		t.Fatal("Open of a database that does not exist succeeded")
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{
		`database "keygate_missing_db" does not exist`,
		"keygate does not create its database",
		"createdb -h " + u.Hostname() + " -p " + u.Port() + " -O " + u.User.Username() + " keygate_missing_db",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if strings.Contains(msg, "s3cret-pw") {
		t.Error("error holds the password")
	}
}
