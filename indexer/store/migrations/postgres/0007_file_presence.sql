-- Version 5: whether each file's object is in the dataset's storage site, as the batch
-- presence check at sync time found it (NULL = not checked, no site, not stored here).
ALTER TABLE files ADD COLUMN IF NOT EXISTS in_storage BOOLEAN;
