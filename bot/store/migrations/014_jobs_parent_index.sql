-- Jobs made from another (an enhancement's image, an upscale, a cut-out) are looked up by their
-- parent inside admission's transaction (one image per enhancement, one press one tool job);
-- the jobs table is kept forever, so without this index each lookup read all of it.
CREATE INDEX jobs_parent ON jobs (parent_job_id) WHERE parent_job_id IS NOT NULL;
