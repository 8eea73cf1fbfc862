package sqlite

import (
	"database/sql"

	"github.com/hallmarkid/hallmark/server/datastore/sqlstore"
)

// RawQuerier runs sqlstore queries on db, for tests that bypass the Store.
func RawQuerier(db *sql.DB) sqlstore.Querier { return q{db} }
