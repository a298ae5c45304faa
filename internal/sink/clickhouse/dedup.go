package clickhouse

import (
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outbox-relay/relay/internal/event"
)

// Deduplicated inserts. The relay inserts a batch again after a crash with
// the same events in the same order and the same identity (see package
// batch); ClickHouse drops the repeat when
//   - the server has insert_deduplication_token (22.2+): the batch's token
//     is sent with the INSERT (a non-replicated table also needs the table
//     setting non_replicated_deduplication_window > 0);
//   - else, on a Replicated*MergeTree table, the repeated block has the same
//     checksum: every value the relay writes is the same on every insert,
//     relayed_at included (the relay sends it, from the batch's record).
// One INSERT carries one block, which the server splits by partition only.

// dedupTokenSetting is the per-insert deduplication setting.
const dedupTokenSetting = "insert_deduplication_token"

// hasDedupToken reports whether the server knows insert_deduplication_token
// (added in 22.2).
func hasDedupToken(v driver.ServerVersion) bool {
	return v.Version.Major > 22 || v.Version.Major == 22 && v.Version.Minor >= 2
}

// hasAsyncInsert reports whether the server has async_insert (21.11+).
func hasAsyncInsert(v driver.ServerVersion) bool {
	return v.Version.Major > 21 || v.Version.Major == 21 && v.Version.Minor >= 11
}

// insertSettings are the settings sent with the INSERT of a batch whose
// identity is token (empty: none) besides CLICKHOUSE_URL's: async_insert
// off where it exists (a user profile may turn it on; it would merge and
// split the relay's blocks, so a replay would not be dropped), and the
// deduplication token where the server has it.
func insertSettings(v driver.ServerVersion, token string) []proto.Setting {
	var out []proto.Setting
	if hasAsyncInsert(v) {
		out = append(out, proto.Setting{Key: "async_insert", Value: "0", Important: true})
	}
	if token != "" && hasDedupToken(v) {
		out = append(out, proto.Setting{Key: dedupTokenSetting, Value: token, Important: true})
	}
	return out
}

// relayedAtColumn fills relayed_at (DateTime) with the batch's value rather
// than leaving it to the table's DEFAULT now(), which would differ on a
// repeated insert and defeat the block checksum.
func relayedAtColumn(name, typ string, at *time.Time) (*relayColumn, bool) {
	if name != "relayed_at" || typ != "DateTime" && !strings.HasPrefix(typ, "DateTime(") {
		return nil, false
	}
	var col proto.ColDateTime
	c := &relayColumn{name: name, typ: typ, data: &col}
	c.fill = func(evs []event.Event) {
		col.Data = col.Data[:0]
		v := proto.DateTime(at.Unix())
		for range evs {
			col.Data = append(col.Data, v)
		}
	}
	return c, true
}
