DROP FUNCTION hearth_telemetry_drop_partitions(text, date);
DROP FUNCTION hearth_telemetry_partitions(date, date);
-- Dropping a partitioned table drops its partitions.
DROP TABLE telemetry_tasks, telemetry_late_minutes, telemetry_idle_alerts, telemetry_host_1h, telemetry_host_1m,
           telemetry_gpu_1h, telemetry_gpu_1m, telemetry_samples, telemetry_gpus,
           telemetry_settings;
DROP INDEX jobs_running_gpus_idx;
ALTER TABLE jobs DROP COLUMN gpu_vendor, DROP COLUMN gpus;
