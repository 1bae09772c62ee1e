ALTER TABLE patrols DROP COLUMN origin_device;
ALTER TABLE changes DROP COLUMN origin_device;
