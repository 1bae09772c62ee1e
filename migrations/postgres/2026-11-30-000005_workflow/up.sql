-- The issue workflow (issue 7): due times and rejected events in an issue's history, users who can be
-- switched off, device tokens with an id that can be revoked, the audit trail, and login attempts
-- for the rate limit (in the database, so that it holds across instances).

ALTER TABLE issues ADD COLUMN due_at TEXT;
CREATE INDEX issues_status_due ON issues (status, due_at);

ALTER TABLE issue_events ADD COLUMN due_at TEXT;
-- Set when the event was kept but not applied (no longer possible when it arrived): why.
ALTER TABLE issue_events ADD COLUMN rejected_reason TEXT;

ALTER TABLE users ADD COLUMN active BOOLEAN NOT NULL DEFAULT TRUE;

ALTER TABLE device_tokens ADD COLUMN id TEXT;
ALTER TABLE device_tokens ADD COLUMN revoked_at TEXT;
UPDATE device_tokens SET id = substr(token_hash, 1, 32);
CREATE UNIQUE INDEX device_tokens_id ON device_tokens (id);

-- Who did what, when, from which device. Written in the transaction of the change it records.
CREATE TABLE audit (
    seq BIGSERIAL PRIMARY KEY,
    at TEXT NOT NULL,
    actor_id TEXT,
    actor_name TEXT,
    token_id TEXT,
    device_name TEXT,
    address TEXT,
    kind TEXT NOT NULL,
    subject TEXT,
    detail_json TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_actor ON audit (actor_id, at);
CREATE INDEX audit_kind ON audit (kind, at);

CREATE TABLE login_attempts (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    address TEXT NOT NULL,
    at TEXT NOT NULL,
    success BOOLEAN NOT NULL
);
CREATE INDEX login_attempts_username ON login_attempts (username, at);
CREATE INDEX login_attempts_address ON login_attempts (address, at);
