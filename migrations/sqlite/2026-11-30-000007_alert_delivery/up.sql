-- Alert delivery: webhooks an admin configures, and the durable outbox of their deliveries.
--
-- A delivery row is written in the same transaction as the alert change it carries (db::alerts::publish
-- calls db::webhooks::enqueue), one per matching webhook. `seq` is that change's change-log seq, so the
-- rows of one webhook become visible in seq order (the change-log lock; see ARCHITECTURE.md), and a
-- delivery is sent only when no earlier one of its webhook is still pending (head of line per webhook).
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    -- Signs every delivery (HMAC-SHA256); never shown back in full.
    secret TEXT NOT NULL,
    -- Alert kinds, comma-separated; empty = every kind.
    kinds TEXT NOT NULL,
    -- generic, wecom or dingtalk.
    format TEXT NOT NULL,
    include_drill BOOLEAN NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    -- Deleted webhooks stay for their delivery history; their pending deliveries are cancelled.
    deleted_at TEXT
);
CREATE TABLE webhook_deliveries (
    -- Also the Idempotency-Key of every attempt.
    id TEXT PRIMARY KEY NOT NULL,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id),
    seq BIGINT NOT NULL,
    alert_id TEXT NOT NULL,
    -- raised, acknowledged or resolved.
    event TEXT NOT NULL,
    -- The alert as it was at this change.
    alert_json TEXT NOT NULL,
    -- pending, delivered, failed (gave up) or cancelled (webhook deleted).
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    -- Held by the instance sending it (a conditional UPDATE takes it); expires if that instance dies.
    lease_until TEXT,
    leased_by TEXT,
    last_status BIGINT,
    last_error TEXT,
    -- Every attempt: when, the answer, and the delay chosen before the next one (JSON array).
    history_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE UNIQUE INDEX webhook_deliveries_order ON webhook_deliveries (webhook_id, seq);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
