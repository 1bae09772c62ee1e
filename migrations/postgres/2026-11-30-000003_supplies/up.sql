-- Flood supplies. Quantities are whole numbers in the item's unit. Stock is never edited directly:
-- every change is a row of the append-only stock_movements ledger, and stock_balances holds the sum of
-- the ledger per depot and item, updated in the same transaction as each movement.
CREATE TABLE depots (
    id TEXT PRIMARY KEY NOT NULL,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    name_en TEXT,
    owner TEXT NOT NULL,
    lon DOUBLE PRECISION,
    lat DOUBLE PRECISION,
    created_at TEXT NOT NULL
);

CREATE TABLE items (
    id TEXT PRIMARY KEY NOT NULL,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    name_en TEXT,
    unit TEXT NOT NULL,
    category TEXT NOT NULL,
    ages BOOLEAN NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE quotas (
    depot_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (depot_id, item_id)
);

-- A delivery of an item to a depot; expires_on is the expiry or next-inspection date of items that age.
CREATE TABLE lots (
    id TEXT PRIMARY KEY NOT NULL,
    depot_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    received_on TEXT NOT NULL,
    expires_on TEXT
);
CREATE INDEX lots_depot_item ON lots (depot_id, item_id);

-- kind: receive, dispatch, return, write_off, adjust. quantity is signed: what the movement adds.
CREATE TABLE stock_movements (
    id TEXT PRIMARY KEY NOT NULL,
    depot_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    lot_id TEXT,
    kind TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    segment_id TEXT,
    by_user TEXT NOT NULL,
    device_at TEXT,
    note TEXT,
    recorded_at TEXT NOT NULL
);
CREATE INDEX stock_movements_depot_item ON stock_movements (depot_id, item_id, recorded_at);

CREATE TABLE stock_balances (
    depot_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    on_hand BIGINT NOT NULL CHECK (on_hand >= 0),
    PRIMARY KEY (depot_id, item_id)
);
