-- Access control, complete: projects inside an organization, custom roles, role bindings at
-- organization or project scope, service accounts beside human members, and API tokens narrowed to a
-- subset of their principal's permissions and optionally one project.
--
-- References between tenant-owned rows are composite (tenant_id, id) foreign keys: a foreign key check
-- does not pass through row-level security, so a plain `project_id REFERENCES projects(id)` would let a
-- row point into another tenant. The composite key makes that impossible in the schema itself.

CREATE TABLE projects (
  id          uuid PRIMARY KEY,
  tenant_id   uuid NOT NULL REFERENCES organizations(id),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  description text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
  created_by  uuid REFERENCES users(id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, id),
  UNIQUE (tenant_id, name)
);

-- A custom role is a named set of catalog permissions (checked against the catalog by the service;
-- the catalog lives in code). Built-in roles live in code only.
CREATE TABLE custom_roles (
  id          uuid PRIMARY KEY,
  tenant_id   uuid NOT NULL REFERENCES organizations(id),
  name        text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_-]{1,62}$'
                AND name NOT IN ('owner', 'admin', 'ml_engineer', 'viewer', 'auditor', 'fleet_operator')),
  description text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
  permissions text[] NOT NULL CHECK (cardinality(permissions) BETWEEN 1 AND 100),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, id),
  UNIQUE (tenant_id, name)
);

-- Principals: human members and service accounts share one table, so tokens, bindings and audit actors
-- have one kind of reference. A removed member keeps their row (audit events name them).
ALTER TABLE users ADD UNIQUE (tenant_id, id);
ALTER TABLE users ADD COLUMN kind text NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'service_account'));
ALTER TABLE users ADD COLUMN name text CHECK (length(name) BETWEEN 1 AND 100);
ALTER TABLE users ADD COLUMN description text NOT NULL DEFAULT '' CHECK (length(description) <= 1000);
ALTER TABLE users ADD COLUMN status text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('INVITED', 'ACTIVE', 'REMOVED'));
ALTER TABLE users ADD COLUMN invited_by uuid REFERENCES users(id);
ALTER TABLE users ADD COLUMN removed_at timestamptz;
-- An invitation is accepted with a one-time secret (only its hash is kept) before it expires.
ALTER TABLE users ADD COLUMN invitation_hash bytea UNIQUE;
ALTER TABLE users ADD COLUMN invitation_expires_at timestamptz;
ALTER TABLE users ALTER COLUMN email DROP NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_identity
  CHECK ((kind = 'user' AND email IS NOT NULL) OR (kind = 'service_account' AND name IS NOT NULL AND email IS NULL));
ALTER TABLE users DROP CONSTRAINT users_tenant_id_email_key;
CREATE UNIQUE INDEX users_member_email ON users (tenant_id, email) WHERE status <> 'REMOVED';
CREATE UNIQUE INDEX users_service_account_name ON users (tenant_id, name)
  WHERE kind = 'service_account' AND status <> 'REMOVED';

ALTER TABLE role_bindings ALTER COLUMN role DROP NOT NULL;
ALTER TABLE role_bindings ADD COLUMN custom_role_id uuid;
ALTER TABLE role_bindings ADD COLUMN project_id uuid;
ALTER TABLE role_bindings ADD FOREIGN KEY (tenant_id, custom_role_id) REFERENCES custom_roles (tenant_id, id);
ALTER TABLE role_bindings ADD FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id);
ALTER TABLE role_bindings ADD FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id);
ALTER TABLE role_bindings ADD CONSTRAINT role_bindings_one_role CHECK (num_nonnulls(role, custom_role_id) = 1);
ALTER TABLE role_bindings DROP CONSTRAINT role_bindings_tenant_id_user_id_role_key;
CREATE UNIQUE INDEX role_bindings_unique ON role_bindings
  (tenant_id, user_id, coalesce(project_id, '00000000-0000-0000-0000-000000000000'), coalesce(role, custom_role_id::text));
CREATE INDEX role_bindings_custom_role ON role_bindings (custom_role_id) WHERE custom_role_id IS NOT NULL;

-- A token acts with at most its principal's permissions; `scopes` narrows that (NULL: all of them),
-- `project_id` confines it to one project.
ALTER TABLE api_tokens ADD COLUMN scopes text[] CHECK (cardinality(scopes) BETWEEN 1 AND 100);
ALTER TABLE api_tokens ADD COLUMN project_id uuid;
ALTER TABLE api_tokens ADD COLUMN created_by uuid REFERENCES users(id);
ALTER TABLE api_tokens ADD FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id);
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_name_length CHECK (length(name) BETWEEN 1 AND 100);
CREATE INDEX api_tokens_user_idx ON api_tokens (tenant_id, user_id);

ALTER TABLE jobs ADD COLUMN project_id uuid;
ALTER TABLE jobs ADD FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id);
CREATE INDEX jobs_project_idx ON jobs (tenant_id, project_id, id DESC);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['projects', 'custom_roles'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I TO hearth_app USING (tenant_id = hearth_current_tenant()) WITH CHECK (tenant_id = hearth_current_tenant())', t);
    EXECUTE format('CREATE POLICY system_access ON %I TO hearth_system USING (true) WITH CHECK (true)', t);
  END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON projects, custom_roles TO hearth_app;
GRANT SELECT ON projects, custom_roles TO hearth_system;
GRANT UPDATE ON role_bindings TO hearth_app;

-- Authentication answers in one round trip: the token's principal, the token's own limits and the
-- principal's bindings (custom roles resolved to their permissions). A token that matches a row but
-- may not be used (revoked, expired, its principal removed) comes back with `failure` set and no
-- bindings, so the failed attempt can be audited in the organization it belongs to.
DROP FUNCTION hearth_authenticate(bytea);
CREATE FUNCTION hearth_authenticate(p_hash bytea)
RETURNS TABLE (token_id uuid, tenant_id uuid, user_id uuid, principal_kind text, failure text,
               scopes text[], project_id uuid, bindings jsonb)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
  WITH t AS (
    SELECT a.id, a.tenant_id, a.user_id, a.last_used_at, a.scopes, a.project_id, u.kind,
           CASE WHEN a.revoked_at IS NOT NULL THEN 'token revoked'
                WHEN a.expires_at IS NOT NULL AND a.expires_at <= now() THEN 'token expired'
                WHEN u.status <> 'ACTIVE' THEN 'principal ' || lower(u.status)
           END AS failure
      FROM api_tokens a JOIN users u ON u.id = a.user_id
     WHERE a.token_hash = p_hash
  ), touched AS (
    UPDATE api_tokens a SET last_used_at = now() FROM t
     WHERE a.id = t.id AND t.failure IS NULL
       AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
  )
  SELECT t.id, t.tenant_id, t.user_id, t.kind, t.failure, t.scopes, t.project_id,
         CASE WHEN t.failure IS NULL THEN coalesce(
           (SELECT jsonb_agg(jsonb_build_object('role', coalesce(b.role, r.name), 'projectId', b.project_id,
                                                'permissions', r.permissions) ORDER BY b.id)
              FROM role_bindings b LEFT JOIN custom_roles r ON r.id = b.custom_role_id
             WHERE b.tenant_id = t.tenant_id AND b.user_id = t.user_id), '[]'::jsonb)
         ELSE '[]'::jsonb END
    FROM t
$$;
ALTER FUNCTION hearth_authenticate(bytea) OWNER TO hearth_system;
REVOKE ALL ON FUNCTION hearth_authenticate(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hearth_authenticate(bytea) TO hearth_app;
