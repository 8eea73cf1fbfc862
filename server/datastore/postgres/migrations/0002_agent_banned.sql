-- Schema version 2: agent bans (`agent ban`). A banned agent's record is
-- kept with banned = true so that its ID can neither renew nor attest again
-- (on any server) until an operator deletes the record.

ALTER TABLE agents ADD COLUMN banned boolean NOT NULL DEFAULT false;
