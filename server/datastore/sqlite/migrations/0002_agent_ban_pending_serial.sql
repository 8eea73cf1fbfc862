-- Schema version 2: agent bans (`agent ban`) and pending agent SVIDs.
-- A banned agent's record is kept with banned = 1 so that its ID can
-- neither renew nor attest again until an operator deletes the record.
-- new_serial_number is the serial of the SVID the last renewal issued,
-- until the agent first uses it ('' when none is pending).

ALTER TABLE agents ADD COLUMN banned INTEGER NOT NULL DEFAULT 0 CHECK (banned IN (0, 1));
ALTER TABLE agents ADD COLUMN new_serial_number TEXT NOT NULL DEFAULT '';
