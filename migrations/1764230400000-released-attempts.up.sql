-- An attempt its agent gave back unfinished because the agent stopped (job.released): a served
-- deployment, or a job the drain timeout killed. The job is queued again; the attempt does not
-- count against max_attempts. Agents report it; nothing else writes it.
ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_state_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_state_check
  CHECK (state IN ('DISPATCHED','RUNNING','SUCCEEDED','FAILED','CANCELLED','TIMED_OUT','LOST','RELEASED'));
