package replication

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/jackc/pglogrepl"
)

// pgMessage builds a pgoutput 'M' body (after the type byte).
func pgMessage(flags byte, lsn uint64, prefix string, content []byte) []byte {
	b := []byte{flags}
	b = binary.BigEndian.AppendUint64(b, lsn)
	b = append(append(b, prefix...), 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(content)))
	return append(b, content...)
}

// parseMessage agrees with pglogrepl on well-formed input and rejects
// what pglogrepl would slice out of bounds.
func TestParseMessage(t *testing.T) {
	tests := []struct {
		name    string
		src     []byte
		wantErr bool
	}{
		{name: "transactional", src: pgMessage(1, 0x1234, "outbox", []byte("payload"))},
		{name: "non-transactional", src: pgMessage(0, 7, "other", []byte{0, 1, 2})},
		{name: "empty prefix and content", src: pgMessage(1, 1, "", nil)},
		{name: "large content", src: pgMessage(1, 1, "p", bytes.Repeat([]byte{0xff}, 1<<20))},
		{name: "short", src: []byte{1, 0, 0}, wantErr: true},
		{name: "no NUL after prefix", src: append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 1}, "prefixprefix"...), wantErr: true},
		{name: "length overruns", src: pgMessage(1, 1, "p", []byte("abc"))[:16], wantErr: true},
		{name: "trailing bytes", src: append(pgMessage(1, 1, "p", []byte("abc")), 'x'), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMessage(tt.src)
			if tt.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatalf("parseMessage: %v", err)
			}
			var want pglogrepl.LogicalDecodingMessage
			if err := want.Decode(tt.src); err != nil {
				t.Fatalf("pglogrepl: %v", err)
			}
			if got.transactional != want.Transactional || got.lsn != uint64(want.LSN) ||
				string(got.prefix) != want.Prefix || !bytes.Equal(got.content, want.Content) {
				t.Errorf("got %+v, pglogrepl %+v", got, want)
			}
		})
	}
}
