-- The last log batch applied per attempt, as progress_seq is for progress: a redelivered or
-- repeated job.log (same or older seq) no longer appends its lines again.
ALTER TABLE job_attempts ADD COLUMN log_seq integer NOT NULL DEFAULT -1;
