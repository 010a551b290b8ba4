-- Utilisation telemetry: raw samples from agents (host and GPU), rolled up to 1-minute and 1-hour
-- buckets, per-organization settings (GPU prices, idle policy), idle alerts, and GPU requests on jobs.
--
-- Raw samples and 1-minute rollups are partitioned by day (native declarative partitioning): retention
-- drops a whole day's partition instead of deleting rows, and a query on a time range reads only the
-- days it covers. Partitions are made ahead by the control plane through hearth_telemetry_partitions
-- (the app roles own nothing and cannot run DDL); 1-hour rollups are small enough for plain DELETEs.
-- The sample tables have no foreign keys: ingest checks the agent and the jobs once per batch, and a
-- key check per sample row would cost about as much as the insert itself.

ALTER TABLE jobs ADD COLUMN gpus integer NOT NULL DEFAULT 0 CHECK (gpus BETWEEN 0 AND 64);
ALTER TABLE jobs ADD COLUMN gpu_vendor text CHECK (gpu_vendor IN ('nvidia', 'amd'));
-- Idle detection looks at running jobs that hold GPUs.
CREATE INDEX jobs_running_gpus_idx ON jobs (started_at) WHERE state = 'RUNNING' AND gpus > 0;

-- One row per organization that changed a default; absent: the defaults below.
CREATE TABLE telemetry_settings (
  tenant_id            uuid PRIMARY KEY REFERENCES organizations(id),
  idle_threshold_pct   real NOT NULL DEFAULT 5 CHECK (idle_threshold_pct > 0 AND idle_threshold_pct <= 100),
  idle_window_minutes  integer NOT NULL DEFAULT 30 CHECK (idle_window_minutes BETWEEN 1 AND 1440),
  idle_action          text NOT NULL DEFAULT 'NOTIFY' CHECK (idle_action IN ('NOTIFY', 'CANCEL')),
  currency             text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
  -- { "<GPU model name>": <price per GPU-hour> }
  gpu_prices           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(gpu_prices) = 'object'),
  updated_at           timestamptz NOT NULL DEFAULT now()
);

-- What each agent's GPUs are. `gpu` is the GPU's key on its host: the vendor tool's index, plus 1024
-- for AMD (nvidia-smi and rocm-smi number their GPUs independently).
CREATE TABLE telemetry_gpus (
  tenant_id        uuid NOT NULL,
  agent_id         uuid NOT NULL,
  gpu              smallint NOT NULL CHECK (gpu BETWEEN 0 AND 2047),
  vendor           text NOT NULL CHECK (vendor IN ('nvidia', 'amd')),
  gpu_index        smallint NOT NULL,
  uuid             text,
  name             text NOT NULL,
  memory_total_mib integer,
  power_limit_w    real,
  mig              boolean,
  first_seen_at    timestamptz NOT NULL DEFAULT now(),
  last_seen_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (agent_id, gpu)
);
CREATE INDEX telemetry_gpus_tenant_idx ON telemetry_gpus (tenant_id, agent_id);

-- Raw samples: one row per sample an agent took, the host's readings in columns and its GPUs' in
-- parallel arrays (one element per GPU: `gpu` keys, `gpu_*` readings). A row per GPU reading would
-- make eight times the tuples and index entries for an 8-GPU host; this layout is what lets one
-- control plane write 20,000 GPU readings a second. Each sample stands for interval_s seconds (the
-- agent's sampling interval): integrals (GPU-hours, energy) are sums of value × interval_s. The
-- primary key makes a redelivered batch a no-op.
CREATE TABLE telemetry_samples (
  tenant_id          uuid NOT NULL,
  agent_id           uuid NOT NULL,
  at                 timestamptz NOT NULL,
  interval_s         smallint NOT NULL CHECK (interval_s BETWEEN 1 AND 60),
  cpu_pct            real,
  mem_used_mib       bigint,
  mem_total_mib      bigint,
  disk_read_bps      double precision,
  disk_write_bps     double precision,
  net_rx_bps         double precision,
  net_tx_bps         double precision,
  -- Each running job's share of the host's CPU.
  job_ids            uuid[] NOT NULL DEFAULT '{}',
  job_cpu_pct        real[] NOT NULL DEFAULT '{}',
  -- Samples the agent dropped (buffer full) just before this one.
  dropped_before     integer NOT NULL DEFAULT 0,
  skipped_lines      integer NOT NULL DEFAULT 0,
  rejected_values    integer NOT NULL DEFAULT 0,
  failed_tools       text[] NOT NULL DEFAULT '{}',
  gpu                smallint[] NOT NULL DEFAULT '{}',
  -- The job running on each GPU, or holding it.
  gpu_job_id         uuid[] NOT NULL DEFAULT '{}',
  gpu_util_pct       real[] NOT NULL DEFAULT '{}',
  gpu_mem_util_pct   real[] NOT NULL DEFAULT '{}',
  gpu_mem_used_mib   integer[] NOT NULL DEFAULT '{}',
  gpu_power_w        real[] NOT NULL DEFAULT '{}',
  gpu_temperature_c  real[] NOT NULL DEFAULT '{}',
  gpu_sm_clock_mhz   smallint[] NOT NULL DEFAULT '{}',
  gpu_foreign_procs  integer[] NOT NULL DEFAULT '{}',
  PRIMARY KEY (agent_id, at)
) PARTITION BY RANGE (at);
CREATE INDEX telemetry_samples_at_idx ON telemetry_samples USING brin (at);

-- Rollups. Sums are time-weighted (value × seconds) so that any bucket's mean and any range's
-- integral come out the same whichever resolution they are computed from. A GPU's bucket is split
-- by the job it served; project and user are the job's, fixed at rollup time.
CREATE TABLE telemetry_gpu_1m (
  tenant_id         uuid NOT NULL,
  agent_id          uuid NOT NULL,
  gpu               smallint NOT NULL,
  bucket            timestamptz NOT NULL,
  job_id            uuid,
  project_id        uuid,
  user_id           uuid,
  samples           integer NOT NULL,
  seconds           double precision NOT NULL,
  util_seconds      double precision NOT NULL,
  util_weighted     double precision NOT NULL,
  util_min          real,
  util_max          real,
  -- Seconds below the organization's idle threshold (as set when the bucket was rolled up).
  idle_seconds      double precision NOT NULL,
  mem_seconds       double precision NOT NULL,
  mem_weighted      double precision NOT NULL,
  mem_max_mib       integer,
  power_seconds     double precision NOT NULL,
  energy_j          double precision NOT NULL,
  power_max_w       real,
  temperature_max_c real,
  UNIQUE NULLS NOT DISTINCT (agent_id, bucket, gpu, job_id)
) PARTITION BY RANGE (bucket);
CREATE INDEX telemetry_gpu_1m_tenant_idx ON telemetry_gpu_1m (tenant_id, bucket);
CREATE INDEX telemetry_gpu_1m_job_idx ON telemetry_gpu_1m (job_id, bucket) WHERE job_id IS NOT NULL;
CREATE INDEX telemetry_gpu_1m_project_idx ON telemetry_gpu_1m (project_id, bucket) WHERE project_id IS NOT NULL;

-- Hours are added to minute by minute (an UPDATE per GPU-hour each minute): free space on every page
-- keeps those updates HOT (no index entry per update).
CREATE TABLE telemetry_gpu_1h (LIKE telemetry_gpu_1m INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
  UNIQUE NULLS NOT DISTINCT (agent_id, bucket, gpu, job_id)) WITH (fillfactor = 50);
CREATE INDEX telemetry_gpu_1h_tenant_idx ON telemetry_gpu_1h (tenant_id, bucket);
CREATE INDEX telemetry_gpu_1h_job_idx ON telemetry_gpu_1h (job_id, bucket) WHERE job_id IS NOT NULL;
CREATE INDEX telemetry_gpu_1h_project_idx ON telemetry_gpu_1h (project_id, bucket) WHERE project_id IS NOT NULL;

CREATE TABLE telemetry_host_1m (
  tenant_id        uuid NOT NULL,
  agent_id         uuid NOT NULL,
  bucket           timestamptz NOT NULL,
  samples          integer NOT NULL,
  seconds          double precision NOT NULL,
  cpu_seconds      double precision NOT NULL,
  cpu_weighted     double precision NOT NULL,
  cpu_max_pct      real,
  mem_seconds      double precision NOT NULL,
  mem_weighted     double precision NOT NULL,
  mem_max_mib      bigint,
  mem_total_mib    bigint,
  disk_read_bytes  double precision NOT NULL,
  disk_write_bytes double precision NOT NULL,
  net_rx_bytes     double precision NOT NULL,
  net_tx_bytes     double precision NOT NULL,
  dropped          integer NOT NULL,
  PRIMARY KEY (agent_id, bucket)
) PARTITION BY RANGE (bucket);
CREATE INDEX telemetry_host_1m_tenant_idx ON telemetry_host_1m (tenant_id, bucket);

CREATE TABLE telemetry_host_1h (LIKE telemetry_host_1m INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
  PRIMARY KEY (agent_id, bucket)) WITH (fillfactor = 50);
CREATE INDEX telemetry_host_1h_tenant_idx ON telemetry_host_1h (tenant_id, bucket);

-- A job holding GPUs that stayed below the idle threshold for the idle window.
CREATE TABLE telemetry_idle_alerts (
  id                  uuid PRIMARY KEY,
  tenant_id           uuid NOT NULL REFERENCES organizations(id),
  job_id              uuid NOT NULL REFERENCES jobs(id),
  agent_id            uuid,
  project_id          uuid,
  gpus                integer NOT NULL,
  threshold_pct       real NOT NULL,
  window_minutes      integer NOT NULL,
  max_util_pct        real,
  mean_util_pct       real,
  idle_since          timestamptz NOT NULL,
  raised_at           timestamptz NOT NULL,
  action              text NOT NULL CHECK (action IN ('NOTIFY', 'CANCEL')),
  state               text NOT NULL DEFAULT 'OPEN' CHECK (state IN ('OPEN', 'RESOLVED')),
  resolved_at         timestamptz,
  resolution          text,
  cancel_requested_at timestamptz
);
-- At most one open alert per job.
CREATE UNIQUE INDEX telemetry_idle_alerts_open_idx ON telemetry_idle_alerts (job_id) WHERE state = 'OPEN';
CREATE INDEX telemetry_idle_alerts_tenant_idx ON telemetry_idle_alerts (tenant_id, raised_at DESC);

-- System bookkeeping (no tenant: only hearth_system reads or writes them).
-- Minutes that received samples after they were rolled up: the next rollup pass redoes them.
CREATE TABLE telemetry_late_minutes (
  agent_id  uuid NOT NULL,
  minute    timestamptz NOT NULL,
  PRIMARY KEY (agent_id, minute)
);
-- Periodic work shared by replicas: a row per task, locked FOR UPDATE SKIP LOCKED by the replica that
-- does it; `done_until` is the rollup watermark (every minute before it is rolled up).
CREATE TABLE telemetry_tasks (
  name        text PRIMARY KEY,
  done_until  timestamptz,
  last_run_at timestamptz
);
INSERT INTO telemetry_tasks (name) VALUES ('rollup'), ('retention'), ('idle');

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['telemetry_settings', 'telemetry_gpus', 'telemetry_samples', 'telemetry_gpu_1m',
                           'telemetry_gpu_1h', 'telemetry_host_1m', 'telemetry_host_1h', 'telemetry_idle_alerts'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I TO hearth_app USING (tenant_id = hearth_current_tenant()) WITH CHECK (tenant_id = hearth_current_tenant())', t);
    EXECUTE format('CREATE POLICY system_access ON %I TO hearth_system USING (true) WITH CHECK (true)', t);
  END LOOP;
END
$$;

-- Daily partitions [p_from, p_to) of the partitioned telemetry tables; returns how many it made. Runs as
-- the tables' owner (SECURITY DEFINER) so the control plane can make partitions ahead without owning
-- anything. Partitions are read and written only through their parent (whose policies apply); direct
-- access gets nothing (FORCE RLS, no policy, no grant). A short lock_timeout: a partition that cannot
-- be made now is made on the next pass, rather than ingest queueing behind the DDL.
CREATE FUNCTION hearth_telemetry_partitions(p_from date, p_to date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lock_timeout = '2s' AS $$
DECLARE
  t text;
  d date;
  part text;
  made integer := 0;
BEGIN
  IF p_to - p_from > 400 THEN RAISE EXCEPTION 'at most 400 days of partitions at a time'; END IF;
  FOREACH t IN ARRAY ARRAY['telemetry_samples', 'telemetry_host_1m', 'telemetry_gpu_1m'] LOOP
    d := p_from;
    WHILE d < p_to LOOP
      part := t || '_p' || to_char(d, 'YYYYMMDD');
      IF to_regclass(part) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', part, t,
                       (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', part);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', part);
        made := made + 1;
      END IF;
      d := d + 1;
    END LOOP;
  END LOOP;
  RETURN made;
END
$$;

-- Drops the daily partitions of one partitioned telemetry table whose day ends on or before p_before.
CREATE FUNCTION hearth_telemetry_drop_partitions(p_table text, p_before date) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public SET lock_timeout = '2s' AS $$
DECLARE
  part text;
  dropped integer := 0;
BEGIN
  IF p_table NOT IN ('telemetry_samples', 'telemetry_host_1m', 'telemetry_gpu_1m') THEN
    RAISE EXCEPTION 'not a partitioned telemetry table: %', p_table;
  END IF;
  FOR part IN
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = p_table::regclass AND c.relname ~ ('^' || p_table || '_p[0-9]{8}$')
       AND to_date(right(c.relname, 8), 'YYYYMMDD') < p_before
  LOOP
    EXECUTE format('DROP TABLE %I', part);
    dropped := dropped + 1;
  END LOOP;
  RETURN dropped;
END
$$;
REVOKE ALL ON FUNCTION hearth_telemetry_partitions(date, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION hearth_telemetry_drop_partitions(text, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION hearth_telemetry_partitions(date, date) TO hearth_system;
GRANT EXECUTE ON FUNCTION hearth_telemetry_drop_partitions(text, date) TO hearth_system;

-- Usable at once: today, the raw retention's default week before it, and a few days ahead.
SELECT hearth_telemetry_partitions(current_date - 8, current_date + 3);

GRANT SELECT, INSERT, UPDATE ON telemetry_settings TO hearth_app;
GRANT SELECT ON telemetry_gpus, telemetry_samples, telemetry_gpu_1m, telemetry_gpu_1h,
                telemetry_host_1m, telemetry_host_1h, telemetry_idle_alerts TO hearth_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON telemetry_settings, telemetry_gpus, telemetry_samples, telemetry_gpu_1m,
                telemetry_gpu_1h, telemetry_host_1m, telemetry_host_1h, telemetry_idle_alerts, telemetry_late_minutes,
                telemetry_tasks TO hearth_system;
