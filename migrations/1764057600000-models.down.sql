DROP TABLE deployments;
DROP TABLE model_versions;
DROP TABLE models;
ALTER TABLE job_attempts DROP COLUMN progress_seq;
-- Jobs of the new kinds cannot exist in the old schema.
DELETE FROM outbox o USING job_attempts a, jobs j
 WHERE o.msg_id = a.id::text AND a.job_id = j.id AND j.kind <> 'COMMAND';
UPDATE jobs SET current_attempt_id = NULL WHERE kind <> 'COMMAND';
DELETE FROM job_attempts a USING jobs j WHERE a.job_id = j.id AND j.kind <> 'COMMAND';
DELETE FROM jobs WHERE kind <> 'COMMAND';
ALTER TABLE jobs DROP CONSTRAINT jobs_tenant_id_id_key;
ALTER TABLE jobs DROP COLUMN result, DROP COLUMN progress, DROP COLUMN spec;
ALTER TABLE jobs DROP CONSTRAINT jobs_timeout_for_all_but_serve;
ALTER TABLE jobs ALTER COLUMN timeout_seconds SET NOT NULL;
ALTER TABLE jobs DROP CONSTRAINT jobs_command_for_commands;
ALTER TABLE jobs ALTER COLUMN command SET NOT NULL;
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('COMMAND'));
