package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// agentColumns are the columns CreateAgent writes; scanAgent reads them
// and banned.
const agentColumns = `id, attestation_type, selectors, serial_number, expires_at, can_reattest, created_at, updated_at, new_serial_number`

const agentSelect = `SELECT ` + agentColumns + `, banned FROM agents`

// agentArgs encodes the caller-supplied fields of a.
func agentArgs(a *datastore.Agent) (selectors string, expires any, err error) {
	if a.ID == "" {
		return "", nil, errors.New("agent ID is empty")
	}
	for _, s := range []string{a.ID, a.AttestationType, a.SerialNumber, a.NewSerialNumber} {
		if !utf8.ValidString(s) {
			return "", nil, errors.New("agent field is not valid UTF-8")
		}
	}
	if selectors, err = encodeSelectors(a.Selectors); err != nil {
		return "", nil, err
	}
	if expires, err = encodeOptionalTime(a.ExpiresAt); err != nil {
		return "", nil, fmt.Errorf("expiry: %w", err)
	}
	return selectors, expires, nil
}

// CreateAgent inserts a new agent; datastore.ErrAlreadyExists if the ID is
// taken. CreatedAt and UpdatedAt are set by the store.
func (s *Store) CreateAgent(ctx context.Context, a datastore.Agent) error {
	defer s.timed("create_agent")()
	selectors, expires, err := agentArgs(&a)
	if err != nil {
		return fmt.Errorf("sqlite: create agent: %w", err)
	}
	now, err := encodeTime(s.now())
	if err != nil {
		return fmt.Errorf("sqlite: create agent: %w", err)
	}
	return s.write(ctx, "create agent", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO agents (`+agentColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`,
			a.ID, a.AttestationType, selectors, a.SerialNumber, expires, a.CanReattest, now, now, a.NewSerialNumber)
		if err != nil {
			return fmt.Errorf("sqlite: create agent %q: %w", a.ID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: create agent %q: %w", a.ID, err)
		}
		if n == 0 {
			return fmt.Errorf("sqlite: create agent %q: %w", a.ID, datastore.ErrAlreadyExists)
		}
		return nil
	})
}

// UpdateAgent replaces an existing agent's fields; CreatedAt is kept and
// UpdatedAt set by the store. datastore.ErrNotFound if absent,
// datastore.ErrBanned (and no change) if banned.
func (s *Store) UpdateAgent(ctx context.Context, a datastore.Agent) error {
	defer s.timed("update_agent")()
	selectors, expires, err := agentArgs(&a)
	if err != nil {
		return fmt.Errorf("sqlite: update agent: %w", err)
	}
	now, err := encodeTime(s.now())
	if err != nil {
		return fmt.Errorf("sqlite: update agent: %w", err)
	}
	return s.write(ctx, "update agent", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE agents SET attestation_type = ?, selectors = ?, serial_number = ?,
			expires_at = ?, can_reattest = ?, new_serial_number = ?, updated_at = max(?, created_at) WHERE id = ? AND banned = 0`,
			a.AttestationType, selectors, a.SerialNumber, expires, a.CanReattest, a.NewSerialNumber, now, a.ID)
		if err != nil {
			return fmt.Errorf("sqlite: update agent %q: %w", a.ID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: update agent %q: %w", a.ID, err)
		}
		if n > 0 {
			return nil
		}
		// Absent, or banned: the write lock is held, so the answer is current.
		var banned bool
		err = tx.QueryRowContext(ctx, `SELECT banned FROM agents WHERE id = ?`, a.ID).Scan(&banned)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: update agent %q: %w", a.ID, datastore.ErrNotFound)
		case err != nil:
			return fmt.Errorf("sqlite: update agent %q: %w", a.ID, err)
		case banned:
			return fmt.Errorf("sqlite: update agent %q: %w", a.ID, datastore.ErrBanned)
		}
		return fmt.Errorf("sqlite: update agent %q: no row changed", a.ID)
	})
}

// PromoteAgentSerial makes the agent's pending serial its current one if
// it is serial; datastore.ErrNotFound if absent or serial is not pending,
// datastore.ErrBanned if banned.
func (s *Store) PromoteAgentSerial(ctx context.Context, id, serial string) error {
	defer s.timed("promote_agent_serial")()
	now, err := encodeTime(s.now())
	if err != nil {
		return fmt.Errorf("sqlite: promote agent serial: %w", err)
	}
	return s.write(ctx, "promote agent serial", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE agents SET serial_number = new_serial_number, new_serial_number = '',
			updated_at = max(?, created_at) WHERE id = ? AND new_serial_number = ? AND new_serial_number != '' AND banned = 0`,
			now, id, serial)
		if err != nil {
			return fmt.Errorf("sqlite: promote agent serial %q: %w", id, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: promote agent serial %q: %w", id, err)
		}
		if n > 0 {
			return nil
		}
		var banned bool
		err = tx.QueryRowContext(ctx, `SELECT banned FROM agents WHERE id = ?`, id).Scan(&banned)
		switch {
		case err == nil && banned:
			return fmt.Errorf("sqlite: promote agent serial %q: %w", id, datastore.ErrBanned)
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("sqlite: promote agent serial %q: %w", id, err)
		}
		return fmt.Errorf("sqlite: promote agent serial %q: no such pending serial: %w", id, datastore.ErrNotFound)
	})
}

// BanAgent marks an agent banned, keeping its record; datastore.ErrNotFound
// if absent.
func (s *Store) BanAgent(ctx context.Context, id string) error {
	defer s.timed("ban_agent")()
	now, err := encodeTime(s.now())
	if err != nil {
		return fmt.Errorf("sqlite: ban agent: %w", err)
	}
	return s.write(ctx, "ban agent", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE agents SET banned = 1, updated_at = max(?, created_at) WHERE id = ?`, now, id)
		if err != nil {
			return fmt.Errorf("sqlite: ban agent %q: %w", id, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: ban agent %q: %w", id, err)
		}
		if n == 0 {
			return fmt.Errorf("sqlite: ban agent %q: %w", id, datastore.ErrNotFound)
		}
		return nil
	})
}

// GetAgent returns one agent; datastore.ErrNotFound if absent.
func (s *Store) GetAgent(ctx context.Context, id string) (datastore.Agent, error) {
	defer s.timed("get_agent")()
	a, err := scanAgent(s.readDB.QueryRowContext(ctx, agentSelect+` WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return datastore.Agent{}, fmt.Errorf("sqlite: get agent %q: %w", id, datastore.ErrNotFound)
	}
	if err != nil {
		return datastore.Agent{}, fmt.Errorf("sqlite: get agent %q: %w", id, err)
	}
	return a, nil
}

// ListAgents returns every agent ordered by ID.
func (s *Store) ListAgents(ctx context.Context) ([]datastore.Agent, error) {
	defer s.timed("list_agents")()
	rows, err := s.readDB.QueryContext(ctx, agentSelect+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list agents: %w", err)
	}
	defer rows.Close()
	var agents []datastore.Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list agents: %w", err)
		}
		agents = append(agents, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list agents: %w", err)
	}
	return agents, nil
}

// DeleteAgent evicts an agent; datastore.ErrNotFound if absent.
func (s *Store) DeleteAgent(ctx context.Context, id string) error {
	defer s.timed("delete_agent")()
	return s.write(ctx, "delete agent", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM agents WHERE id = ?`, id)
		if err != nil {
			return fmt.Errorf("sqlite: delete agent %q: %w", id, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: delete agent %q: %w", id, err)
		}
		if n == 0 {
			return fmt.Errorf("sqlite: delete agent %q: %w", id, datastore.ErrNotFound)
		}
		return nil
	})
}

func scanAgent(sc scanner) (datastore.Agent, error) {
	var (
		a                datastore.Agent
		selectors        string
		expires          sql.NullInt64
		created, updated int64
	)
	if err := sc.Scan(&a.ID, &a.AttestationType, &selectors, &a.SerialNumber, &expires, &a.CanReattest,
		&created, &updated, &a.NewSerialNumber, &a.Banned); err != nil {
		return datastore.Agent{}, err
	}
	var err error
	if a.Selectors, err = decodeSelectors(selectors); err != nil {
		return datastore.Agent{}, fmt.Errorf("agent %q: %w", a.ID, err)
	}
	if expires.Valid {
		a.ExpiresAt = decodeTime(expires.Int64)
	}
	a.CreatedAt, a.UpdatedAt = decodeTime(created), decodeTime(updated)
	return a, nil
}

// CreateJoinToken stores a token (as its SHA-256 digest);
// datastore.ErrAlreadyExists if it is already stored.
func (s *Store) CreateJoinToken(ctx context.Context, t datastore.JoinToken) error {
	defer s.timed("create_join_token")()
	if t.Token == "" {
		return errors.New("sqlite: create join token: token is empty")
	}
	if t.ExpiresAt.IsZero() {
		return errors.New("sqlite: create join token: expiry is required")
	}
	exp, err := encodeTime(t.ExpiresAt)
	if err != nil {
		return fmt.Errorf("sqlite: create join token: %w", err)
	}
	return s.write(ctx, "create join token", func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO join_tokens (token_hash, expires_at) VALUES (?, ?)
			ON CONFLICT (token_hash) DO NOTHING`, tokenHash(t.Token), exp)
		if err != nil {
			return fmt.Errorf("sqlite: create join token: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: create join token: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("sqlite: create join token: %w", datastore.ErrAlreadyExists)
		}
		return nil
	})
}

// ConsumeJoinToken deletes the token and returns it. Unknown and expired
// (ExpiresAt <= now) tokens both give exactly datastore.ErrNotFound; an
// expired token is deleted too. The delete is one statement under the
// write lock, so of concurrent consumers exactly one sees the row.
func (s *Store) ConsumeJoinToken(ctx context.Context, token string, now time.Time) (datastore.JoinToken, error) {
	defer s.timed("consume_join_token")()
	nowNanos, err := encodeTime(now)
	if err != nil {
		return datastore.JoinToken{}, fmt.Errorf("sqlite: consume join token: %w", err)
	}
	var (
		exp   int64
		found bool
	)
	err = s.write(ctx, "consume join token", func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `DELETE FROM join_tokens WHERE token_hash = ? RETURNING expires_at`,
			tokenHash(token)).Scan(&exp)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sqlite: consume join token: %w", err)
		}
		found = true
		return nil
	})
	if err != nil {
		return datastore.JoinToken{}, err
	}
	if !found || exp <= nowNanos {
		return datastore.JoinToken{}, datastore.ErrNotFound
	}
	return datastore.JoinToken{Token: token, ExpiresAt: decodeTime(exp)}, nil
}

// PruneJoinTokens removes tokens that expired before t.
func (s *Store) PruneJoinTokens(ctx context.Context, t time.Time) error {
	defer s.timed("prune_join_tokens")()
	n, err := encodeTime(t)
	if err != nil {
		return fmt.Errorf("sqlite: prune join tokens: %w", err)
	}
	return s.write(ctx, "prune join tokens", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM join_tokens WHERE expires_at < ?`, n); err != nil {
			return fmt.Errorf("sqlite: prune join tokens: %w", err)
		}
		return nil
	})
}

// GetKV returns the value stored under key; datastore.ErrNotFound if absent.
func (s *Store) GetKV(ctx context.Context, key string) ([]byte, error) {
	defer s.timed("get_kv")()
	var v []byte
	err := s.readDB.QueryRowContext(ctx, `SELECT value FROM kv WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: get %q: %w", key, datastore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get %q: %w", key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// PutKV stores value under key, replacing any previous value.
func (s *Store) PutKV(ctx context.Context, key string, value []byte) error {
	defer s.timed("put_kv")()
	if !utf8.ValidString(key) {
		return errors.New("sqlite: put: key is not valid UTF-8")
	}
	if value == nil {
		value = []byte{}
	}
	return s.write(ctx, "put", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO kv (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
			return fmt.Errorf("sqlite: put %q: %w", key, err)
		}
		return nil
	})
}

// SwapKV stores value under key only if the stored value is old, or, with
// old == nil, only if key is absent; one immediate write transaction, so
// that of concurrent swaps from one old value exactly one succeeds.
func (s *Store) SwapKV(ctx context.Context, key string, old, value []byte) (bool, error) {
	defer s.timed("swap_kv")()
	if !utf8.ValidString(key) {
		return false, errors.New("sqlite: swap: key is not valid UTF-8")
	}
	if value == nil {
		value = []byte{}
	}
	var swapped bool
	err := s.write(ctx, "swap", func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		if old == nil {
			res, err = tx.ExecContext(ctx, `INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING`, key, value)
		} else {
			res, err = tx.ExecContext(ctx, `UPDATE kv SET value = ? WHERE key = ? AND value = ?`, value, key, old)
		}
		if err != nil {
			return fmt.Errorf("sqlite: swap %q: %w", key, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("sqlite: swap %q: %w", key, err)
		}
		swapped = n == 1
		return nil
	})
	if err != nil {
		return false, err
	}
	return swapped, nil
}
