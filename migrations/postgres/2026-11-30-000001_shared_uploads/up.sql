-- Uploads shared by several server instances: the offset (how many bytes are stored as chunk objects)
-- and the lease of the one PATCH allowed to write at a time live in the database, not in one
-- instance's memory or disk. `upload_offset`, not `offset`: that is a reserved word. Uploads in
-- progress when this runs start again from 0 (their old part files are swept as orphans).
ALTER TABLE uploads ADD COLUMN upload_offset BIGINT NOT NULL DEFAULT 0;
ALTER TABLE uploads ADD COLUMN lease_until TEXT;
ALTER TABLE uploads ADD COLUMN lease_owner TEXT;
