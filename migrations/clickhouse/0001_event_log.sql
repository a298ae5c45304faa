-- event_log: one row per outbox event, written by the relay.
-- ReplacingMergeTree: a batch replayed after a crash repeats rows with the same
-- sorting key (event_id included) and commit_lsn; merges keep one, and reads
-- through FINAL (or the event_log_dedup view) never show a duplicate.
-- Servers without DateTime64 (before 20.1) keep the microseconds in
-- event_date_time_us.
-- Topologies (internal/topology): single and cloud create event_log as below
-- (Cloud makes the engine SharedReplacingMergeTree); replicated creates it
-- ON CLUSTER as ReplicatedReplacingMergeTree; sharded creates
-- event_log_local so and event_log as a Distributed table over it, keyed by
-- cityHash64(toString(event_id)) (18.16 cannot hash a UUID itself) so that
-- every replay of an event lands on the shard that holds it. A replicated
-- table remembers the last blocks inserted and drops an identical one (the
-- relay's replay after a crash).
CREATE TABLE IF NOT EXISTS {{ table (local "event_log") }}{{ onCluster }} (
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
ENGINE = {{ engine (local "event_log") "Replacing" "commit_lsn" }}
PARTITION BY toYYYYMM(event_date_time)
ORDER BY (event_type, event_date_time, event_id)
{{- if .Layout.OnCluster }}
SETTINGS replicated_deduplication_window = {{ .DedupWindow }}
{{- else if and (eq .Layout.Topology "single") .NonReplicatedDedup }}
SETTINGS non_replicated_deduplication_window = {{ .DedupWindow }}
{{- end }};
{{- if eq .Layout.Topology "sharded" }}

CREATE TABLE IF NOT EXISTS {{ table "event_log" }}{{ onCluster }} AS {{ table (local "event_log") }}
ENGINE = Distributed({{ literal .Layout.Cluster }}, {{ literal .Database }}, {{ literal (local "event_log") }}, cityHash64(toString(event_id)));
{{- end }}

-- The documented read path: each event exactly once.
CREATE VIEW IF NOT EXISTS {{ table "event_log_dedup" }}{{ onCluster }} AS SELECT * FROM {{ table "event_log" }} FINAL;
