-- Foundation: organizations, users, API tokens, agents, join tokens, jobs, attempts, outbox.
-- Every tenant-owned table has tenant_id, FORCE ROW LEVEL SECURITY and a policy on app.tenant_id.
--
-- Roles (cluster-wide; created once, shared by databases of the same cluster):
--   hearth_app     what the control plane runs as. Not the owner, not superuser, no BYPASSRLS.
--                  NOINHERIT, so membership in hearth_system gives nothing until SET ROLE.
--   hearth_system  for the few cross-tenant duties (token lookup, outbox relay, lease sweep).
--                  It sees every tenant through an explicit policy, never through BYPASSRLS.
-- Every transaction of the control plane starts with set_config('role', …, true), so the same code is
-- correct whether it connected as hearth_app (production), as an owner, or as PGlite's superuser.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hearth_app') THEN
    CREATE ROLE hearth_app LOGIN NOINHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hearth_system') THEN
    CREATE ROLE hearth_system NOLOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
END
$$;
GRANT hearth_system TO hearth_app;
DO $$
BEGIN
  -- Lets a non-superuser migration role (an owner) switch to the app role, as PGlite's superuser can.
  EXECUTE format('GRANT hearth_app TO %I', current_user);
EXCEPTION WHEN others THEN NULL; -- superusers need no grant; a role cannot be granted to itself
END
$$;

CREATE FUNCTION hearth_current_tenant() RETURNS uuid LANGUAGE sql STABLE AS
$$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE TABLE organizations (
  id          uuid PRIMARY KEY,
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id          uuid PRIMARY KEY,
  tenant_id   uuid NOT NULL REFERENCES organizations(id),
  email       text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, email)
);

CREATE TABLE api_tokens (
  id            uuid PRIMARY KEY,
  tenant_id     uuid NOT NULL REFERENCES organizations(id),
  user_id       uuid NOT NULL REFERENCES users(id),
  token_hash    bytea NOT NULL UNIQUE,
  name          text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  last_used_at  timestamptz,
  revoked_at    timestamptz
);

CREATE TABLE agents (
  id                 uuid PRIMARY KEY,
  tenant_id          uuid NOT NULL REFERENCES organizations(id),
  public_key         text NOT NULL UNIQUE,
  hostname           text NOT NULL,
  os                 text NOT NULL,
  arch               text NOT NULL,
  cpus               integer NOT NULL,
  memory_bytes       bigint NOT NULL,
  gpus               jsonb NOT NULL DEFAULT '[]',
  agent_version      text NOT NULL,
  labels             jsonb NOT NULL DEFAULT '{}',
  capacity           integer NOT NULL DEFAULT 0,
  last_heartbeat_at  timestamptz,
  revoked_at         timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agents_tenant_idx ON agents (tenant_id, created_at);

CREATE TABLE join_tokens (
  id           uuid PRIMARY KEY,
  tenant_id    uuid NOT NULL REFERENCES organizations(id),
  token_hash   bytea NOT NULL UNIQUE,
  created_by   uuid NOT NULL REFERENCES users(id),
  expires_at   timestamptz NOT NULL,
  used_at      timestamptz,
  agent_id     uuid REFERENCES agents(id),
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
  id                  uuid PRIMARY KEY,
  tenant_id           uuid NOT NULL REFERENCES organizations(id),
  kind                text NOT NULL CHECK (kind IN ('COMMAND')),
  command             jsonb NOT NULL,
  env                 jsonb NOT NULL DEFAULT '{}',
  timeout_seconds     integer NOT NULL CHECK (timeout_seconds > 0),
  max_attempts        integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 20),
  agent_selector      jsonb NOT NULL DEFAULT '{}',
  state               text NOT NULL CHECK (state IN ('QUEUED','DISPATCHED','RUNNING','SUCCEEDED','FAILED','CANCELLED','TIMED_OUT')),
  state_reason        text,
  attempts            integer NOT NULL DEFAULT 0,
  current_attempt_id  uuid,
  agent_id            uuid REFERENCES agents(id),
  exit_code           integer,
  log_tail            text NOT NULL DEFAULT '',
  log_dropped_lines   bigint NOT NULL DEFAULT 0,
  created_by          uuid NOT NULL REFERENCES users(id),
  created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
  updated_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
  started_at          timestamptz,
  finished_at         timestamptz,
  cancel_requested_at timestamptz
);
CREATE INDEX jobs_tenant_id_idx ON jobs (tenant_id, id DESC);
CREATE INDEX jobs_queued_idx ON jobs (created_at) WHERE state = 'QUEUED';

CREATE TABLE job_attempts (
  id               uuid PRIMARY KEY,
  tenant_id        uuid NOT NULL REFERENCES organizations(id),
  job_id           uuid NOT NULL REFERENCES jobs(id),
  number           integer NOT NULL,
  fencing_token    bigint NOT NULL,
  agent_id         uuid NOT NULL REFERENCES agents(id),
  state            text NOT NULL CHECK (state IN ('DISPATCHED','RUNNING','SUCCEEDED','FAILED','CANCELLED','TIMED_OUT','LOST')),
  lease_expires_at timestamptz NOT NULL,
  exit_code        integer,
  reason           text,
  created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  started_at       timestamptz,
  finished_at      timestamptz,
  UNIQUE (job_id, number)
);
CREATE INDEX job_attempts_active_idx ON job_attempts (lease_expires_at) WHERE state IN ('DISPATCHED','RUNNING');
CREATE INDEX job_attempts_agent_idx ON job_attempts (agent_id) WHERE state IN ('DISPATCHED','RUNNING');
ALTER TABLE jobs ADD FOREIGN KEY (current_attempt_id) REFERENCES job_attempts(id);

-- Transactional outbox: a row per message, written in the same transaction as the state it announces.
CREATE TABLE outbox (
  id            bigserial PRIMARY KEY,
  tenant_id     uuid NOT NULL REFERENCES organizations(id),
  subject       text NOT NULL,
  msg_id        text NOT NULL UNIQUE,
  payload       bytea NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  published_at  timestamptz,
  publish_tries integer NOT NULL DEFAULT 0,
  last_error    text
);
CREATE INDEX outbox_pending_idx ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Row-level security. The organizations row is its own tenant.
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations TO hearth_app
  USING (id = hearth_current_tenant()) WITH CHECK (id = hearth_current_tenant());
CREATE POLICY system_access ON organizations TO hearth_system USING (true) WITH CHECK (true);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['users','api_tokens','agents','join_tokens','jobs','job_attempts','outbox'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I TO hearth_app USING (tenant_id = hearth_current_tenant()) WITH CHECK (tenant_id = hearth_current_tenant())', t);
    EXECUTE format('CREATE POLICY system_access ON %I TO hearth_system USING (true) WITH CHECK (true)', t);
  END LOOP;
END
$$;

-- Authentication precedes knowing the tenant. Rather than letting the app role read tokens across
-- tenants, one narrow function runs as hearth_system: given a token hash it returns that token's
-- principal (and records its use at most once a minute). One statement, one round trip per request.
CREATE FUNCTION hearth_authenticate(p_hash bytea)
RETURNS TABLE (token_id uuid, tenant_id uuid, user_id uuid)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
  WITH t AS (
    SELECT id, tenant_id, user_id, last_used_at FROM api_tokens
     WHERE token_hash = p_hash AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
  ), touched AS (
    UPDATE api_tokens a SET last_used_at = now() FROM t
     WHERE a.id = t.id AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
  )
  SELECT id, tenant_id, user_id FROM t
$$;
DO $$
BEGIN
  EXECUTE format('GRANT hearth_system TO %I', current_user);
EXCEPTION WHEN others THEN NULL; -- superusers need no grant
END
$$;
ALTER FUNCTION hearth_authenticate(bytea) OWNER TO hearth_system;
REVOKE ALL ON FUNCTION hearth_authenticate(bytea) FROM PUBLIC;

GRANT USAGE ON SCHEMA public TO hearth_app, hearth_system;
GRANT SELECT, INSERT, UPDATE ON organizations, users, api_tokens, agents, join_tokens, jobs, job_attempts, outbox TO hearth_app, hearth_system;
GRANT USAGE ON SEQUENCE outbox_id_seq TO hearth_app, hearth_system;
GRANT DELETE ON outbox TO hearth_system;
GRANT EXECUTE ON FUNCTION hearth_current_tenant() TO hearth_app, hearth_system;
GRANT EXECUTE ON FUNCTION hearth_authenticate(bytea) TO hearth_app;
