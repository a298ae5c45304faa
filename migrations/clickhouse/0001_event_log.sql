-- event_log: one row per outbox event, written by the relay.
-- ReplacingMergeTree: a batch replayed after a crash repeats rows with the same
-- sorting key (event_id included) and commit_lsn; merges keep one, and reads
-- through FINAL (or the event_log_dedup view) never show a duplicate.
-- Servers without DateTime64 (before 20.1) keep the microseconds in
-- event_date_time_us.
CREATE TABLE IF NOT EXISTS event_log (
    event_id           UUID,
    event_type         String,
{{- if .DateTime64 }}
    event_date_time    DateTime64(6, 'UTC'),
{{- else }}
    event_date_time    DateTime('UTC'),
    event_date_time_us UInt32,
{{- end }}
    environment        String,
    event_context      String,
    metadata_version   UInt64,
    commit_lsn         UInt64,
    relayed_at         DateTime('UTC') DEFAULT now()
)
ENGINE = ReplacingMergeTree(commit_lsn)
PARTITION BY toYYYYMM(event_date_time)
ORDER BY (event_type, event_date_time, event_id);

-- The documented read path: each event exactly once.
CREATE VIEW IF NOT EXISTS event_log_dedup AS SELECT * FROM event_log FINAL;
