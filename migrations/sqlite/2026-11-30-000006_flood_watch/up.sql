-- Flood watch: gauge stations, their readings, each station's stage, response levels, drills.
CREATE TABLE stations (
    id TEXT PRIMARY KEY NOT NULL,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    name_en TEXT,
    river TEXT NOT NULL,
    lon DOUBLE PRECISION,
    lat DOUBLE PRECISION,
    datum TEXT,
    watch_m DOUBLE PRECISION NOT NULL,
    warning_m DOUBLE PRECISION NOT NULL,
    guarantee_m DOUBLE PRECISION NOT NULL,
    created_at TEXT NOT NULL
);

-- One row per station, series and observed time. series is 'real', or a drill's id: drill readings
-- are never real levels. stage is the station's stage after this reading (hysteresis over the series
-- in time order), kept so that a late reading is folded in from the reading before it.
CREATE TABLE station_readings (
    station_id TEXT NOT NULL,
    series TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    level_m DOUBLE PRECISION NOT NULL,
    stage TEXT NOT NULL,
    rise_m DOUBLE PRECISION NOT NULL,
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (station_id, series, observed_at)
);

-- A station's stage now, per series: the stage, the observed time of the reading that entered it, the
-- latest reading, and whether the rapid-rise signal is on.
CREATE TABLE station_stages (
    station_id TEXT NOT NULL,
    series TEXT NOT NULL,
    stage TEXT NOT NULL,
    since TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    level_m DOUBLE PRECISION NOT NULL,
    rising BOOLEAN NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (station_id, series)
);

-- Every declaration (level I..IV) and lifting (level NULL) of a river's emergency response; the
-- latest row per river is in force.
CREATE TABLE response_levels (
    id TEXT PRIMARY KEY NOT NULL,
    river TEXT NOT NULL,
    level TEXT,
    declared_by TEXT NOT NULL,
    declared_at TEXT NOT NULL,
    note TEXT
);
CREATE INDEX response_levels_river ON response_levels (river, declared_at);

-- Drills: a hydrograph replayed for a station at a speed, by a task in the server that started it.
CREATE TABLE drills (
    id TEXT PRIMARY KEY NOT NULL,
    station_id TEXT NOT NULL,
    speed DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    series_json TEXT NOT NULL,
    readings_total BIGINT NOT NULL,
    readings_fed BIGINT NOT NULL,
    started_by TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT
);
