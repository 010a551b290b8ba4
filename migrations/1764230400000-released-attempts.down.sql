-- Before this migration a given-back attempt was recorded as lost with its agent.
UPDATE job_attempts SET state = 'LOST' WHERE state = 'RELEASED';
ALTER TABLE job_attempts DROP CONSTRAINT job_attempts_state_check;
ALTER TABLE job_attempts ADD CONSTRAINT job_attempts_state_check
  CHECK (state IN ('DISPATCHED','RUNNING','SUCCEEDED','FAILED','CANCELLED','TIMED_OUT','LOST'));
