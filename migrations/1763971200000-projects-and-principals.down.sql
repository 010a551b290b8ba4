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

REVOKE UPDATE ON role_bindings FROM hearth_app;

DROP INDEX jobs_project_idx;
ALTER TABLE jobs DROP COLUMN project_id;

DROP INDEX api_tokens_user_idx;
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_name_length;
ALTER TABLE api_tokens DROP COLUMN created_by, DROP COLUMN project_id, DROP COLUMN scopes;

-- Bindings the old schema cannot express (project scope, custom roles) go with the down migration.
DELETE FROM role_bindings WHERE project_id IS NOT NULL OR custom_role_id IS NOT NULL;
DROP INDEX role_bindings_custom_role;
DROP INDEX role_bindings_unique;
ALTER TABLE role_bindings DROP CONSTRAINT role_bindings_one_role;
ALTER TABLE role_bindings DROP COLUMN project_id, DROP COLUMN custom_role_id;
ALTER TABLE role_bindings DROP CONSTRAINT role_bindings_tenant_id_user_id_fkey;
ALTER TABLE role_bindings ALTER COLUMN role SET NOT NULL;
ALTER TABLE role_bindings ADD UNIQUE (tenant_id, user_id, role);

-- Service accounts and removed members cannot exist in the old schema.
DELETE FROM role_bindings b USING users u WHERE u.id = b.user_id AND (u.kind <> 'user' OR u.status = 'REMOVED');
UPDATE api_tokens a SET revoked_at = coalesce(a.revoked_at, now()) FROM users u
 WHERE u.id = a.user_id AND u.kind <> 'user';
DROP INDEX users_service_account_name;
DROP INDEX users_member_email;
ALTER TABLE users DROP CONSTRAINT users_identity;
ALTER TABLE users DROP COLUMN invitation_expires_at, DROP COLUMN invitation_hash, DROP COLUMN removed_at, DROP COLUMN invited_by, DROP COLUMN status,
                  DROP COLUMN description, DROP COLUMN name, DROP COLUMN kind;
UPDATE users SET email = 'service-account-' || id || '@invalid' WHERE email IS NULL;
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
ALTER TABLE users DROP CONSTRAINT users_tenant_id_id_key;
ALTER TABLE users ADD UNIQUE (tenant_id, email);

DROP TABLE custom_roles;
DROP TABLE projects;
