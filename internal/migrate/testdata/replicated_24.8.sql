-- schema_migrations

CREATE TABLE IF NOT EXISTS `analytics`.`schema_migrations` ON CLUSTER `prod` (
    version UInt32, name String, applied_at DateTime DEFAULT now()
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/analytics/schema_migrations', '{replica}') ORDER BY version;

-- clickhouse/event_table.sql

CREATE TABLE IF NOT EXISTS `analytics`.`event_log` ON CLUSTER `prod` (
    event_id           UUID,
    event_type         String,
    event_date_time    DateTime64(6, 'UTC'),
    environment        String,
    event_context      String,
    metadata_version   UInt64,
    commit_lsn         UInt64,
    relayed_at         DateTime('UTC') DEFAULT now()
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/analytics/event_log', '{replica}', commit_lsn)
PARTITION BY toYYYYMM(event_date_time)
ORDER BY (event_type, event_date_time, event_id)
SETTINGS replicated_deduplication_window = 1000;

CREATE VIEW IF NOT EXISTS `analytics`.`event_log_dedup` ON CLUSTER `prod` AS SELECT * FROM `analytics`.`event_log` FINAL;
