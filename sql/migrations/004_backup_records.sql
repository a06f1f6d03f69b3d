-- Backup records (docs/backup.md): one row per backup, as GET
-- /api/v1/backups shows it. checksum and digest are 16 hex digits.
CREATE TABLE IF NOT EXISTS backup_records (
    id VARCHAR(65) PRIMARY KEY,
    target VARCHAR(64) NOT NULL,
    status VARCHAR(50) NOT NULL,
    raft_index BIGINT,
    raft_term BIGINT,
    size_bytes BIGINT,
    checksum CHAR(16),
    digest CHAR(16),
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    verified_at TIMESTAMP WITH TIME ZONE,
    verify_ok BOOLEAN,
    error TEXT
);
CREATE INDEX IF NOT EXISTS backup_records_started ON backup_records (started_at);
