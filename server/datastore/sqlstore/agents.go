package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// agentColumns are the columns CreateAgent writes; scanAgent reads them
// and banned.
const agentColumns = `id, attestation_type, selectors, serial_number, expires_at, can_reattest, created_at, updated_at, new_serial_number`

const agentSelect = `SELECT ` + agentColumns + `, banned FROM agents`

// agentArgs encodes the caller-supplied fields of a.
func (c *Core) agentArgs(a *datastore.Agent) (selectors string, expires any, err error) {
	if a.ID == "" {
		return "", nil, errors.New("agent ID is empty")
	}
	for _, f := range [][2]string{{"agent ID", a.ID}, {"attestation type", a.AttestationType}, {"serial number", a.SerialNumber},
		{"new serial number", a.NewSerialNumber}} {
		if err := c.d.checkText(f[0], f[1]); err != nil {
			return "", nil, err
		}
	}
	if selectors, err = encodeJSONSelectors(a.Selectors); err != nil {
		return "", nil, err
	}
	if expires, err = encodeOptionalTime(a.ExpiresAt); err != nil {
		return "", nil, fmt.Errorf("expiry: %w", err)
	}
	return selectors, expires, nil
}

// CreateAgent inserts a new agent; datastore.ErrAlreadyExists if the ID is
// taken. CreatedAt and UpdatedAt are set by the store. Of concurrent calls
// with one ID, in any number of processes, exactly one succeeds: the
// insert is one statement arbitrated by the primary key.
func (c *Core) CreateAgent(ctx context.Context, a datastore.Agent) error {
	defer c.Timed("create_agent")()
	selectors, expires, err := c.agentArgs(&a)
	if err != nil {
		return c.errorf("create agent: %w", err)
	}
	now, err := EncodeTime(c.now())
	if err != nil {
		return c.errorf("create agent: %w", err)
	}
	return c.b.WriteEach(ctx, "create agent", func(q Querier) error {
		n, err := q.Exec(ctx, `INSERT INTO agents (`+agentColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
			ON CONFLICT (id) DO NOTHING`,
			a.ID, a.AttestationType, selectors, a.SerialNumber, expires, a.CanReattest, now, a.NewSerialNumber)
		if err != nil {
			return c.errorf("create agent %q: %w", a.ID, err)
		}
		if n == 0 {
			return c.errorf("create agent %q: %w", a.ID, datastore.ErrAlreadyExists)
		}
		return nil
	})
}

// UpdateAgent replaces an existing agent's fields; CreatedAt is kept and
// UpdatedAt set by the store. datastore.ErrNotFound if absent,
// datastore.ErrBanned (and no change) if banned: the condition is part of
// the UPDATE, so a ban committed first always wins.
func (c *Core) UpdateAgent(ctx context.Context, a datastore.Agent) error {
	defer c.Timed("update_agent")()
	selectors, expires, err := c.agentArgs(&a)
	if err != nil {
		return c.errorf("update agent: %w", err)
	}
	now, err := EncodeTime(c.now())
	if err != nil {
		return c.errorf("update agent: %w", err)
	}
	return c.b.WriteEach(ctx, "update agent", func(q Querier) error {
		n, err := q.Exec(ctx, c.q.updateAgent,
			a.AttestationType, selectors, a.SerialNumber, expires, a.CanReattest, a.NewSerialNumber, now, a.ID)
		if err != nil {
			return c.errorf("update agent %q: %w", a.ID, err)
		}
		if n > 0 {
			return nil
		}
		// Absent or banned. A ban is never undone in place (only by
		// deleting the row), so a banned answer here is final.
		var banned bool
		err = q.QueryRow(ctx, `SELECT banned FROM agents WHERE id = $1`, a.ID).Scan(&banned)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return c.errorf("update agent %q: %w", a.ID, datastore.ErrNotFound)
		case err != nil:
			return c.errorf("update agent %q: %w", a.ID, err)
		case banned:
			return c.errorf("update agent %q: %w", a.ID, datastore.ErrBanned)
		}
		// Deleted and re-created between the two statements (where they
		// are not one transaction): report it as absent, as the update
		// found it.
		return c.errorf("update agent %q: %w", a.ID, datastore.ErrNotFound)
	})
}

// PromoteAgentSerial makes the agent's pending serial its current one if
// it is serial, in one conditional UPDATE; datastore.ErrNotFound if absent
// or serial is not pending, datastore.ErrBanned if banned.
func (c *Core) PromoteAgentSerial(ctx context.Context, id, serial string) error {
	defer c.Timed("promote_agent_serial")()
	if !c.d.storable(id) || !c.d.storable(serial) {
		return c.errorf("promote agent serial %q: %w", id, datastore.ErrNotFound)
	}
	now, err := EncodeTime(c.now())
	if err != nil {
		return c.errorf("promote agent serial: %w", err)
	}
	return c.b.WriteEach(ctx, "promote agent serial", func(q Querier) error {
		n, err := q.Exec(ctx, c.q.promoteAgentSerial, now, id, serial)
		if err != nil {
			return c.errorf("promote agent serial %q: %w", id, err)
		}
		if n > 0 {
			return nil
		}
		var banned bool
		err = q.QueryRow(ctx, `SELECT banned FROM agents WHERE id = $1`, id).Scan(&banned)
		switch {
		case err == nil && banned:
			return c.errorf("promote agent serial %q: %w", id, datastore.ErrBanned)
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			return c.errorf("promote agent serial %q: %w", id, err)
		}
		return c.errorf("promote agent serial %q: no such pending serial: %w", id, datastore.ErrNotFound)
	})
}

// BanAgent marks an agent banned, keeping its record; datastore.ErrNotFound
// if absent.
func (c *Core) BanAgent(ctx context.Context, id string) error {
	defer c.Timed("ban_agent")()
	if !c.d.storable(id) {
		return c.errorf("ban agent %q: %w", id, datastore.ErrNotFound)
	}
	now, err := EncodeTime(c.now())
	if err != nil {
		return c.errorf("ban agent: %w", err)
	}
	return c.changeOneAgent(ctx, "ban agent", id, c.d.BanAgent, id, now)
}

// DeleteAgent evicts an agent; datastore.ErrNotFound if absent.
func (c *Core) DeleteAgent(ctx context.Context, id string) error {
	defer c.Timed("delete_agent")()
	if !c.d.storable(id) {
		return c.errorf("delete agent %q: %w", id, datastore.ErrNotFound)
	}
	return c.changeOneAgent(ctx, "delete agent", id, c.d.DeleteAgent, id)
}

// changeOneAgent runs a statement that changes agent id;
// datastore.ErrNotFound if it changed none.
func (c *Core) changeOneAgent(ctx context.Context, op, id, query string, args ...any) error {
	return c.b.WriteEach(ctx, op, func(q Querier) error {
		n, err := q.Exec(ctx, query, args...)
		if err != nil {
			return c.errorf("%s %q: %w", op, id, err)
		}
		if n == 0 {
			return c.errorf("%s %q: %w", op, id, datastore.ErrNotFound)
		}
		return nil
	})
}

// GetAgent returns one agent; datastore.ErrNotFound if absent.
func (c *Core) GetAgent(ctx context.Context, id string) (datastore.Agent, error) {
	defer c.Timed("get_agent")()
	if !c.d.storable(id) {
		return datastore.Agent{}, c.errorf("get agent %q: %w", id, datastore.ErrNotFound)
	}
	a, err := scanAgent(c.b.Reader().QueryRow(ctx, agentSelect+` WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return datastore.Agent{}, c.errorf("get agent %q: %w", id, datastore.ErrNotFound)
	}
	if err != nil {
		return datastore.Agent{}, c.errorf("get agent %q: %w", id, err)
	}
	return a, nil
}

// ListAgents returns every agent ordered by ID, byte-wise.
func (c *Core) ListAgents(ctx context.Context) ([]datastore.Agent, error) {
	defer c.Timed("list_agents")()
	rows, err := c.b.Reader().Query(ctx, c.q.listAgents)
	if err != nil {
		return nil, c.errorf("list agents: %w", err)
	}
	defer rows.Close()
	var agents []datastore.Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, c.errorf("list agents: %w", err)
		}
		agents = append(agents, a)
	}
	if err := rows.Err(); err != nil {
		return nil, c.errorf("list agents: %w", err)
	}
	return agents, nil
}

func scanAgent(row Row) (datastore.Agent, error) {
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
	if a.Selectors, err = decodeJSONSelectors(selectors); err != nil {
		return datastore.Agent{}, fmt.Errorf("agent %q: %w", a.ID, err)
	}
	if expires != nil {
		a.ExpiresAt = DecodeTime(*expires)
	}
	a.CreatedAt, a.UpdatedAt = DecodeTime(created), DecodeTime(updated)
	return a, nil
}

// CreateJoinToken stores a token (as its SHA-256 digest);
// datastore.ErrAlreadyExists if it is already stored.
func (c *Core) CreateJoinToken(ctx context.Context, t datastore.JoinToken) error {
	defer c.Timed("create_join_token")()
	if t.Token == "" {
		return c.errorf("create join token: token is empty")
	}
	if t.ExpiresAt.IsZero() {
		return c.errorf("create join token: expiry is required")
	}
	exp, err := EncodeTime(t.ExpiresAt)
	if err != nil {
		return c.errorf("create join token: %w", err)
	}
	return c.b.WriteEach(ctx, "create join token", func(q Querier) error {
		n, err := q.Exec(ctx, `INSERT INTO join_tokens (token_hash, expires_at) VALUES ($1, $2)
			ON CONFLICT (token_hash) DO NOTHING`, tokenHash(t.Token), exp)
		if err != nil {
			return c.errorf("create join token: %w", err)
		}
		if n == 0 {
			return c.errorf("create join token: %w", datastore.ErrAlreadyExists)
		}
		return nil
	})
}

// ConsumeJoinToken deletes the token and returns it. Unknown and expired
// (ExpiresAt <= now) tokens both give exactly datastore.ErrNotFound; an
// expired token is deleted too. The delete is one DELETE ... RETURNING: of
// concurrent consumers, in any number of processes, the first deletes the
// row and the others find none.
func (c *Core) ConsumeJoinToken(ctx context.Context, token string, now time.Time) (datastore.JoinToken, error) {
	defer c.Timed("consume_join_token")()
	nowNanos, err := EncodeTime(now)
	if err != nil {
		return datastore.JoinToken{}, c.errorf("consume join token: %w", err)
	}
	var (
		exp   int64
		found bool
	)
	err = c.b.WriteEach(ctx, "consume join token", func(q Querier) error {
		err := q.QueryRow(ctx, `DELETE FROM join_tokens WHERE token_hash = $1 RETURNING expires_at`,
			tokenHash(token)).Scan(&exp)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return c.errorf("consume join token: %w", err)
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
	return datastore.JoinToken{Token: token, ExpiresAt: DecodeTime(exp)}, nil
}

// PruneJoinTokens removes tokens that expired before t.
func (c *Core) PruneJoinTokens(ctx context.Context, t time.Time) error {
	defer c.Timed("prune_join_tokens")()
	n, err := EncodeTime(t)
	if err != nil {
		return c.errorf("prune join tokens: %w", err)
	}
	return c.b.WriteEach(ctx, "prune join tokens", func(q Querier) error {
		if _, err := q.Exec(ctx, `DELETE FROM join_tokens WHERE expires_at < $1`, n); err != nil {
			return c.errorf("prune join tokens: %w", err)
		}
		return nil
	})
}
