-- The device a change came from, when only that device ever wrote the record (a patrol walked on
-- one phone): that device's pull leaves the change out, since it holds the record itself.
ALTER TABLE changes ADD COLUMN origin_device TEXT;
-- The device that started the patrol, while no other device has written to it (NULL after).
ALTER TABLE patrols ADD COLUMN origin_device TEXT;
