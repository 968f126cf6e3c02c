-- What a job needs beyond its image, store and URL, by kind: for `abort_upload`, the
-- multipart upload id or segment prefix to remove (NULL: the object at the URL itself).
-- Upload leftovers are recorded `held` (not claimable) while their upload runs.
ALTER TABLE jobs ADD COLUMN payload TEXT COLLATE "C";
