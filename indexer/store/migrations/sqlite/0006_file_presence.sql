-- Version 4: whether each file's object is in the dataset's storage site, as the batch
-- presence check at sync time found it (1 / 0; NULL = not checked, no site, not stored here).
ALTER TABLE files ADD COLUMN in_storage INTEGER;
