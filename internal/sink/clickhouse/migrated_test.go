package clickhouse_test

import (
	"strings"
	"testing"

	"github.com/outbox-relay/relay/internal/migrate"
	chsink "github.com/outbox-relay/relay/internal/sink/clickhouse"
)

// The event_log table the migrations create must be fillable by the sink
// for both kinds of server: each column has a value or a DEFAULT.
func TestColumnsCoverMigratedTable(t *testing.T) {
	for _, caps := range []migrate.Capabilities{{DateTime64: true}, {DateTime64: false}} {
		stmts, err := migrate.Render("clickhouse/event_table.sql", migrate.Params{Capabilities: caps, Table: "event_log"})
		if err != nil {
			t.Fatal(err)
		}
		body := stmts[0][strings.Index(stmts[0], "(\n")+2 : strings.Index(stmts[0], "\n)")]
		filled := 0
		for _, line := range strings.Split(body, "\n") {
			name, typ, _ := strings.Cut(strings.TrimSuffix(strings.TrimSpace(line), ","), " ")
			typ, _, _ = strings.Cut(strings.TrimSpace(typ), " DEFAULT ")
			if chsink.Fills(name, typ) {
				filled++
				continue
			}
			if !strings.Contains(line, " DEFAULT ") {
				t.Errorf("%+v: column %s %s has neither a filler nor a DEFAULT", caps, name, typ)
			}
		}
		if filled < 7 {
			t.Errorf("%+v: only %d columns filled by the relay", caps, filled)
		}
	}
}
