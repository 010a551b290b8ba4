-- Role bindings: which built-in role a user holds in an organization. Roles are sets of
-- permissions defined in code (platform/access/permissions.ts); effective access is their union.
CREATE TABLE role_bindings (
  id          uuid PRIMARY KEY,
  tenant_id   uuid NOT NULL REFERENCES organizations(id),
  user_id     uuid NOT NULL REFERENCES users(id),
  role        text NOT NULL CHECK (role IN ('owner', 'admin', 'ml_engineer', 'viewer', 'auditor', 'fleet_operator')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, user_id, role)
);
ALTER TABLE role_bindings ENABLE ROW LEVEL SECURITY;
ALTER TABLE role_bindings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON role_bindings TO hearth_app
  USING (tenant_id = hearth_current_tenant()) WITH CHECK (tenant_id = hearth_current_tenant());
CREATE POLICY system_access ON role_bindings TO hearth_system USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, DELETE ON role_bindings TO hearth_app;
GRANT SELECT ON role_bindings TO hearth_system;

-- Every organization's first user was its admin: make them its owner.
INSERT INTO role_bindings (id, tenant_id, user_id, role)
SELECT gen_random_uuid(), u.tenant_id, u.id, 'owner' FROM users u
 WHERE u.created_at = (SELECT min(created_at) FROM users f WHERE f.tenant_id = u.tenant_id)
ON CONFLICT DO NOTHING;

-- Authentication now also returns the caller's roles, still in one round trip.
DROP FUNCTION hearth_authenticate(bytea);
CREATE FUNCTION hearth_authenticate(p_hash bytea)
RETURNS TABLE (token_id uuid, tenant_id uuid, user_id uuid, roles text[])
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public AS $$
  WITH t AS (
    SELECT id, tenant_id, user_id, last_used_at FROM api_tokens
     WHERE token_hash = p_hash AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
  ), touched AS (
    UPDATE api_tokens a SET last_used_at = now() FROM t
     WHERE a.id = t.id AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute')
  )
  SELECT t.id, t.tenant_id, t.user_id,
         coalesce((SELECT array_agg(b.role ORDER BY b.role) FROM role_bindings b
                    WHERE b.tenant_id = t.tenant_id AND b.user_id = t.user_id), '{}')
    FROM t
$$;
ALTER FUNCTION hearth_authenticate(bytea) OWNER TO hearth_system;
REVOKE ALL ON FUNCTION hearth_authenticate(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hearth_authenticate(bytea) TO hearth_app;
