-- Job kinds beyond commands, and the model registry with its deployments. The control plane holds
-- metadata only: agent-side URIs, hashes, signatures, metrics, lineage. Never data, never weights.

ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check CHECK (kind IN ('COMMAND', 'TRAIN', 'BATCH_PREDICT', 'SERVE'));
ALTER TABLE jobs ALTER COLUMN command DROP NOT NULL;
ALTER TABLE jobs ADD CONSTRAINT jobs_command_for_commands CHECK ((kind = 'COMMAND') = (command IS NOT NULL));
-- A deployment (SERVE) runs until it is stopped: no timeout.
ALTER TABLE jobs ALTER COLUMN timeout_seconds DROP NOT NULL;
ALTER TABLE jobs ADD CONSTRAINT jobs_timeout_for_all_but_serve CHECK ((kind = 'SERVE') = (timeout_seconds IS NULL));
-- The kind's input as the agent receives it (train, batchPredict or serve), plus control-plane-only
-- fields (the model name a training run registers under).
ALTER TABLE jobs ADD COLUMN spec jsonb;
-- What the agent reported while it ran (backend, epochs, serving endpoint and metrics) and at the end.
ALTER TABLE jobs ADD COLUMN progress jsonb NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN result jsonb;
ALTER TABLE jobs ADD UNIQUE (tenant_id, id);
-- The last progress message applied per attempt: a redelivered one changes nothing.
ALTER TABLE job_attempts ADD COLUMN progress_seq integer NOT NULL DEFAULT -1;

CREATE TABLE models (
  id          uuid PRIMARY KEY,
  tenant_id   uuid NOT NULL REFERENCES organizations(id),
  project_id  uuid,
  -- Usable as an Open Inference Protocol path segment.
  name        text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
  description text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
  created_by  uuid REFERENCES users(id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, id),
  UNIQUE (tenant_id, name),
  FOREIGN KEY (tenant_id, project_id) REFERENCES projects (tenant_id, id)
);

CREATE TABLE model_versions (
  id                  uuid PRIMARY KEY,
  tenant_id           uuid NOT NULL REFERENCES organizations(id),
  model_id            uuid NOT NULL,
  version             integer NOT NULL CHECK (version > 0),
  stage               text NOT NULL DEFAULT 'NONE' CHECK (stage IN ('NONE', 'STAGING', 'PRODUCTION', 'ARCHIVED')),
  source              text NOT NULL CHECK (source IN ('TRAIN', 'REGISTERED')),
  job_id              uuid,
  -- [{ uri, sha256, sizeBytes, format, signature }]: the files stay in the customer's artifact store.
  artifacts           jsonb NOT NULL,
  metrics             jsonb,
  dataset_fingerprint jsonb,
  backend             text,
  feature_names       jsonb,
  labels              jsonb,
  -- How it was made: the trainer's configuration, or the command that exported it.
  lineage             jsonb NOT NULL DEFAULT '{}',
  description         text NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
  created_by          uuid REFERENCES users(id),
  created_at          timestamptz NOT NULL DEFAULT now(),
  stage_changed_at    timestamptz,
  UNIQUE (model_id, version),
  UNIQUE (tenant_id, id),
  FOREIGN KEY (tenant_id, model_id) REFERENCES models (tenant_id, id),
  FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, id)
);
CREATE INDEX model_versions_job_idx ON model_versions (job_id) WHERE job_id IS NOT NULL;

-- A deployment keeps one version of a model served by a SERVE job; redeploying points it at a new
-- job and version. Its state is the job's (derived on read, never copied).
CREATE TABLE deployments (
  id              uuid PRIMARY KEY,
  tenant_id       uuid NOT NULL REFERENCES organizations(id),
  model_id        uuid NOT NULL,
  version_id      uuid NOT NULL,
  job_id          uuid NOT NULL,
  agent_selector  jsonb NOT NULL DEFAULT '{}',
  created_by      uuid REFERENCES users(id),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  stopped_at      timestamptz,
  UNIQUE (tenant_id, id),
  FOREIGN KEY (tenant_id, model_id) REFERENCES models (tenant_id, id),
  FOREIGN KEY (tenant_id, version_id) REFERENCES model_versions (tenant_id, id),
  FOREIGN KEY (tenant_id, job_id) REFERENCES jobs (tenant_id, id)
);
-- One live deployment per model.
CREATE UNIQUE INDEX deployments_live_model ON deployments (tenant_id, model_id) WHERE stopped_at IS NULL;
CREATE INDEX deployments_job_idx ON deployments (job_id);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['models', 'model_versions', 'deployments'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I TO hearth_app USING (tenant_id = hearth_current_tenant()) WITH CHECK (tenant_id = hearth_current_tenant())', t);
    EXECUTE format('CREATE POLICY system_access ON %I TO hearth_system USING (true) WITH CHECK (true)', t);
  END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE ON models, model_versions, deployments TO hearth_app;
GRANT SELECT ON models, model_versions, deployments TO hearth_system;
