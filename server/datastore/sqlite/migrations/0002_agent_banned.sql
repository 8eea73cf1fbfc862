-- Schema version 2: agent bans (`agent ban`). A banned agent's record is
-- kept with banned = 1 so that its ID can neither renew nor attest again
-- until an operator deletes the record.

ALTER TABLE agents ADD COLUMN banned INTEGER NOT NULL DEFAULT 0 CHECK (banned IN (0, 1));
