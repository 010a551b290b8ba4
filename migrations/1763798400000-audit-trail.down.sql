DROP FUNCTION hearth_audit_hash(audit_events) CASCADE;
DROP TABLE audit_events;
DROP TABLE audit_chain_heads;
DROP FUNCTION hearth_audit_chain();
DROP FUNCTION hearth_audit_append_only();
