package clickhouse

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ClickHouse/ch-go/proto"
	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/outbox-relay/relay/internal/retry"
)

// Settings go as strings from revision 54429 on (the format of every
// current server), as typed numbers before (18.16 speaks 54412).
func TestEncodeSettings(t *testing.T) {
	settings := ch.Settings{"insert_quorum": 2, "load_balancing": "random", "insert_deduplicate": 1}

	in := newTestInserter(t, settings, insertRevision)
	if err := in.encodeSettings(nil); err != nil {
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
		if !s.Important {
			t.Errorf("setting %s not marked important: a misspelt one would be ignored", s.Key)
		}
		got = append(got, s.Key+"="+s.Value)
	}
	if want := "insert_deduplicate=1 insert_quorum=2 load_balancing=random"; strings.Join(got, " ") != want {
		t.Errorf("settings at %d = %q, want %q", insertRevision, strings.Join(got, " "), want)
	}

	old := newTestInserter(t, ch.Settings{"insert_quorum": 2, "insert_deduplicate": true}, 54412)
	if err := old.encodeSettings(nil); err != nil {
		t.Fatal(err)
	}
	var want proto.Buffer
	want.PutString("insert_deduplicate")
	want.PutUVarInt(1)
	want.PutString("insert_quorum")
	want.PutUVarInt(2)
	want.PutString("")
	if !bytes.Equal(old.buf.Buf, want.Buf) {
		t.Errorf("settings at 54412 = %q, want %q", old.buf.Buf, want.Buf)
	}

	bad := newTestInserter(t, settings, 54412)
	if err := bad.encodeSettings(nil); err == nil || !retry.IsPermanent(err) || !strings.Contains(err.Error(), "load_balancing") {
		t.Errorf("a string setting at 54412 = %v, want a permanent error naming it", err)
	}
}

func newTestInserter(t *testing.T, settings ch.Settings, rev int) *inserter {
	t.Helper()
	in, err := newInserter(&ch.Options{Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	in.rev = rev
	return in
}
