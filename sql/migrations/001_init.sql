-- recoveryd records, in the shape of the requirement's tables.
CREATE TABLE IF NOT EXISTS fault_records (
    id UUID PRIMARY KEY,
    node_id VARCHAR(255) NOT NULL,
    fault_type VARCHAR(100) NOT NULL,
    severity_level VARCHAR(50) NOT NULL,
    detected_at TIMESTAMP WITH TIME ZONE,
    resolved_at TIMESTAMP WITH TIME ZONE,
    recovery_action JSONB,
    status VARCHAR(50),
    metadata JSONB
);
CREATE INDEX IF NOT EXISTS fault_records_node_id ON fault_records (node_id, detected_at);

CREATE TABLE IF NOT EXISTS task_recovery (
    id UUID PRIMARY KEY,
    original_task_id UUID NOT NULL,
    failed_node_id VARCHAR(255),
    recovery_node_id VARCHAR(255),
    recovery_strategy VARCHAR(100),
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    success BOOLEAN,
    error_message TEXT
);
CREATE INDEX IF NOT EXISTS task_recovery_task ON task_recovery (original_task_id);
