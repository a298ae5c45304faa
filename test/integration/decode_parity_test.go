package integration

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// decodeCase is an outbox row with a value at the edge of what the relay
// can store, and what must become of it.
type decodeCase struct {
	tag     string
	when    string // event_date_time
	version string // metadata_version
	dead    bool   // dead-lettered rather than delivered
	want    uint64 // metadata_version in event_log when delivered
}

func decodeCases() []decodeCase {
	return []decodeCase{
		{tag: "good", when: "2024-01-01 00:00:00+00", version: "3", want: 3},
		{tag: "version-zero", when: "2024-01-01 00:00:00+00", version: "0", want: 0},
		{tag: "version-max", when: "2024-01-01 00:00:00+00", version: "9223372036854775807", want: 9223372036854775807},
		{tag: "infinity", when: "infinity", version: "1", dead: true},
		{tag: "minus-infinity", when: "-infinity", version: "1", dead: true},
		{tag: "version-minus-one", when: "2024-01-01 00:00:00+00", version: "-1", dead: true},
		{tag: "version-min", when: "2024-01-01 00:00:00+00", version: "-9223372036854775808", dead: true},
	}
}

func insertDecodeCases(ctx context.Context, t *testing.T, e *testenv.Env, path string) {
	t.Helper()
	for _, c := range decodeCases() {
		faultExec(ctx, t, e, `INSERT INTO outbox_event (event_type, environment, event_context, event_date_time, metadata_version)
			VALUES ($1, 'test', '{}', $2::timestamptz, $3::bigint)`, path+":"+c.tag, c.when, c.version)
	}
}

// TestBackfillDecodesLikeTheStream puts rows with edge values (timestamps
// 'infinity' and '-infinity', metadata_version 0, -1 and the bigint
// extremes) in the outbox before the slot exists (backfill) and again
// while the relay streams: both paths must deliver the same events with the
// same values, and dead-letter the same ones, as they were written, while
// the good rows around them are delivered.
func TestBackfillDecodesLikeTheStream(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	insertDecodeCases(ctx, t, e, "backfill")
	p := faultStart(t, relayBin, e)
	var dead int
	for _, c := range decodeCases() {
		if c.dead {
			dead++
		}
	}
	waitDecoded := func(n int) {
		testenv.Eventually(t, time.Minute, "every row delivered or dead-lettered", func() error {
			faultAlive(t, p, "with edge values in the outbox")
			var dl int
			if err := e.PG.QueryRow(ctx, "SELECT count(*) FROM outbox_dead_letter").Scan(&dl); err != nil {
				return err
			}
			rows, err := e.OutboxRows(ctx)
			if err != nil || rows != 0 || dl != n*dead {
				return fmt.Errorf("%d rows in outbox_event, %d dead letters (%w)", rows, dl, err)
			}
			return nil
		})
	}
	waitDecoded(1)
	insertDecodeCases(ctx, t, e, "stream")
	waitDecoded(2)
	faultAlive(t, p, "after both paths")

	delivered := map[string]uint64{}
	rows, err := e.CH.Query(ctx, "SELECT event_type, metadata_version FROM event_log FINAL")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var (
			typ string
			v   uint64
		)
		if err := rows.Scan(&typ, &v); err != nil {
			t.Fatal(err)
		}
		delivered[typ] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	deadLettered := map[string]string{}
	dl, err := e.PG.Query(ctx, `SELECT event_type, CASE WHEN isfinite(event_date_time)
		THEN to_char(event_date_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00' ELSE event_date_time::text END
		|| ' v' || metadata_version FROM outbox_dead_letter`)
	if err != nil {
		t.Fatal(err)
	}
	for dl.Next() {
		var typ, what string
		if err := dl.Scan(&typ, &what); err != nil {
			t.Fatal(err)
		}
		deadLettered[typ] = what
	}
	if err := dl.Err(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"backfill", "stream"} {
		for _, c := range decodeCases() {
			key := path + ":" + c.tag
			v, ok := delivered[key]
			what, dead := deadLettered[key]
			switch {
			case c.dead && (ok || !dead):
				t.Errorf("%s: delivered=%v (metadata_version %d), dead-lettered=%v; want dead-lettered only", key, ok, v, dead)
			case c.dead && what != c.when+" v"+c.version:
				t.Errorf("%s: dead letter holds %q, want event_date_time %s and metadata_version %s as written", key, what, c.when, c.version)
			case !c.dead && (!ok || dead):
				t.Errorf("%s: delivered=%v, dead-lettered=%v (%s); want delivered only", key, ok, dead, what)
			case !c.dead && v != c.want:
				t.Errorf("%s: metadata_version %d in event_log, want %d", key, v, c.want)
			}
		}
	}
	strip := func(m map[string]string, path string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if rest, ok := strings.CutPrefix(k, path+":"); ok {
				out[rest] = v
			}
		}
		return out
	}
	if b, s := strip(deadLettered, "backfill"), strip(deadLettered, "stream"); !reflect.DeepEqual(b, s) {
		t.Errorf("dead letters differ between the paths:\nbackfill %v\nstream   %v", b, s)
	}
}
