package postgres

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// invalidCatalogName is PostgreSQL's SQLSTATE for a database that does
// not exist.
const invalidCatalogName = "3D000"

// explainMissingDatabase adds to err, an error of the first connection,
// how to create the database when the server said it does not exist:
// keygate creates its tables but never the database, which needs rights
// (CREATEDB) its role should not have. The names come from the DSN's
// parsed configuration, never the DSN itself, which may hold a password.
func explainMissingDatabase(err error, cfg *pgconn.Config) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != invalidCatalogName {
		return err
	}
	return fmt.Errorf("%w; keygate does not create its database: create it first, as a PostgreSQL superuser: createdb -h %s -p %d -O %s %s (docs/OPERATIONS.md, PostgreSQL)",
		err, cfg.Host, cfg.Port, cfg.User, cfg.Database)
}
