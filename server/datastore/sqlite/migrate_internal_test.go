package sqlite

import "testing"

func TestEmbeddedMigrations(t *testing.T) {
	if SchemaVersion < 1 || len(migrations) != SchemaVersion {
		t.Errorf("embedded migrations: %d, SchemaVersion %d", len(migrations), SchemaVersion)
	}
}
