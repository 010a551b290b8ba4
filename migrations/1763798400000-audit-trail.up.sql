-- Audit trail: append-only, hash-chained per organization.
-- Each event stores the previous event's hash and its own: sha256(prev_hash || canonical fields).
-- A BEFORE INSERT trigger fills seq, time (database clock) and both hashes while holding the
-- organization's chain head row, so concurrent writers of one organization are serialized and the
-- chain has no forks. The app role may only INSERT and SELECT; UPDATE, DELETE and TRUNCATE raise.
-- A superuser can still tamper (disable triggers, edit rows): verification then names the first bad link.

CREATE TABLE audit_chain_heads (
  tenant_id  uuid PRIMARY KEY REFERENCES organizations(id),
  seq        bigint NOT NULL,
  hash       bytea NOT NULL
);

CREATE TABLE audit_events (
  id              uuid PRIMARY KEY,
  tenant_id       uuid NOT NULL REFERENCES organizations(id),
  seq             bigint NOT NULL,
  occurred_at     timestamptz NOT NULL,
  actor_type      text NOT NULL CHECK (actor_type IN ('user', 'service_account', 'agent', 'system')),
  actor_id        text,
  actor_ip        text,
  actor_user_agent text,
  actor_token_id  uuid,
  action          text NOT NULL,
  target_type     text,
  target_id       text,
  outcome         text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
  request_id      text,
  changes         jsonb NOT NULL DEFAULT '{}',
  prev_hash       bytea NOT NULL,
  hash            bytea NOT NULL,
  UNIQUE (tenant_id, seq)
);

-- The canonical form that is hashed. Verification recomputes it from the stored row.
CREATE FUNCTION hearth_audit_hash(e audit_events) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
  SELECT sha256(e.prev_hash || convert_to(json_build_array(
    e.id, e.tenant_id, e.seq, to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'),
    e.actor_type, e.actor_id, e.actor_ip, e.actor_user_agent, e.actor_token_id,
    e.action, e.target_type, e.target_id, e.outcome, e.request_id, e.changes
  )::text, 'UTF8'))
$$;

CREATE FUNCTION hearth_audit_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE head audit_chain_heads;
BEGIN
  INSERT INTO audit_chain_heads (tenant_id, seq, hash) VALUES (NEW.tenant_id, 0, '\x'::bytea)
    ON CONFLICT (tenant_id) DO NOTHING;
  SELECT * INTO head FROM audit_chain_heads WHERE tenant_id = NEW.tenant_id FOR UPDATE;
  NEW.seq := head.seq + 1;
  NEW.occurred_at := clock_timestamp();
  NEW.prev_hash := head.hash;
  NEW.hash := hearth_audit_hash(NEW);
  UPDATE audit_chain_heads SET seq = NEW.seq, hash = NEW.hash WHERE tenant_id = NEW.tenant_id;
  RETURN NEW;
END
$$;
-- Runs as hearth_system: the app role cannot touch chain heads except through an insert.
ALTER FUNCTION hearth_audit_chain() OWNER TO hearth_system;
CREATE TRIGGER audit_chain BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION hearth_audit_chain();

CREATE FUNCTION hearth_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION hearth_audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION hearth_audit_append_only();

CREATE INDEX audit_events_tenant_time_idx ON audit_events (tenant_id, seq DESC);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['audit_events','audit_chain_heads'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I TO hearth_app USING (tenant_id = hearth_current_tenant()) WITH CHECK (tenant_id = hearth_current_tenant())', t);
    EXECUTE format('CREATE POLICY system_access ON %I TO hearth_system USING (true) WITH CHECK (true)', t);
  END LOOP;
END
$$;

GRANT SELECT, INSERT ON audit_events TO hearth_app, hearth_system;
GRANT SELECT, INSERT, UPDATE ON audit_chain_heads TO hearth_system;
GRANT EXECUTE ON FUNCTION hearth_audit_hash(audit_events) TO hearth_app, hearth_system;
