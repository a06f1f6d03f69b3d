-- Where the export stands: every record the cluster changed at or before
-- raft_index is in these tables at its latest version (docs/records.md).
-- One row. The engine moves it with export_advance() in the transaction
-- that writes the rows, so the rows and the position commit together.
CREATE TABLE IF NOT EXISTS export_position (
    id SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    raft_index BIGINT NOT NULL DEFAULT 0,
    replica_id BIGINT NOT NULL DEFAULT 0,
    raft_term BIGINT NOT NULL DEFAULT 0,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
);
INSERT INTO export_position (id) VALUES (1) ON CONFLICT (id) DO NOTHING;

-- Moves the position from `expected` to `new_index`; raises (SQLSTATE
-- 40001, so the transaction rolls back) when another leader moved it
-- first: the caller reads the position again and exports from there.
CREATE OR REPLACE FUNCTION export_advance(expected BIGINT, new_index BIGINT, replica BIGINT,
                                          term BIGINT) RETURNS VOID AS $$
BEGIN
    UPDATE export_position
       SET raft_index = new_index, replica_id = replica, raft_term = term, updated_at = now()
     WHERE id = 1 AND raft_index = expected;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'export position moved: expected %', expected
              USING ERRCODE = 'serialization_failure';
    END IF;
END
$$ LANGUAGE plpgsql;
