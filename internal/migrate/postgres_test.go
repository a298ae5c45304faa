package migrate

import (
	"io/fs"
	"slices"
	"testing"

	"github.com/outbox-relay/relay/migrations"
)

// Versions once shipped and removed stay unused: a database that applied
// them has goose's record of them, so a new file under the same number
// would never run there. 00001 (outbox_event, now migrations/outbox_event.sql),
// 00002 and 00006 (the demo's users and outbox_event.user_id, now relay
// api's), 00007 (removed before).
func TestRemovedPostgresVersionsStayUnused(t *testing.T) {
	files, err := fs.Glob(migrations.Postgres, "postgres/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no embedded PostgreSQL migrations (err %v)", err)
	}
	seen := map[uint32]string{}
	for _, name := range files {
		v, err := versionOf(name)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains([]uint32{1, 2, 6, 7}, v) {
			t.Errorf("%s reuses the removed version %d", name, v)
		}
		if other, dup := seen[v]; dup {
			t.Errorf("%s and %s share version %d", name, other, v)
		}
		seen[v] = name
	}
}
