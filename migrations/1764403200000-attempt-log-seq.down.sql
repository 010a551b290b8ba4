ALTER TABLE job_attempts DROP COLUMN log_seq;
