package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// GetKV returns the value stored under key; datastore.ErrNotFound if absent.
func (c *Core) GetKV(ctx context.Context, key string) ([]byte, error) {
	defer c.Timed("get_kv")()
	if !c.d.storable(key) {
		return nil, c.errorf("get %q: %w", key, datastore.ErrNotFound)
	}
	var v []byte
	err := c.b.Reader().QueryRow(ctx, `SELECT value FROM kv WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, c.errorf("get %q: %w", key, datastore.ErrNotFound)
	}
	if err != nil {
		return nil, c.errorf("get %q: %w", key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// PutKV stores value under key, replacing any previous value.
func (c *Core) PutKV(ctx context.Context, key string, value []byte) error {
	defer c.Timed("put_kv")()
	if err := c.d.checkText("key", key); err != nil {
		return c.errorf("put: %w", err)
	}
	if value == nil {
		value = []byte{}
	}
	return c.b.WriteEach(ctx, "put", func(q Querier) error {
		if _, err := q.Exec(ctx, c.kvWrite(`INSERT INTO kv (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`), key, value); err != nil {
			return c.errorf("put %q: %w", key, err)
		}
		return nil
	})
}

// SwapKV stores value under key only if the stored value is old, or, with
// old == nil, only if key is absent; one statement, so that of concurrent
// swaps from one old value exactly one succeeds.
func (c *Core) SwapKV(ctx context.Context, key string, old, value []byte) (bool, error) {
	defer c.Timed("swap_kv")()
	if err := c.d.checkText("key", key); err != nil {
		return false, c.errorf("swap: %w", err)
	}
	if value == nil {
		value = []byte{}
	}
	q, args := `INSERT INTO kv (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, []any{key, value}
	if old != nil {
		// UPDATE re-checks its WHERE clause on the row a concurrent swap
		// committed, so the loser matches nothing.
		q, args = `UPDATE kv SET value = $2 WHERE key = $1 AND value = $3`, []any{key, value, old}
	}
	var swapped bool
	err := c.b.WriteEach(ctx, "swap", func(db Querier) error {
		n, err := db.Exec(ctx, c.kvWrite(q), args...)
		if err != nil {
			return c.errorf("swap %q: %w", key, err)
		}
		swapped = n == 1
		return nil
	})
	if err != nil {
		return false, err
	}
	return swapped, nil
}

// kvWrite returns the KV write statement w, announcing the key it wrote
// where the dialect announces KV writes (Dialect.NotifyKV). Its row count
// stays the number of rows written.
func (c *Core) kvWrite(w string) string {
	if c.d.NotifyKV == "" {
		return w
	}
	return "WITH w AS (" + w + " RETURNING key) SELECT " + c.d.NotifyKV + " FROM w"
}
