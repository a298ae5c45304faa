package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/outbox-relay/relay/internal/sink/clickhouse/chsql"
)

// Level is what a replay of a batch (after a crash, before its position
// was confirmed) leaves visible in a table.
type Level string

const (
	// ExactlyOnce: the table drops the repeated INSERT (a replicated
	// table's block deduplication, or a 22.2+ table with
	// non_replicated_deduplication_window > 0 and the relay's
	// insert_deduplication_token): a plain count() is exact.
	ExactlyOnce Level = "exactly once"
	// ExactlyOnceFinal: the repeat is stored, but the table is a
	// ReplacingMergeTree whose sorting key holds event_id: reads through
	// FINAL (and merges, eventually) show each event once.
	ExactlyOnceFinal Level = "exactly once through FINAL"
	// AtLeastOnce: a replay after a crash is a visible duplicate.
	AtLeastOnce Level = "at least once"
)

// Value is the level as a number, for a metric: 2 exactly once, 1 exactly
// once through FINAL, 0 at least once.
func (l Level) Value() float64 {
	switch l {
	case ExactlyOnce:
		return 2
	case ExactlyOnceFinal:
		return 1
	}
	return 0
}

// Guarantee is what a table guarantees for the relay's replays, why, and
// the statement that raises it (empty when none exists on this server
// short of recreating the table).
type Guarantee struct {
	Table      string
	Engine     string // of the table that stores the rows (under a Distributed one, its local table)
	SortingKey string
	Level      Level
	Reason     string
	Upgrade    string
}

// String is the guarantee as `relay migrate` prints it (without the
// table's name).
func (g Guarantee) String() string {
	s := fmt.Sprintf("%s (%s)", g.Level, g.Reason)
	if g.Level == AtLeastOnce {
		s = fmt.Sprintf("at least once: a replay after a crash is a visible duplicate (%s)", g.Reason)
	}
	if g.Upgrade != "" {
		s += "; raised by: " + g.Upgrade
	}
	return s
}

// tableInfo is what system.tables says of a table.
type tableInfo struct {
	database, name           string
	engine, full, sortingKey string
}

// readTable reads a table's engine, its full engine clause and its
// sorting key from system.tables (database "": the connection's).
func readTable(ctx context.Context, conn driver.Conn, database, name string) (tableInfo, bool, error) {
	q := `SELECT database, name, engine, engine_full, sorting_key FROM system.tables WHERE database = currentDatabase() AND name = ?`
	args := []any{name}
	if database != "" {
		q = `SELECT database, name, engine, engine_full, sorting_key FROM system.tables WHERE database = ? AND name = ?`
		args = []any{database, name}
	}
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return tableInfo{}, false, classify("read system.tables", err)
	}
	defer rows.Close()
	var t tableInfo
	found := false
	for rows.Next() {
		if err := rows.Scan(&t.database, &t.name, &t.engine, &t.full, &t.sortingKey); err != nil {
			return tableInfo{}, false, classify("read system.tables", err)
		}
		found = true
	}
	if err := rows.Err(); err != nil {
		return tableInfo{}, false, classify("read system.tables", err)
	}
	return t, found, nil
}

// ReadGuarantee reads what table (in conn's database) guarantees: its
// engine, sorting key and deduplication settings (the table's SETTINGS,
// else the server's system.merge_tree_settings) and the server's
// version. Under a Distributed table it reads the local table it writes
// to, on this server. ok is false when the table does not exist.
func ReadGuarantee(ctx context.Context, conn driver.Conn, table string) (g Guarantee, ok bool, err error) {
	v, err := conn.ServerVersion()
	if err != nil {
		return Guarantee{}, false, classify("server version", err)
	}
	t, ok, err := readTable(ctx, conn, "", table)
	if err != nil || !ok {
		return Guarantee{}, ok, err
	}
	cluster := ""
	if t.engine == "Distributed" {
		args := engineArgs(t.full)
		if len(args) < 3 {
			return Guarantee{}, true, fmt.Errorf("clickhouse table %s: cannot read the Distributed engine's table from %q", table, t.full)
		}
		cluster = unquote(args[0])
		local, found, err := readTable(ctx, conn, unquote(args[1]), unquote(args[2]))
		if err != nil {
			return Guarantee{}, true, err
		}
		if !found {
			return Guarantee{}, true, fmt.Errorf("clickhouse table %s: its Distributed engine writes to %s.%s, which this server does not have", table, unquote(args[1]), unquote(args[2]))
		}
		t = local
	}
	defaults, err := mergeTreeDefaults(ctx, conn)
	if err != nil {
		return Guarantee{}, true, err
	}
	g = guaranteeOf(t, tableSettings(t.full), defaults, hasDedupToken(*v), cluster)
	g.Table = table
	return g, true, nil
}

// Guarantee is ReadGuarantee for a table that must exist.
func (s *Sink) Guarantee(ctx context.Context, table string) (Guarantee, error) {
	conn, err := Connect(ctx, s.dsn)
	if err != nil {
		return Guarantee{}, err
	}
	defer func() { _ = conn.Close() }()
	g, ok, err := ReadGuarantee(ctx, conn, table)
	if err == nil && !ok {
		err = fmt.Errorf("clickhouse table %s does not exist in the database of CLICKHOUSE_URL (run `relay migrate`)", table)
	}
	return g, err
}

// DedupWindow is how many recent inserted blocks a table remembers to drop
// a repeated one: a replay comes right after the crash it repairs, so any
// window covers the relay's own replay; 1000 leaves room for other writers
// (and is the default of current servers' replicated tables).
const DedupWindow = 1000

// guaranteeOf decides the level from what the catalog says. token: the
// server has insert_deduplication_token (22.2+); cluster: the Distributed
// table's cluster when t is its local table.
func guaranteeOf(t tableInfo, settings, defaults map[string]string, token bool, cluster string) Guarantee {
	g := Guarantee{Engine: t.engine, SortingKey: t.sortingKey}
	setting := func(name string) (int, bool) {
		v, ok := settings[name]
		if !ok {
			v, ok = defaults[name]
		}
		n, err := strconv.Atoi(v)
		return n, ok && err == nil
	}
	mergeTree := strings.HasSuffix(t.engine, "MergeTree")
	replicated := strings.HasPrefix(t.engine, "Replicated") || strings.HasPrefix(t.engine, "Shared")
	replacing := strings.Contains(t.engine, "ReplacingMergeTree")
	keyed := replacing && hasKeyColumn(t.sortingKey, "event_id")
	ident := chsql.Ident(t.name)
	if t.database != "" && cluster != "" {
		ident = chsql.Ident(t.database) + "." + ident + " ON CLUSTER " + chsql.Ident(cluster)
	}
	alter := func(name string) string {
		return fmt.Sprintf("ALTER TABLE %s MODIFY SETTING %s = %d", ident, name, DedupWindow)
	}
	switch {
	case replicated && strings.HasPrefix(t.engine, "Shared"):
		g.Level, g.Reason = ExactlyOnce, t.engine+" drops a repeated insert of a block"
		return g
	case replicated:
		if w, ok := setting("replicated_deduplication_window"); ok && w == 0 {
			g.Level, g.Reason, g.Upgrade = AtLeastOnce, t.engine+" with replicated_deduplication_window = 0 keeps a repeated block", alter("replicated_deduplication_window")
			if keyed {
				g.Level = ExactlyOnceFinal
				g.Reason += "; a ReplacingMergeTree ordered by event_id shows each event once through FINAL"
			}
			return g
		}
		g.Level, g.Reason = ExactlyOnce, t.engine+" drops a repeated insert of the same block, as the relay repeats a batch (replicated_deduplication_window)"
		return g
	case mergeTree && token:
		if w, ok := setting("non_replicated_deduplication_window"); ok && w > 0 {
			g.Level, g.Reason = ExactlyOnce, fmt.Sprintf("non_replicated_deduplication_window = %d: the relay's insert_deduplication_token drops a replay", w)
			return g
		}
		g.Upgrade = alter("non_replicated_deduplication_window")
	}
	switch {
	case keyed:
		g.Level, g.Reason = ExactlyOnceFinal, t.engine+" whose sorting key ("+t.sortingKey+") holds event_id: reads through FINAL show each event once"
	case replacing:
		g.Level, g.Reason = AtLeastOnce, t.engine+" whose sorting key ("+t.sortingKey+") lacks event_id: a replay is not folded, and distinct events with the same key are"
	case mergeTree:
		g.Level, g.Reason = AtLeastOnce, t.engine+" without insert deduplication"
	default:
		g.Level, g.Reason = AtLeastOnce, "engine "+t.engine+" has no deduplication"
	}
	if g.Upgrade == "" && g.Level == AtLeastOnce {
		if mergeTree {
			missing := "insert_deduplication_token (22.2+)"
			if _, ok := defaults["non_replicated_deduplication_window"]; !ok {
				// 18.16: not even the table setting.
				missing = "non_replicated_deduplication_window nor " + missing
			}
			g.Reason += "; this server has no " + missing + ", so nothing short of recreating the table (a ReplacingMergeTree ordered by event_id, or a Replicated engine) raises it"
		} else {
			g.Reason += "; nothing short of recreating the table raises it"
		}
	}
	return g
}

// hasKeyColumn reports whether a sorting key (as system.tables spells it,
// "a, b, c") names col as one of its elements.
func hasKeyColumn(key, col string) bool {
	for _, e := range splitTop(key) {
		if strings.Trim(strings.TrimSpace(e), "`") == col {
			return true
		}
	}
	return false
}

// mergeTreeDefaults reads the server's MergeTree settings (those a table
// without its own SETTINGS has).
func mergeTreeDefaults(ctx context.Context, conn driver.Conn) (map[string]string, error) {
	rows, err := conn.Query(ctx, `SELECT name, value FROM system.merge_tree_settings
		WHERE name IN ('replicated_deduplication_window', 'non_replicated_deduplication_window')`)
	if err != nil {
		return nil, classify("read system.merge_tree_settings", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, classify("read system.merge_tree_settings", err)
		}
		out[name] = value
	}
	return out, rows.Err()
}

// tableSettings reads the SETTINGS of an engine clause (engine_full):
// "MergeTree ... SETTINGS a = 1, b = 'x'" gives a: 1, b: 'x'.
func tableSettings(full string) map[string]string {
	out := map[string]string{}
	i := strings.LastIndex(full, " SETTINGS ")
	if i < 0 {
		return out
	}
	for _, kv := range splitTop(full[i+len(" SETTINGS "):]) {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			out[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return out
}

// engineArgs are the arguments of an engine clause's first parentheses:
// "Distributed('c', 'db', 't', rand())" gives 'c', 'db', 't', rand().
func engineArgs(full string) []string {
	open := strings.IndexByte(full, '(')
	if open < 0 {
		return nil
	}
	depth, quoted := 0, false
	for i := open; i < len(full); i++ {
		switch c := full[i]; {
		case c == '\\' && quoted:
			i++
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			if depth--; depth == 0 {
				return splitTop(full[open+1 : i])
			}
		}
	}
	return nil
}

// splitTop splits s at the commas outside parentheses and quotes.
func splitTop(s string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	if rest := strings.TrimSpace(s[start:]); rest != "" {
		out = append(out, rest)
	}
	return out
}

// unquote is a quoted string literal's value (or s, unquoted).
func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(s[1 : len(s)-1])
	}
	return strings.Trim(s, "`")
}
