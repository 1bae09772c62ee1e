-- Coverage kept incrementally: per patrol and segment, the merged stretches its track covered (metres
-- from the segment's start, JSON), their ratio, the times of the first and last counted fix, and the
-- last counted fix itself (JSON), so that the next batch of points joins it.
CREATE TABLE patrol_coverage (
    patrol_id TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    patroller_id TEXT NOT NULL,
    intervals_json TEXT NOT NULL,
    covered_m DOUBLE PRECISION NOT NULL,
    ratio DOUBLE PRECISION NOT NULL,
    first_at TEXT NOT NULL,
    last_at TEXT NOT NULL,
    mark_json TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (patrol_id, segment_id)
);
CREATE INDEX patrol_coverage_segment_last ON patrol_coverage (segment_id, last_at);

-- The flood stage as an admin set it, newest last; until the flood watch derives it from the gauges.
CREATE TABLE flood_stage_settings (
    id TEXT PRIMARY KEY NOT NULL,
    stage TEXT NOT NULL,
    set_by TEXT NOT NULL,
    set_at TEXT NOT NULL,
    note TEXT
);
