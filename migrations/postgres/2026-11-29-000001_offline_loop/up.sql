-- The offline loop: users and device tokens, segments, patrols and tracks, issues and their
-- history, photos and uploads, the mutation journal and the change log.
-- Portable types only: ids and timestamps are TEXT (UUIDs hyphenated, RFC 3339 UTC), counts BIGINT.
-- PostgreSQL's twin of migrations/sqlite/2026-11-29-000001_offline_loop: the same tables and columns.

CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('patroller', 'duty_lead', 'admin')),
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE device_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL
);
CREATE INDEX device_tokens_user ON device_tokens (user_id);

CREATE TABLE segments (
    id TEXT PRIMARY KEY NOT NULL,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    name_en TEXT,
    river TEXT NOT NULL,
    bank TEXT NOT NULL CHECK (bank IN ('left', 'right')),
    line_json TEXT NOT NULL,
    length_m DOUBLE PRECISION NOT NULL,
    start_chainage_m DOUBLE PRECISION NOT NULL,
    patrol_buffer_m DOUBLE PRECISION NOT NULL,
    grid TEXT,
    gauge_station TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE user_segments (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    segment_id TEXT NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, segment_id)
);
CREATE INDEX user_segments_segment ON user_segments (segment_id);

CREATE TABLE patrols (
    id TEXT PRIMARY KEY NOT NULL,
    patroller_id TEXT NOT NULL REFERENCES users (id),
    started_at TEXT NOT NULL,
    ended_at TEXT,
    notes TEXT,
    weather TEXT,
    point_count BIGINT NOT NULL DEFAULT 0,
    recorded_at TEXT NOT NULL
);
CREATE INDEX patrols_patroller ON patrols (patroller_id);

CREATE TABLE patrol_segments (
    patrol_id TEXT NOT NULL REFERENCES patrols (id) ON DELETE CASCADE,
    segment_id TEXT NOT NULL REFERENCES segments (id),
    PRIMARY KEY (patrol_id, segment_id)
);

-- Ordered by the device's sequence of the mutation that carried the point, then its index in it.
CREATE TABLE track_points (
    patrol_id TEXT NOT NULL REFERENCES patrols (id) ON DELETE CASCADE,
    device_seq BIGINT NOT NULL,
    idx BIGINT NOT NULL,
    recorded_at TEXT NOT NULL,
    lon DOUBLE PRECISION NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    accuracy_m DOUBLE PRECISION,
    PRIMARY KEY (patrol_id, device_seq, idx)
);

CREATE TABLE issues (
    id TEXT PRIMARY KEY NOT NULL,
    segment_id TEXT NOT NULL REFERENCES segments (id),
    patrol_id TEXT,
    reporter_id TEXT NOT NULL REFERENCES users (id),
    lon DOUBLE PRECISION NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    chainage_m DOUBLE PRECISION NOT NULL,
    category TEXT NOT NULL,
    severity BIGINT NOT NULL CHECK (severity BETWEEN 1 AND 3),
    outflow TEXT,
    critical BOOLEAN NOT NULL,
    description TEXT NOT NULL,
    status TEXT NOT NULL,
    assignee_id TEXT REFERENCES users (id),
    reported_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX issues_segment ON issues (segment_id);
CREATE INDEX issues_status ON issues (status);
CREATE INDEX issues_reported_at ON issues (reported_at);

CREATE TABLE issue_events (
    id TEXT PRIMARY KEY NOT NULL,
    issue_id TEXT NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    by_id TEXT NOT NULL REFERENCES users (id),
    at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    note TEXT,
    assignee_id TEXT REFERENCES users (id),
    duplicate_of TEXT REFERENCES issues (id)
);
CREATE INDEX issue_events_issue ON issue_events (issue_id);

-- The photos a report (owner_id = the issue id) or an event (owner_id = the event id) expects.
-- Whether a photo has arrived is whether it is in `photos`.
CREATE TABLE issue_photos (
    issue_id TEXT NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    owner_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (owner_id, sha256)
);
CREATE INDEX issue_photos_sha ON issue_photos (sha256);
CREATE INDEX issue_photos_issue ON issue_photos (issue_id);

CREATE TABLE photos (
    sha256 TEXT PRIMARY KEY NOT NULL,
    size_bytes BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    uploaded_by TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL
);

CREATE TABLE uploads (
    id TEXT PRIMARY KEY NOT NULL,
    sha256 TEXT NOT NULL,
    length BIGINT NOT NULL,
    content_type TEXT,
    created_by TEXT NOT NULL REFERENCES users (id),
    created_at TEXT NOT NULL
);

-- Every applied mutation, so that a replay answers `duplicate` with the original result.
CREATE TABLE mutations (
    id TEXT PRIMARY KEY NOT NULL,
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    device_seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    result_json TEXT NOT NULL,
    applied_at TEXT NOT NULL
);
CREATE INDEX mutations_device ON mutations (device_id, device_seq);

-- The change log that pull pages through. `seq` is the server's own order of commits. A sequence
-- value is taken at insert and transactions commit out of order, so every writer takes the change-log
-- advisory lock before its first insert here and holds it to commit (db::changes::record): seqs are
-- then taken and committed in one order. The sequence must keep CACHE 1 (the default), or sessions
-- would hand out seqs from private ranges out of order. The scope columns say who may see the change.
CREATE TABLE changes (
    seq BIGSERIAL PRIMARY KEY,
    entity TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    op TEXT NOT NULL,
    data_json TEXT NOT NULL,
    public BOOLEAN NOT NULL,
    owner_id TEXT,
    segment_id TEXT,
    assignee_id TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX changes_entity ON changes (entity, entity_id);
