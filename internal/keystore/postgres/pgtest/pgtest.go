// Package pgtest gives tests a database of their own on a real PostgreSQL
// server, for every package that tests against the postgres key store.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable holding the DSN of the server the
// tests use; its database is where test databases are created from.
const EnvDSN = "KEYGATE_TEST_POSTGRES"

// DefaultDSN is the server used when EnvDSN is not set: a local PostgreSQL
// with trust authentication for user postgres.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerDSN returns the DSN of the test server: EnvDSN, or DefaultDSN.
func ServerDSN() string {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn
	}
	return DefaultDSN
}

// NewDatabase creates an empty database keygate_test_<random> on the test
// server, drops it (ending its sessions) when the test ends, and returns its
// DSN. If the server cannot be reached the test is skipped, naming EnvDSN,
// unless the environment variable CI is set: then it fails, as CI must run
// every test.
func NewDatabase(t testing.TB) (dsn string) {
	t.Helper()
	server := ServerDSN()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL test server unreachable (set %s to its DSN; default %s): %v", EnvDSN, DefaultDSN, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	defer admin.Close(context.Background())

	var b [8]byte
	rand.Read(b[:])
	name := "keygate_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
			return
		}
		defer admin.Close(context.Background())
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping test database %s: %v", name, err)
		}
	})
	return WithDatabase(t, server, name)
}

// WithDatabase returns dsn naming database name instead of its own. It
// handles both URL and keyword/value DSNs.
func WithDatabase(t testing.TB, dsn, name string) string {
	t.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("parsing %s: %v", EnvDSN, err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String()
	}
	// In keyword/value form the last setting of a keyword wins.
	return dsn + " dbname=" + name
}
