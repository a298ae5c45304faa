package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outbox-relay/relay/internal/testenv"
)

// faultPublicationCase breaks the publication the relay streams from.
type faultPublicationCase struct {
	name    string
	breakIt func(pub string) string // the SQL that breaks it
	want    func(pub string) string // what the relay's error must say
}

func faultPublicationCases() []faultPublicationCase {
	return []faultPublicationCase{
		{
			name:    "publication dropped",
			breakIt: func(pub string) string { return "DROP PUBLICATION " + pgx.Identifier{pub}.Sanitize() },
			want:    func(pub string) string { return fmt.Sprintf(`publication "%s" does not exist`, pub) },
		},
		{
			name: "table removed from publication",
			breakIt: func(pub string) string {
				return "ALTER PUBLICATION " + pgx.Identifier{pub}.Sanitize() + " DROP TABLE outbox_event"
			},
			want: func(pub string) string {
				return fmt.Sprintf(`publication "%s" does not include table public.outbox_event`, pub)
			},
		},
	}
}

// faultStreamedOnce runs a relay until 10 events are delivered and stops it
// with SIGTERM, so that the slot exists with a confirmed position.
func faultStreamedOnce(t *testing.T, e *testenv.Env) {
	t.Helper()
	p := faultStart(t, relayBin, e)
	faultInsert(context.Background(), t, e, "delivered", 10)
	e.WaitDelivered(t, 10, time.Minute, p)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := faultExitCode(t, p, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

// faultNothingMoved checks that the 10 events committed after the break
// are neither delivered nor deleted, and that the slot did not move.
func faultNothingMoved(ctx context.Context, t *testing.T, e *testenv.Env, before faultSlot) {
	t.Helper()
	s, err := readFaultSlot(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if s.Confirmed != before.Confirmed {
		t.Errorf("confirmed_flush_lsn moved from %d to %d although the relay could not stream", before.Confirmed, s.Confirmed)
	}
	if n, err := e.OutboxRows(ctx); err != nil || n != 10 {
		t.Errorf("outbox_event holds %d rows (%v), want the 10 undelivered", n, err)
	}
	if c, err := e.ClickHouseCounts(ctx); err != nil || c.Distinct != 10 {
		t.Errorf("ClickHouse holds %d events (%v), want the 10 delivered before the break", c.Distinct, err)
	}
}

// TestFaultPublicationBrokenAtStartup starts the relay on a slot whose
// publication is missing or no longer includes outbox_event: it must
// refuse with a clear message and exit code 2, confirming nothing.
func TestFaultPublicationBrokenAtStartup(t *testing.T) {
	t.Parallel()
	for _, tc := range faultPublicationCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := testenv.New(t)
			ctx := context.Background()
			faultStreamedOnce(t, e)
			faultExec(ctx, t, e, tc.breakIt(e.Publication))
			faultInsert(ctx, t, e, "after-break", 10)
			before, err := readFaultSlot(ctx, e)
			if err != nil {
				t.Fatal(err)
			}

			p := faultStart(t, relayBin, e)
			code := faultExitCode(t, p, 30*time.Second)
			out := p.Output()
			if code != 2 {
				t.Errorf("exit code %d, want 2 (configuration error)", code)
			}
			if !strings.Contains(out, tc.want(e.Publication)) {
				t.Errorf("output lacks %q:\n%s", tc.want(e.Publication), out)
			}
			faultNothingMoved(ctx, t, e, before)
		})
	}
}

// TestFaultPublicationBrokenMidStream breaks the publication under a
// streaming relay and commits 10 events: the relay must stop with a clear
// error and a non-zero exit code instead of streaming on without them, and
// must not confirm a position past them (the events stay in outbox_event
// for the relay to deliver once the publication is repaired).
func TestFaultPublicationBrokenMidStream(t *testing.T) {
	t.Parallel()
	for _, tc := range faultPublicationCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := testenv.New(t)
			ctx := context.Background()
			p := faultStart(t, relayBin, e)
			faultInsert(ctx, t, e, "delivered", 10)
			e.WaitDelivered(t, 10, time.Minute, p)

			faultExec(ctx, t, e, tc.breakIt(e.Publication))
			faultInsert(ctx, t, e, "after-break", 10)
			afterLSN := faultCurrentLSN(ctx, t, e)
			err := faultPoll(30*time.Second, func() error {
				if p.Exited() {
					return nil
				}
				return errors.New("still running")
			})
			s, serr := readFaultSlot(ctx, e)
			if serr != nil {
				t.Fatal(serr)
			}
			rows, rerr := e.OutboxRows(ctx)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if err != nil {
				acked := "not past them"
				if s.Confirmed >= afterLSN {
					acked = fmt.Sprintf("PAST them (confirmed_flush_lsn %d >= %d, the position after their commit)", s.Confirmed, afterLSN)
				}
				t.Fatalf("%s while streaming: the relay is still running 30 s later, silently; the 10 events committed since "+
					"wait in outbox_event (%d rows) and will never be streamed, and the slot is confirmed %s", tc.name, rows, acked)
			}
			code := faultExitCode(t, p, 10*time.Second)
			out := p.Output()
			if code == 0 {
				t.Errorf("exit code 0 after %s, want non-zero", tc.name)
			}
			if !strings.Contains(out, "publication") || !strings.Contains(out, e.Publication) {
				t.Errorf("the relay's error does not name publication %q:\n%s", e.Publication, out)
			}
			if s.Confirmed >= afterLSN {
				t.Errorf("confirmed_flush_lsn %d is past the undelivered events (commit before %d)", s.Confirmed, afterLSN)
			}
			if rows != 10 {
				t.Errorf("outbox_event holds %d rows, want the 10 undelivered", rows)
			}
			t.Logf("exit code %d; error: %s", code, faultErrorLine(out))
		})
	}
}

// faultErrorLine is the last line of out at level error.
func faultErrorLine(out string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], `"level":"error"`) {
			return lines[i]
		}
	}
	return ""
}
