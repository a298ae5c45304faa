-- schema_migrations

CREATE TABLE IF NOT EXISTS `relay`.`schema_migrations` (
    version UInt32, name String, applied_at DateTime DEFAULT now()
) ENGINE = MergeTree ORDER BY version;

-- clickhouse/event_table.sql

CREATE TABLE IF NOT EXISTS `relay`.`event_log` (
    event_id           UUID,
    event_type         String,
    event_date_time    DateTime('UTC'),
    event_date_time_us UInt32,
    environment        String,
    event_context      String,
    metadata_version   UInt64,
    commit_lsn         UInt64,
    relayed_at         DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree(commit_lsn)
PARTITION BY toYYYYMM(event_date_time)
ORDER BY (event_type, event_date_time, event_id);

CREATE VIEW IF NOT EXISTS `relay`.`event_log_dedup` AS SELECT * FROM `relay`.`event_log` FINAL;
