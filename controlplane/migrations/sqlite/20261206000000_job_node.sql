-- The node a job is for: `prefetch` jobs (`PUT /v2/cache/{id}`) fill one node's block cache,
-- so only that node's data plane may claim them; NULL (every other kind): any node. The value
-- is the node's `worker_self_reference_url`, as in `cached_images`.
ALTER TABLE jobs ADD COLUMN node TEXT;
