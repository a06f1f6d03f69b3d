-- Audit records (issue 12): who did what, from where, with which outcome.
-- id is the record's sequence number in the cluster (1, 2, ...).
CREATE TABLE IF NOT EXISTS audit_log (
    id BIGINT PRIMARY KEY,
    at TIMESTAMP WITH TIME ZONE NOT NULL,
    principal VARCHAR(255) NOT NULL,
    role VARCHAR(50) NOT NULL,
    source VARCHAR(255),
    method VARCHAR(50),
    action VARCHAR(100) NOT NULL,
    target VARCHAR(255),
    status INTEGER NOT NULL,
    error VARCHAR(100),
    request_id VARCHAR(100),
    cause VARCHAR(100)
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
CREATE INDEX IF NOT EXISTS audit_log_principal ON audit_log (principal, at);
