DROP FUNCTION hearth_authenticate(bytea);
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
ALTER FUNCTION hearth_authenticate(bytea) OWNER TO hearth_system;
REVOKE ALL ON FUNCTION hearth_authenticate(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hearth_authenticate(bytea) TO hearth_app;
DROP TABLE role_bindings;
