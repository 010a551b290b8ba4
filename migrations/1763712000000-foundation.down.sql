-- Roles are cluster-wide and may serve other databases: they are left in place.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM hearth_app, hearth_system;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM hearth_app, hearth_system;
DROP TABLE outbox;
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_current_attempt_id_fkey;
DROP TABLE job_attempts;
DROP TABLE jobs;
DROP TABLE join_tokens;
DROP TABLE agents;
DROP TABLE api_tokens;
DROP TABLE users;
DROP TABLE organizations;
DROP FUNCTION hearth_authenticate(bytea);
DROP FUNCTION hearth_current_tenant();
