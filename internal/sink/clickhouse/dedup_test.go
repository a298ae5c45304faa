package clickhouse

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outbox-relay/relay/internal/event"
)

func serverVersion(major, minor uint64) driver.ServerVersion {
	var v driver.ServerVersion
	v.Version.Major, v.Version.Minor = major, minor
	return v
}

// The deduplication token goes only to servers that know it (22.2+) and
// only for a batch that has an identity.
func TestInsertSettings(t *testing.T) {
	const token = "outbox:0/16B3748.0:0/16B9F00.4"
	tests := []struct {
		name  string
		major uint64
		minor uint64
		token string
		want  string
	}{
		{"18.16 has no token: block checksums only", 18, 16, token, ""},
		{"21.8 has no token, no async inserts", 21, 8, token, ""},
		{"21.11 has async inserts: off", 21, 11, token, "async_insert=0"},
		{"22.1 has no token", 22, 1, token, "async_insert=0"},
		{"22.2 has it", 22, 2, token, "async_insert=0 insert_deduplication_token=" + token},
		{"24.8 has it", 24, 8, token, "async_insert=0 insert_deduplication_token=" + token},
		{"no identity (backfill): no token", 24, 8, "", "async_insert=0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, s := range insertSettings(serverVersion(tt.major, tt.minor), tt.token) {
				if !s.Important {
					t.Errorf("%s not important", s.Key)
				}
				got = append(got, s.Key+"="+s.Value)
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("settings = %q, want %q", g, tt.want)
			}
		})
	}
}

// The token replaces one CLICKHOUSE_URL may set, and is left out at the
// old revision (which carries only numbers; servers that speak it have no
// token anyway).
func TestEncodeSettingsWithToken(t *testing.T) {
	extra := insertSettings(serverVersion(24, 8), "s:0/1.0:0/1.3")
	in := newTestInserter(t, ch.Settings{"insert_quorum": 2, dedupTokenSetting: "from-url"}, insertRevision)
	if err := in.encodeSettings(extra); err != nil {
		t.Fatal(err)
	}
	r := proto.NewReader(bytes.NewReader(in.buf.Buf))
	var got []string
	for {
		var s proto.Setting
		if err := s.Decode(r); err != nil {
			t.Fatal(err)
		}
		if s.Key == "" {
			break
		}
		got = append(got, s.Key+"="+s.Value)
	}
	if want := "insert_quorum=2 async_insert=0 insert_deduplication_token=s:0/1.0:0/1.3"; strings.Join(got, " ") != want {
		t.Errorf("settings = %q, want %q", strings.Join(got, " "), want)
	}

	old := newTestInserter(t, ch.Settings{"insert_quorum": 2}, 54412)
	if err := old.encodeSettings(extra); err != nil {
		t.Fatal(err)
	}
	var want proto.Buffer
	want.PutString("insert_quorum")
	want.PutUVarInt(2)
	want.PutString("")
	if !bytes.Equal(old.buf.Buf, want.Buf) {
		t.Errorf("settings at 54412 = %q, want %q", old.buf.Buf, want.Buf)
	}
}

// relayed_at is the batch's value for every row, whatever the clock says.
func TestRelayedAtColumn(t *testing.T) {
	at := time.Date(2026, 12, 3, 18, 0, 7, 0, time.UTC)
	c, ok := relayedAtColumn("relayed_at", "DateTime('UTC')", &at)
	if !ok {
		t.Fatal("relayed_at DateTime('UTC') not taken")
	}
	c.fill(make([]event.Event, 3))
	col := c.data.(*proto.ColDateTime)
	if col.Rows() != 3 {
		t.Fatalf("rows = %d, want 3", col.Rows())
	}
	for i := range 3 {
		if got := col.Row(i); !got.Equal(at) {
			t.Errorf("row %d = %v, want %v", i, got, at)
		}
	}
	for _, typ := range []string{"String", "DateTime64(3)", "Date"} {
		if _, ok := relayedAtColumn("relayed_at", typ, &at); ok {
			t.Errorf("relayed_at %s taken", typ)
		}
	}
}
