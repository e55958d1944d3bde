-- A design about to be sent to the NAS is claimed first (seller, sha256): a concurrent
-- upload of the same bytes by the same seller waits for the claimer's row instead of
-- sending the file again. A claim ends with the claimer's insert (same transaction), or is
-- taken over once stale (its process died).
CREATE TABLE design_claims (
    user_id text NOT NULL,
    sha256 text NOT NULL,
    batch_id uuid NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, sha256)
);
CREATE INDEX design_claims_batch ON design_claims (batch_id);
