package pgtest_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/hallmarkid/hallmark/internal/pgtest"
)

func connect(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), connString)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestStartGivesFreshDatabases(t *testing.T) {
	var names []string
	var first string
	t.Run("first", func(t *testing.T) {
		first = pgtest.Start(t)
		conn := connect(t, first)
		var db, user string
		if err := conn.QueryRow(t.Context(), "SELECT current_database(), current_user").Scan(&db, &user); err != nil {
			t.Fatal(err)
		}
		if user != pgtest.Role {
			t.Errorf("connected as %q, want %q", user, pgtest.Role)
		}
		names = append(names, db)
		if _, err := conn.Exec(t.Context(), "CREATE TABLE t (x int)"); err != nil {
			t.Fatalf("create table: %v", err)
		}
		conn.Close(t.Context()) // the drop at cleanup must not depend on this
	})
	t.Run("second", func(t *testing.T) {
		conn := connect(t, pgtest.Start(t))
		var db string
		var tables int
		if err := conn.QueryRow(t.Context(), `SELECT current_database(),
			(SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public')`).Scan(&db, &tables); err != nil {
			t.Fatal(err)
		}
		names = append(names, db)
		if tables != 0 {
			t.Errorf("fresh database has %d tables", tables)
		}
		// The first test's database was dropped when it ended.
		var n int
		if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", names[0]).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("database %s still exists after its test ended", names[0])
		}
	})
	if len(names) == 2 && names[0] == names[1] {
		t.Errorf("two calls returned the same database %s", names[0])
	}
}

func TestConnectionLeftOpenDoesNotBlockCleanup(t *testing.T) {
	t.Run("leak", func(t *testing.T) {
		conn, err := pgx.Connect(t.Context(), pgtest.Start(t))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn // deliberately never closed: DROP ... WITH (FORCE) ends it
	})
}
