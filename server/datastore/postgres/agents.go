package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// agentColumns are the columns CreateAgent writes; scanAgent reads them
// and banned.
const agentColumns = `id, attestation_type, selectors, serial_number, expires_at, can_reattest, created_at, updated_at, new_serial_number`

const agentSelect = `SELECT ` + agentColumns + `, banned FROM agents`

// agentArgs encodes the caller-supplied fields of a.
func agentArgs(a *datastore.Agent) (selectors string, expires *int64, err error) {
	if a.ID == "" {
		return "", nil, errors.New("agent ID is empty")
	}
	for _, f := range [][2]string{{"agent ID", a.ID}, {"attestation type", a.AttestationType}, {"serial number", a.SerialNumber},
		{"new serial number", a.NewSerialNumber}} {
		if err := checkText(f[0], f[1]); err != nil {
			return "", nil, err
		}
	}
	if selectors, err = encodeAgentSelectors(a.Selectors); err != nil {
		return "", nil, err
	}
	if expires, err = encodeOptionalTime(a.ExpiresAt); err != nil {
		return "", nil, fmt.Errorf("expiry: %w", err)
	}
	return selectors, expires, nil
}

// CreateAgent inserts a new agent; datastore.ErrAlreadyExists if the ID is
// taken. CreatedAt and UpdatedAt are set by the store. Of concurrent calls
// with one ID, on any number of servers, exactly one succeeds: the insert
// is one statement arbitrated by the primary key.
func (s *Store) CreateAgent(ctx context.Context, a datastore.Agent) error {
	defer s.timed("create_agent")()
	selectors, expires, err := agentArgs(&a)
	if err != nil {
		return fmt.Errorf("postgres: create agent: %w", err)
	}
	now, err := encodeTime(s.now())
	if err != nil {
		return fmt.Errorf("postgres: create agent: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO agents (`+agentColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
		ON CONFLICT (id) DO NOTHING`,
		a.ID, a.AttestationType, selectors, a.SerialNumber, expires, a.CanReattest, now, a.NewSerialNumber)
	if err != nil {
		return fmt.Errorf("postgres: create agent %q: %w", a.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create agent %q: %w", a.ID, datastore.ErrAlreadyExists)
	}
	return nil
}

// UpdateAgent replaces an existing agent's fields; CreatedAt is kept and
// UpdatedAt set by the store. datastore.ErrNotFound if absent,
// datastore.ErrBanned (and no change) if banned: the condition is part of
// the UPDATE, so a ban committed on another server first always wins.
func (s *Store) UpdateAgent(ctx context.Context, a datastore.Agent) error {
	defer s.timed("update_agent")()
	selectors, expires, err := agentArgs(&a)
	if err != nil {
		return fmt.Errorf("postgres: update agent: %w", err)
	}
	now, err := encodeTime(s.now())
	if err != nil {
		return fmt.Errorf("postgres: update agent: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE agents SET attestation_type = $1, selectors = $2, serial_number = $3,
		expires_at = $4, can_reattest = $5, new_serial_number = $6, updated_at = GREATEST($7, created_at)
		WHERE id = $8 AND NOT banned`,
		a.AttestationType, selectors, a.SerialNumber, expires, a.CanReattest, a.NewSerialNumber, now, a.ID)
	if err != nil {
		return fmt.Errorf("postgres: update agent %q: %w", a.ID, err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	// Absent or banned. A ban is never undone in place (only by deleting
	// the row), so a banned answer here is final.
	var banned bool
	err = s.pool.QueryRow(ctx, `SELECT banned FROM agents WHERE id = $1`, a.ID).Scan(&banned)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres: update agent %q: %w", a.ID, datastore.ErrNotFound)
	case err != nil:
		return fmt.Errorf("postgres: update agent %q: %w", a.ID, err)
	case banned:
		return fmt.Errorf("postgres: update agent %q: %w", a.ID, datastore.ErrBanned)
	}
	// Deleted and re-created between the two statements: report it as
	// absent, as the update found it.
	return fmt.Errorf("postgres: update agent %q: %w", a.ID, datastore.ErrNotFound)
}

// PromoteAgentSerial makes the agent's pending serial its current one if
// it is serial, in one conditional UPDATE; datastore.ErrNotFound if absent
// or serial is not pending, datastore.ErrBanned if banned.
func (s *Store) PromoteAgentSerial(ctx context.Context, id, serial string) error {
	defer s.timed("promote_agent_serial")()
	if !storable(id) || !storable(serial) {
		return fmt.Errorf("postgres: promote agent serial %q: %w", id, datastore.ErrNotFound)
	}
	now, err := encodeTime(s.now())
	if err != nil {
		return fmt.Errorf("postgres: promote agent serial: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE agents SET serial_number = new_serial_number, new_serial_number = '',
		updated_at = GREATEST($1, created_at) WHERE id = $2 AND new_serial_number = $3 AND new_serial_number <> '' AND NOT banned`,
		now, id, serial)
	if err != nil {
		return fmt.Errorf("postgres: promote agent serial %q: %w", id, err)
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	var banned bool
	err = s.pool.QueryRow(ctx, `SELECT banned FROM agents WHERE id = $1`, id).Scan(&banned)
	switch {
	case err == nil && banned:
		return fmt.Errorf("postgres: promote agent serial %q: %w", id, datastore.ErrBanned)
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("postgres: promote agent serial %q: %w", id, err)
	}
	return fmt.Errorf("postgres: promote agent serial %q: no such pending serial: %w", id, datastore.ErrNotFound)
}

// BanAgent marks an agent banned, keeping its record; datastore.ErrNotFound
// if absent. Like DeleteAgent, it notifies EvictChannel when it commits,
// so every server ends the agent's streams at once.
func (s *Store) BanAgent(ctx context.Context, id string) error {
	defer s.timed("ban_agent")()
	if !storable(id) {
		return fmt.Errorf("postgres: ban agent %q: %w", id, datastore.ErrNotFound)
	}
	now, err := encodeTime(s.now())
	if err != nil {
		return fmt.Errorf("postgres: ban agent: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `WITH b AS (UPDATE agents SET banned = true, updated_at = GREATEST($2, created_at)
		WHERE id = $1 RETURNING id) SELECT pg_notify($3, id) FROM b`, id, now, EvictChannel)
	if err != nil {
		return fmt.Errorf("postgres: ban agent %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: ban agent %q: %w", id, datastore.ErrNotFound)
	}
	return nil
}

// GetAgent returns one agent; datastore.ErrNotFound if absent.
func (s *Store) GetAgent(ctx context.Context, id string) (datastore.Agent, error) {
	defer s.timed("get_agent")()
	if !storable(id) {
		return datastore.Agent{}, fmt.Errorf("postgres: get agent %q: %w", id, datastore.ErrNotFound)
	}
	a, err := scanAgent(s.pool.QueryRow(ctx, agentSelect+` WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return datastore.Agent{}, fmt.Errorf("postgres: get agent %q: %w", id, datastore.ErrNotFound)
	}
	if err != nil {
		return datastore.Agent{}, fmt.Errorf("postgres: get agent %q: %w", id, err)
	}
	return a, nil
}

// ListAgents returns every agent ordered by ID, byte-wise whatever the
// database's collation.
func (s *Store) ListAgents(ctx context.Context) ([]datastore.Agent, error) {
	defer s.timed("list_agents")()
	rows, err := s.pool.Query(ctx, agentSelect+` ORDER BY id COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list agents: %w", err)
	}
	defer rows.Close()
	var agents []datastore.Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, fmt.Errorf("postgres: list agents: %w", err)
		}
		agents = append(agents, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list agents: %w", err)
	}
	return agents, nil
}

// DeleteAgent evicts an agent; datastore.ErrNotFound if absent. Every
// server sees the eviction at its next read of the agent, and watchers of
// WatchAgentEvictions hear of it at once.
func (s *Store) DeleteAgent(ctx context.Context, id string) error {
	defer s.timed("delete_agent")()
	if !storable(id) {
		return fmt.Errorf("postgres: delete agent %q: %w", id, datastore.ErrNotFound)
	}
	// One statement: the notification goes out if and only if the row
	// was deleted, when the deletion commits.
	tag, err := s.pool.Exec(ctx, `WITH d AS (DELETE FROM agents WHERE id = $1 RETURNING id)
		SELECT pg_notify($2, id) FROM d`, id, EvictChannel)
	if err != nil {
		return fmt.Errorf("postgres: delete agent %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: delete agent %q: %w", id, datastore.ErrNotFound)
	}
	return nil
}

func scanAgent(row pgx.Row) (datastore.Agent, error) {
	var (
		a                datastore.Agent
		selectors        string
		expires          *int64
		created, updated int64
	)
	if err := row.Scan(&a.ID, &a.AttestationType, &selectors, &a.SerialNumber, &expires, &a.CanReattest,
		&created, &updated, &a.NewSerialNumber, &a.Banned); err != nil {
		return datastore.Agent{}, err
	}
	var err error
	if a.Selectors, err = decodeAgentSelectors(selectors); err != nil {
		return datastore.Agent{}, fmt.Errorf("agent %q: %w", a.ID, err)
	}
	if expires != nil {
		a.ExpiresAt = decodeTime(*expires)
	}
	a.CreatedAt, a.UpdatedAt = decodeTime(created), decodeTime(updated)
	return a, nil
}

// CreateJoinToken stores a token (as its SHA-256 digest);
// datastore.ErrAlreadyExists if it is already stored.
func (s *Store) CreateJoinToken(ctx context.Context, t datastore.JoinToken) error {
	defer s.timed("create_join_token")()
	if t.Token == "" {
		return errors.New("postgres: create join token: token is empty")
	}
	if t.ExpiresAt.IsZero() {
		return errors.New("postgres: create join token: expiry is required")
	}
	exp, err := encodeTime(t.ExpiresAt)
	if err != nil {
		return fmt.Errorf("postgres: create join token: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO join_tokens (token_hash, expires_at) VALUES ($1, $2)
		ON CONFLICT (token_hash) DO NOTHING`, tokenHash(t.Token), exp)
	if err != nil {
		return fmt.Errorf("postgres: create join token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create join token: %w", datastore.ErrAlreadyExists)
	}
	return nil
}

// ConsumeJoinToken deletes the token and returns it. Unknown and expired
// (ExpiresAt <= now) tokens both give exactly datastore.ErrNotFound; an
// expired token is deleted too. The delete is one DELETE ... RETURNING: of
// concurrent consumers on any number of servers, the first takes the row
// lock and the others, once it commits, find no row.
func (s *Store) ConsumeJoinToken(ctx context.Context, token string, now time.Time) (datastore.JoinToken, error) {
	defer s.timed("consume_join_token")()
	nowNanos, err := encodeTime(now)
	if err != nil {
		return datastore.JoinToken{}, fmt.Errorf("postgres: consume join token: %w", err)
	}
	var exp int64
	err = s.pool.QueryRow(ctx, `DELETE FROM join_tokens WHERE token_hash = $1 RETURNING expires_at`,
		tokenHash(token)).Scan(&exp)
	if errors.Is(err, pgx.ErrNoRows) {
		return datastore.JoinToken{}, datastore.ErrNotFound
	}
	if err != nil {
		return datastore.JoinToken{}, fmt.Errorf("postgres: consume join token: %w", err)
	}
	if exp <= nowNanos {
		return datastore.JoinToken{}, datastore.ErrNotFound
	}
	return datastore.JoinToken{Token: token, ExpiresAt: decodeTime(exp)}, nil
}

// PruneJoinTokens removes tokens that expired before t.
func (s *Store) PruneJoinTokens(ctx context.Context, t time.Time) error {
	defer s.timed("prune_join_tokens")()
	n, err := encodeTime(t)
	if err != nil {
		return fmt.Errorf("postgres: prune join tokens: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM join_tokens WHERE expires_at < $1`, n); err != nil {
		return fmt.Errorf("postgres: prune join tokens: %w", err)
	}
	return nil
}

// GetKV returns the value stored under key; datastore.ErrNotFound if absent.
func (s *Store) GetKV(ctx context.Context, key string) ([]byte, error) {
	defer s.timed("get_kv")()
	if !storable(key) {
		return nil, fmt.Errorf("postgres: get %q: %w", key, datastore.ErrNotFound)
	}
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM kv WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("postgres: get %q: %w", key, datastore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: get %q: %w", key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// PutKV stores value under key, replacing any previous value.
func (s *Store) PutKV(ctx context.Context, key string, value []byte) error {
	defer s.timed("put_kv")()
	if err := checkText("key", key); err != nil {
		return fmt.Errorf("postgres: put: %w", err)
	}
	if value == nil {
		value = []byte{}
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO kv (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("postgres: put %q: %w", key, err)
	}
	return nil
}

// SwapKV stores value under key only if the stored value is old, or, with
// old == nil, only if key is absent; one statement, so that of concurrent
// swaps from one old value exactly one succeeds.
func (s *Store) SwapKV(ctx context.Context, key string, old, value []byte) (bool, error) {
	defer s.timed("swap_kv")()
	if err := checkText("key", key); err != nil {
		return false, fmt.Errorf("postgres: swap: %w", err)
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
	tag, err := s.pool.Exec(ctx, q, args...)
	if err != nil {
		return false, fmt.Errorf("postgres: swap %q: %w", key, err)
	}
	return tag.RowsAffected() == 1, nil
}
