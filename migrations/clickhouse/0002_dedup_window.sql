-- Insert deduplication on a single server that has it (22.2+): event_log
-- remembers the last inserted blocks' tokens, so a batch the relay replays
-- after a crash with the same insert_deduplication_token is dropped.
-- 0001 sets it on tables it creates; this is for tables made before.
-- Replicated tables deduplicate on their own (0001 sets their window);
-- Cloud's SharedMergeTree does too, with its defaults.
{{- if and (eq .Layout.Topology "single") .NonReplicatedDedup }}
ALTER TABLE {{ table "event_log" }} MODIFY SETTING non_replicated_deduplication_window = {{ .DedupWindow }};
{{- end }}
