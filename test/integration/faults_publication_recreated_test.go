package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
)

// TestFaultPublicationRecreated drops the publication and creates it again
// (`relay migrate`) behind a slot with undelivered events after its
// position: pgoutput reads the publication as of the WAL it decodes, where
// the new one does not exist yet, so the slot can never stream with it.
// relay status must say so (not "publication ok"), and relay run must
// recover by itself like for a lost slot: recreate the slot and deliver the
// undelivered rows from the outbox table, each once, and stream on.
func TestFaultPublicationRecreated(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	faultStreamedOnce(t, e) // 10 delivered; the slot exists, inactive
	faultExec(ctx, t, e, "DROP PUBLICATION "+pgx.Identifier{e.Publication}.Sanitize())
	faultInsert(ctx, t, e, "while-dropped", 10)
	if code, out := runRelayCmd(t, time.Minute, e.RelayEnv(), "migrate"); code != 0 {
		t.Fatalf("relay migrate: exit %d:\n%s", code, out)
	}
	faultInsert(ctx, t, e, "after-migrate", 10)

	code, r, out := relayStatus(t, e.RelayEnv())
	if code != statusExitCritical || !r.PublicationExists || !r.PublicationAfterSlot {
		t.Errorf("relay status before the relay runs: exit %d, publication exists %v, created after the slot %v; want exit %d, exists, after the slot:\n%s",
			code, r.PublicationExists, r.PublicationAfterSlot, statusExitCritical, out)
	}
	if !strings.Contains(strings.Join(r.Reasons, "\n"), "created after") {
		t.Errorf("relay status reasons %q do not say the publication was created after the slot's position", r.Reasons)
	}

	p := faultStart(t, relayBin, e)
	faultExpectExactlyOnce(t, e, 30, time.Minute, p)
	faultInsert(ctx, t, e, "streamed", 10)
	faultExpectExactlyOnce(t, e, 40, time.Minute, p)
	faultAlive(t, p, "after recovering from the recreated publication")
	if !strings.Contains(p.Output(), "created after the slot's position") {
		t.Errorf("the relay did not log why it recreated the slot:\n%s", p.Output())
	}
	code, r, out = relayStatus(t, e.RelayEnv())
	if r.PublicationAfterSlot || strings.Contains(strings.Join(r.Reasons, "\n"), "publication") {
		t.Errorf("relay status after the recovery: exit %d, publication created after the slot %v, reasons %q:\n%s", code, r.PublicationAfterSlot, r.Reasons, out)
	}
}
