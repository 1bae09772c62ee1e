-- Alerts the server raises. state is derived: resolved when resolved_at is set, else acknowledged
-- when acknowledged_at is set, else open. While an alert is not resolved it holds its deduplication
-- key (kind, subject, drill) in the partial unique index below, so raising the same alert twice, from
-- any number of instances, is an idempotent insert.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    drill BOOLEAN NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    message_en TEXT NOT NULL,
    segment_id TEXT,
    issue_id TEXT,
    station TEXT,
    -- The user the alert concerns (the reporter of a critical hazard), who sees it on their device.
    owner_id TEXT,
    -- Shown to patrollers too (stage changes), not only to duty leads and admins.
    public BOOLEAN NOT NULL,
    details_json TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    resolved_at TEXT
);
CREATE UNIQUE INDEX alerts_open_key ON alerts (kind, subject, drill) WHERE resolved_at IS NULL;
CREATE INDEX alerts_raised ON alerts (raised_at);
