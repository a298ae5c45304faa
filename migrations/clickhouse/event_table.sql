-- An event table (event_log, a table a stream names, or a routed one made
-- on its first event): one row per outbox event, written by the relay.
-- Rendered with .Table by `relay migrate` for each table that is missing
-- (a table that exists is never changed: see internal/migrate), and by
-- the relay for a routed table on first use.
-- ReplacingMergeTree: a batch replayed after a crash repeats rows with the same
-- sorting key (event_id included) and commit_lsn; merges keep one, and reads
-- through FINAL (or the <table>_dedup view) never show a duplicate.
-- Servers without DateTime64 (before 20.1) keep the microseconds in
-- event_date_time_us.
-- Topologies (internal/topology): single and cloud create the table as below
-- (Cloud makes the engine SharedReplacingMergeTree); replicated creates it
-- ON CLUSTER as ReplicatedReplacingMergeTree; sharded creates
-- <table>_local so and <table> as a Distributed table over it, keyed by
-- cityHash64(toString(event_id)) (18.16 cannot hash a UUID itself) so that
-- every replay of an event lands on the shard that holds it. A replicated
-- table remembers the last blocks inserted and drops an identical one (the
-- relay's replay after a crash); on a single 22.2+ server
-- non_replicated_deduplication_window does it with the relay's
-- insert_deduplication_token.
CREATE TABLE IF NOT EXISTS {{ table (local .Table) }}{{ onCluster }} (
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
ENGINE = {{ engine (local .Table) "Replacing" "commit_lsn" }}
PARTITION BY toYYYYMM(event_date_time)
ORDER BY (event_type, event_date_time, event_id)
{{- if .Layout.OnCluster }}
SETTINGS replicated_deduplication_window = {{ .DedupWindow }}
{{- else if and (eq .Layout.Topology "single") .NonReplicatedDedup }}
SETTINGS non_replicated_deduplication_window = {{ .DedupWindow }}
{{- end }};
{{- if eq .Layout.Topology "sharded" }}

CREATE TABLE IF NOT EXISTS {{ table .Table }}{{ onCluster }} AS {{ table (local .Table) }}
ENGINE = Distributed({{ literal .Layout.Cluster }}, {{ literal .Database }}, {{ literal (local .Table) }}, cityHash64(toString(event_id)));
{{- end }}

-- The documented read path: each event exactly once.
CREATE VIEW IF NOT EXISTS {{ table (print .Table "_dedup") }}{{ onCluster }} AS SELECT * FROM {{ table .Table }} FINAL;
