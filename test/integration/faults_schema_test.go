package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestFaultOutboxColumnAddedMidStream adds a column to outbox_event
// (ALTER TABLE ... ADD COLUMN extra text DEFAULT 'x') while transactions
// commit: the stream goes on with the new relation message, without a
// reconnect or an error, and every event arrives exactly once, those
// written with an explicit value of the new column too.
func TestFaultOutboxColumnAddedMidStream(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	p := faultStart(t, relayBin, e)
	waitLog(t, p, faultLogStreaming, 30*time.Second)
	prod := startFaultProducer(e, "load", 3, 5*time.Millisecond)
	prod.stopOnCleanup(t)
	faultWaitFlushes(t, e, p, 3)

	faultExec(ctx, t, e, "ALTER TABLE outbox_event ADD COLUMN extra text DEFAULT 'x'")
	faultExec(ctx, t, e, `INSERT INTO outbox_event (event_type, environment, event_context, extra)
		SELECT 'fault', 'test', jsonb_build_object('tag', 'with-extra', 'n', g), 'y' FROM generate_series(1, 50) g`)
	faultWaitFlushes(t, e, p, 3)
	committed, err := prod.stop()
	if err != nil {
		t.Fatal(err)
	}
	faultExpectExactlyOnce(t, e, committed+50, 2*time.Minute, p)
	if n, err := clickHouseFaultTags(ctx, e, "with-extra"); err != nil || n != 50 {
		t.Errorf("ClickHouse holds %d events written with the new column (%v), want 50", n, err)
	}
	out := p.Output()
	for _, bad := range []string{faultLogReconnecting, `"level":"error"`} {
		if strings.Contains(out, bad) {
			t.Errorf("the relay logged %s after the column was added:\n%s", bad, out)
		}
	}
}
