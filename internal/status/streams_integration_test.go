package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/testenv"
)

// Two streams on real servers: the default one (outbox_event into
// event_log) and billing, an application's own outbox (bigint identity,
// its own time column) routed by event type. Status shows each stream's
// backlog, dead letters, tables (the template's, not the view beside them)
// with their rows and guarantee, in the table and in JSON; an outbox table
// missing from the publication is named until it is added.
func TestGatherTwoStreams(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	for _, q := range []string{
		`CREATE SCHEMA billing`,
		`CREATE TABLE billing.outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_type text NOT NULL,
			created_at timestamptz NOT NULL, event_context jsonb NOT NULL)`,
		`INSERT INTO billing.outbox (event_type, created_at, event_context)
			SELECT 'invoice', now() - interval '2 minutes', '{}' FROM generate_series(1, 4)`,
		`INSERT INTO outbox_event (event_type, environment, event_context) VALUES ('a', 'test', '{}')`,
		`INSERT INTO outbox_dead_letter (id, stream, event_type, event_date_time, environment, event_context, metadata_version, error)
			SELECT gen_random_uuid(), s, 'x', now(), 'test', '{}', 1, 'rejected' FROM unnest('{billing,billing,default}'::text[]) s`,
	} {
		if _, err := e.PG.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, q := range []string{
		`CREATE TABLE billing_invoice (event_id UUID, event_type String, event_date_time DateTime) ENGINE = MergeTree ORDER BY event_id`,
		`CREATE TABLE billing_refund (event_id UUID, event_type String, event_date_time DateTime) ENGINE = MergeTree ORDER BY event_id`,
		`CREATE VIEW billing_invoice_dedup AS SELECT * FROM billing_invoice`,
		`INSERT INTO billing_invoice SELECT generateUUIDv4(), 'invoice', now() FROM system.numbers LIMIT 3`,
	} {
		if err := e.CH.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	target := Target{Slot: e.Slot, Publication: e.Publication, ClickHouseURL: e.ClickHouse, Layout: e.Layout,
		Streams: []config.Stream{
			{Name: "default", Outbox: "outbox_event", ClickHouseTable: "event_log"},
			{Name: "billing", Outbox: "billing.outbox", ClickHouseTable: "billing_{event_type}",
				Columns: map[string]string{config.FieldEventDateTime: "created_at"}},
		},
		Guarantee: func(_ context.Context, _ driver.Conn, table string) (string, error) {
			if table == "billing_refund" {
				return "", errors.New("cannot tell")
			}
			return "at least once (test)", nil
		},
	}

	r := gatherJudged(t, e.PG, target)
	if len(r.Streams) != 2 {
		t.Fatalf("%d streams, want 2: %+v", len(r.Streams), r.Streams)
	}
	def, billing := r.Streams[0], r.Streams[1]
	if def.BacklogRows != 1 || !def.InPublication || def.DeadLetters == nil || *def.DeadLetters != 1 ||
		len(def.Tables) != 1 || def.Tables[0].Name != "event_log" || def.Tables[0].Rows == nil || def.Tables[0].Guarantee != "at least once (test)" {
		t.Errorf("default stream: %+v", def)
	}
	if r.BacklogRows != 1 || r.OutboxTable != "outbox_event" || r.ClickHouseTable != "event_log" || r.ClickHouseRows == nil {
		t.Errorf("top-level figures are not the default stream's: backlog %d, outbox %q, table %q, rows %v",
			r.BacklogRows, r.OutboxTable, r.ClickHouseTable, r.ClickHouseRows)
	}
	if billing.BacklogRows != 4 || billing.OldestBacklogAgeSeconds == nil || *billing.OldestBacklogAgeSeconds < 100 ||
		billing.InPublication || !billing.OutboxExists || billing.DeadLetters == nil || *billing.DeadLetters != 2 || !billing.Routed {
		t.Errorf("billing stream: %+v", billing)
	}
	var names []string
	for _, tb := range billing.Tables {
		names = append(names, tb.Name)
	}
	if strings.Join(names, ",") != "billing_invoice,billing_refund" || *billing.Tables[0].Rows != 3 || *billing.Tables[1].Rows != 0 ||
		billing.Tables[0].Guarantee != "at least once (test)" || billing.Tables[1].Guarantee != GuaranteeUnknown || billing.Tables[1].Error == "" {
		t.Errorf("billing tables: %+v, want billing_invoice (3 rows) and billing_refund (0, guarantee unknown with the error)", billing.Tables)
	}
	if r.PublicationHasTable || !hasReasonWith(r, `CRITICAL: stream "billing": publication "`+e.Publication+`" does not include billing.outbox`) {
		t.Errorf("billing.outbox outside the publication: has_table %t, reasons %q", r.PublicationHasTable, r.Reasons)
	}
	if !hasReasonWith(r, `WARNING: stream "billing": oldest outbox event has waited 2m`) {
		t.Errorf("billing's 2 minutes old backlog: reasons %q", r.Reasons)
	}

	var text, js bytes.Buffer
	if err := WriteTable(&text, r); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`STREAM default\n\s+outbox\s+outbox_event\n\s+backlog\s+1 rows, oldest`,
		`STREAM billing\n\s+outbox\s+billing.outbox \(not in publication`, `backlog\s+4 rows, oldest 2m`, `dead_letters\s+2\n`,
		`clickhouse\s+billing_\{event_type\} \(routed: 2 tables\)`, `table billing_invoice\s+rows 3, guarantee at least once \(test\)`,
		`table billing_refund\s+rows 0, guarantee unknown \(read the guarantee of billing_refund: cannot tell\)`} {
		if !regexp.MustCompile(re).Match(text.Bytes()) {
			t.Errorf("relay status lacks %s:\n%s", re, text.String())
		}
	}
	if err := WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		BacklogRows int64 `json:"backlog_rows"`
		Streams     []struct {
			Name          string `json:"name"`
			Outbox        string `json:"outbox"`
			InPublication bool   `json:"in_publication"`
			BacklogRows   int64  `json:"backlog_rows"`
			Tables        []struct {
				Name      string  `json:"name"`
				Rows      *uint64 `json:"rows"`
				Guarantee string  `json:"guarantee"`
			} `json:"tables"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(js.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	if len(decoded.Streams) != 2 || decoded.BacklogRows != 1 || decoded.Streams[1].Name != "billing" || decoded.Streams[1].BacklogRows != 4 ||
		len(decoded.Streams[1].Tables) != 2 || decoded.Streams[1].Tables[0].Guarantee != "at least once (test)" {
		t.Errorf("relay status --json: %s", js.String())
	}

	if _, err := e.PG.Exec(ctx, `ALTER PUBLICATION `+e.Publication+` ADD TABLE billing.outbox`); err != nil {
		t.Fatal(err)
	}
	r = gatherJudged(t, e.PG, target)
	if !r.PublicationHasTable || !r.Streams[1].InPublication || hasReasonWith(r, "does not include") {
		t.Errorf("billing.outbox added to the publication: has_table %t, reasons %q", r.PublicationHasTable, r.Reasons)
	}

	// A stream whose outbox table does not exist is a finding, not a
	// failure of status.
	target.Streams = append(target.Streams, config.Stream{Name: "gone", Outbox: "nowhere.outbox", ClickHouseTable: "gone_log"})
	r = gatherJudged(t, e.PG, target)
	if r.Streams[2].OutboxExists || !hasReasonWith(r, `CRITICAL: stream "gone": outbox table nowhere.outbox does not exist`) ||
		!hasReasonWith(r, `CRITICAL: stream "gone": ClickHouse table gone_log does not exist`) {
		t.Errorf("a stream without its tables: %+v, reasons %q", r.Streams[2], r.Reasons)
	}
}

func gatherJudged(t *testing.T, db DB, target Target) *Report {
	t.Helper()
	r, err := Gather(context.Background(), db, target)
	if err != nil {
		t.Fatal(err)
	}
	r.Judge(DefaultThresholds())
	return r
}

func hasReasonWith(r *Report, prefix string) bool {
	for _, s := range r.Reasons {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
