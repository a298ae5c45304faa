package bench

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spf13/pflag"

	"github.com/outbox-relay/relay/internal/config"
)

// The three-stream runs' RELAY_CONFIG is read by the relay's own loader
// as the scenario means it (a renamed key would otherwise show only as a
// failed run of make bench).
func TestStreamsConfigLoads(t *testing.T) {
	raw, err := streamsConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "streams.yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	c := config.Defaults()
	fs := pflag.NewFlagSet("relay", pflag.ContinueOnError)
	config.RegisterFlags(fs, &c)
	if err := config.Load(fs, &c, map[string]string{"RELAY_CONFIG": path}, config.NeedStream); err != nil {
		t.Fatalf("load %s:\n%s\n%v", path, raw, err)
	}
	got := c.Streams()
	if len(got) != len(streamOutboxes) {
		t.Fatalf("%d streams, want %d: %+v", len(got), len(streamOutboxes), got)
	}
	byOutbox := map[string]config.Stream{}
	for _, s := range got {
		byOutbox[s.Outbox] = s
	}
	app, billing, routed := byOutbox["public.core_outboxevent"], byOutbox["billing.outbox"], byOutbox[config.DefaultOutboxTable]
	if app.ClickHouseTable != config.DefaultClickHouseTable || !slices.Contains(app.Ignore, "processed") || !slices.Contains(app.Ignore, "created_at") {
		t.Errorf("app stream: %+v", app)
	}
	if billing.ClickHouseTable != "billing_event_log" || billing.Column(config.FieldEventType) != "kind" ||
		billing.Column(config.FieldEventContext) != "payload" || billing.Constants[config.FieldMetadataVersion] != "1" {
		t.Errorf("billing stream: %+v", billing)
	}
	if routed.ClickHouseTable != "events_{event_type}" || routed.MaxTables < len(StreamEventTypes) {
		t.Errorf("routed stream: %+v", routed)
	}
}
