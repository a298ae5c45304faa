package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outbox-relay/relay/internal/testenv"
)

// spineRoundTripCase is one outbox row; nil at / version take the table's
// defaults (now(), 1).
type spineRoundTripCase struct {
	name, typ, env, ctx string
	at                  *string
	version             *int64
	wantAt              time.Time // checked when not zero
}

// spineStored is one event as PostgreSQL stored it or ClickHouse holds it.
type spineStored struct {
	typ, env, ctx string
	at            time.Time
	version       uint64
}

func spineRoundTripCases() []spineRoundTripCase {
	ptr := func(s string) *string { return &s }
	seven := int64(7)
	blob := strings.Repeat("0123456789abcdef", (1<<20)/16)
	return []spineRoundTripCase{
		{name: "unicode", typ: "unicode\t😀漢字", env: "staging-עברית-العربية",
			ctx: `{"emoji":"😀👩‍👩‍👧‍👦🏳️‍🌈","cjk":"漢字かなカナ한국어","rtl":"עברית العربية ` + "\u200f" + `mark","ctl":"tab\there\nnl\rcr\u0001\u001f","esc":"q\" b\\ s/","sep":"\u2028\u2029","key😀":"v"}`},
		{name: "empty object", typ: "empty", env: "test", ctx: `{}`},
		{name: "nested", typ: "nested", env: "test",
			ctx: `{"a":[1, 2.50, -3e2, 0.1, 1e-7, true, false, null, {"b": [], "c": {}}], "n": null, "big": 123456789012345678901234567890, "s": "", "z": {"y": {"x": [[[]]]}}}`},
		{name: "1 MiB payload", typ: "big", env: "test", ctx: `{"blob":"` + blob + `"}`},
		{name: "explicit time and version", typ: "timed", env: "test", ctx: `{"k":1}`,
			at: ptr("2024-02-29 23:59:59.123456+05:30"), version: &seven,
			wantAt: time.Date(2024, 2, 29, 18, 29, 59, 123456000, time.UTC)},
		{name: "last microsecond of a year", typ: "timed", env: "test", ctx: `{"k":2}`,
			at: ptr("2021-12-31 23:59:59.999999+00"), wantAt: time.Date(2021, 12, 31, 23, 59, 59, 999999000, time.UTC)},
		{name: "whole second", typ: "timed", env: "test", ctx: `{"k":3}`,
			at: ptr("2030-06-15 12:00:00-07"), wantAt: time.Date(2030, 6, 15, 19, 0, 0, 0, time.UTC)},
		{name: "defaults", typ: "defaults", env: "", ctx: `[]`},
	}
}

// TestEveryColumnRoundTrips writes rows through both delivery paths (the
// new slot's snapshot backfill and the stream) and compares every column in
// ClickHouse with what PostgreSQL stored.
func TestEveryColumnRoundTrips(t *testing.T) {
	t.Parallel()
	e := testenv.New(t)
	ctx := context.Background()
	cases := spineRoundTripCases()
	want := map[string]spineStored{} // event id -> as stored by PostgreSQL
	names := map[string]string{}     // event id -> case name, for messages
	insert := func(path string) {
		for i, c := range cases {
			id := fmt.Sprintf("01234567-89ab-4def-%s-%012d", map[string]string{"backfill": "8000", "stream": "9000"}[path], i)
			want[id] = spineInsertRoundTrip(ctx, t, e, id, c)
			names[id] = path + "/" + c.name
		}
	}

	insert("backfill") // before the slot exists: delivered from its snapshot
	p := startRelay(t, e)
	waitLog(t, p, logStreaming, 30*time.Second)
	insert("stream")
	c := e.WaitDelivered(t, uint64(len(want)), 45*time.Second, p)
	if c.Final != uint64(len(want)) {
		t.Fatalf("event_log FINAL has %d rows, want %d", c.Final, len(want))
	}

	got := spineReadEventLog(ctx, t, e)
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("%s (%s): missing in event_log", names[id], id)
			continue
		}
		spineCompare(t, names[id], g, w)
	}
}

func spineInsertRoundTrip(ctx context.Context, t *testing.T, e *testenv.Env, id string, c spineRoundTripCase) spineStored {
	t.Helper()
	var s spineStored
	var version int64
	err := e.PG.QueryRow(ctx, `INSERT INTO outbox_event (id, event_type, environment, event_context, event_date_time, metadata_version)
		VALUES ($1, $2, $3, $4::jsonb, COALESCE($5::timestamptz, now()), COALESCE($6::bigint, 1))
		RETURNING event_date_time, metadata_version`, id, c.typ, c.env, c.ctx, c.at, c.version).Scan(&s.at, &version)
	if err != nil {
		t.Fatalf("insert %s: %v", c.name, err)
	}
	// jsonb normalises its input; PostgreSQL's own text form is the truth.
	if err := e.PG.QueryRow(ctx, "SELECT $1::jsonb::text", c.ctx).Scan(&s.ctx); err != nil {
		t.Fatal(err)
	}
	s.typ, s.env, s.at, s.version = c.typ, c.env, s.at.UTC(), uint64(version)
	if !c.wantAt.IsZero() && !s.at.Equal(c.wantAt) {
		t.Fatalf("%s: PostgreSQL spineStored %s, test expects %s", c.name, s.at, c.wantAt)
	}
	if c.version != nil && version != *c.version {
		t.Fatalf("%s: PostgreSQL spineStored metadata_version %d", c.name, version)
	}
	return s
}

// spineReadEventLog reads event_log FINAL by event id, on either schema.
func spineReadEventLog(ctx context.Context, t *testing.T, e *testenv.Env) map[string]spineStored {
	t.Helper()
	dt64, err := spineDateTime64(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	timeCols := "toUInt32(event_date_time), event_date_time_us"
	if dt64 {
		timeCols = "event_date_time"
	}
	rows, err := e.CH.Query(ctx, `SELECT toString(event_id), event_type, environment, metadata_version, event_context, `+
		timeCols+` FROM event_log FINAL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]spineStored{}
	for rows.Next() {
		var (
			id        string
			s         spineStored
			secs, usc uint32
		)
		dest := []any{&id, &s.typ, &s.env, &s.version, &s.ctx}
		if dt64 {
			dest = append(dest, &s.at)
		} else {
			dest = append(dest, &secs, &usc)
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		if !dt64 {
			if usc > 999_999 {
				t.Errorf("event %s: event_date_time_us = %d, not a microsecond count", id, usc)
			}
			s.at = time.Unix(int64(secs), int64(usc)*1000)
		}
		s.at = s.at.UTC()
		if _, dup := out[id]; dup {
			t.Errorf("event %s twice in event_log FINAL", id)
		}
		out[id] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func spineCompare(t *testing.T, name string, got, want spineStored) {
	t.Helper()
	if got.typ != want.typ {
		t.Errorf("%s: event_type %q, want %q", name, got.typ, want.typ)
	}
	if got.env != want.env {
		t.Errorf("%s: environment %q, want %q", name, got.env, want.env)
	}
	if got.version != want.version {
		t.Errorf("%s: metadata_version %d, want %d", name, got.version, want.version)
	}
	if !got.at.Equal(want.at) {
		t.Errorf("%s: event_date_time %s, want %s (the same instant, to the microsecond)",
			name, got.at.Format(time.RFC3339Nano), want.at.Format(time.RFC3339Nano))
	}
	if got.ctx != want.ctx {
		t.Errorf("%s: event_context differs (len %d, want %d):\n got %.300q\nwant %.300q",
			name, len(got.ctx), len(want.ctx), got.ctx, want.ctx)
	}
}
