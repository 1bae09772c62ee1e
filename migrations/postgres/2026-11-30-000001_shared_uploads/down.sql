ALTER TABLE uploads DROP COLUMN lease_owner;
ALTER TABLE uploads DROP COLUMN lease_until;
ALTER TABLE uploads DROP COLUMN upload_offset;
