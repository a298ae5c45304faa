package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	chproto "github.com/ClickHouse/ch-go/proto"
	chcolumn "github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/ClickHouse/clickhouse-go/v2/lib/proto"
)

// Conn is the engine as a clickhouse-go connection, so that the relay's
// own code (migrate, status, the sink's reading of system.columns) runs
// its own queries against it. Results travel as Native blocks and are
// decoded and scanned by clickhouse-go's column types, so a column whose
// type changed in a current server fails the Scan exactly as it would
// through the driver. Exec, Query, QueryRow, PrepareBatch (rows sent as
// VALUES), ServerVersion, Ping and Close are provided; any other method
// panics (the embedded interface is nil), which shows a test using one.
func (e *Engine) Conn() driver.Conn { return &engineConn{e: e} }

// ConnRenaming is Conn with table names in the relay's queries replaced,
// old, new, ...: to run a query on a copy of a system table (CREATE TABLE
// … AS system.replicas) holding the rows the engine alone cannot have,
// such as a replica's.
func (e *Engine) ConnRenaming(oldnew ...string) driver.Conn {
	return &engineConn{e: e, rename: strings.NewReplacer(oldnew...)}
}

type engineConn struct {
	driver.Conn
	e      *Engine
	rename *strings.Replacer // nil: none
}

// ServerVersion parses the engine's version (26.5.1.1).
func (c *engineConn) ServerVersion() (*driver.ServerVersion, error) {
	parts := strings.SplitN(c.e.Version, ".", 4)
	if len(parts) < 3 {
		return nil, fmt.Errorf("engine version %q", c.e.Version)
	}
	var n [3]uint64
	for i := range n {
		v, err := strconv.ParseUint(parts[i], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("engine version %q: %w", c.e.Version, err)
		}
		n[i] = v
	}
	return &driver.ServerVersion{Name: "chDB", DisplayName: "chDB", Timezone: time.UTC,
		Version: proto.Version{Major: n[0], Minor: n[1], Patch: n[2]}}, nil
}

func (c *engineConn) Ping(context.Context) error { return nil }
func (c *engineConn) Close() error               { return nil }

func (c *engineConn) Exec(_ context.Context, query string, args ...any) error {
	q, err := c.bind(query, args)
	if err != nil {
		return err
	}
	_, err = c.e.Query(q, "TSV")
	return err
}

func (c *engineConn) Query(_ context.Context, query string, args ...any) (driver.Rows, error) {
	q, err := c.bind(query, args)
	if err != nil {
		return nil, err
	}
	out, err := c.e.Query(q, "Native")
	if err != nil {
		return nil, err
	}
	return decodeNative(out)
}

func (c *engineConn) QueryRow(ctx context.Context, query string, args ...any) driver.Row {
	rows, err := c.Query(ctx, query, args...)
	if err != nil {
		return &engineRow{err: err}
	}
	return &engineRow{rows: rows.(*engineRows)}
}

func (c *engineConn) PrepareBatch(_ context.Context, query string, _ ...driver.PrepareBatchOption) (driver.Batch, error) {
	return &engineBatch{e: c.e, query: query}, nil
}

// decodeNative reads the blocks of a Native result (no block info: the
// format, not the protocol) into clickhouse-go's columns.
func decodeNative(out []byte) (*engineRows, error) {
	r := chproto.NewReader(bytes.NewReader(out))
	rows := &engineRows{row: -1}
	for {
		b := &proto.Block{ServerContext: &chcolumn.ServerContext{Timezone: time.UTC}}
		if err := b.Decode(r, 0); err != nil {
			if errors.Is(err, io.EOF) {
				return rows, nil
			}
			return nil, fmt.Errorf("decode Native result: %w", err)
		}
		if b.Rows() > 0 {
			rows.blocks = append(rows.blocks, b)
		}
	}
}

// engineRows scans as clickhouse-go's rows do: each column's ScanRow.
type engineRows struct {
	driver.Rows
	blocks []*proto.Block
	block  int
	row    int
	err    error
}

func (r *engineRows) Next() bool {
	for r.block < len(r.blocks) {
		if r.row+1 < r.blocks[r.block].Rows() {
			r.row++
			return true
		}
		r.block, r.row = r.block+1, -1
	}
	return false
}

func (r *engineRows) Scan(dest ...any) error {
	b := r.blocks[r.block]
	if len(dest) != len(b.Columns) {
		return fmt.Errorf("scan: %d destinations for %d columns", len(dest), len(b.Columns))
	}
	for i, d := range dest {
		if err := b.Columns[i].ScanRow(d, r.row); err != nil {
			return fmt.Errorf("scan column %s (%s): %w", b.Columns[i].Name(), b.Columns[i].Type(), err)
		}
	}
	return nil
}

func (r *engineRows) Err() error   { return r.err }
func (r *engineRows) Close() error { return nil }

type engineRow struct {
	rows *engineRows
	err  error
}

func (r *engineRow) Err() error { return r.err }

func (r *engineRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	if !r.rows.Next() {
		return errors.New("sql: no rows in result set")
	}
	return r.rows.Scan(dest...)
}

func (r *engineRow) ScanStruct(any) error {
	return errors.New("ScanStruct: not provided by the engine's Conn")
}

// engineBatch sends its rows as one INSERT … VALUES.
type engineBatch struct {
	driver.Batch
	e     *Engine
	query string
	rows  []string
	sent  bool
}

func (b *engineBatch) Append(v ...any) error {
	lits := make([]string, len(v))
	for i, x := range v {
		l, err := literal(x)
		if err != nil {
			return err
		}
		lits[i] = l
	}
	b.rows = append(b.rows, "("+strings.Join(lits, ", ")+")")
	return nil
}

func (b *engineBatch) Send() error {
	b.sent = true
	if len(b.rows) == 0 {
		return nil
	}
	q := strings.TrimSuffix(strings.TrimSpace(b.query), "VALUES")
	_, err := b.e.Query(q+" VALUES "+strings.Join(b.rows, ", "), "TSV")
	return err
}

func (b *engineBatch) Rows() int    { return len(b.rows) }
func (b *engineBatch) IsSent() bool { return b.sent }
func (b *engineBatch) Abort() error { b.sent = true; return nil }
func (b *engineBatch) Close() error { b.sent = true; return nil }
func (b *engineBatch) Flush() error { return nil }

// bind replaces each ? of query by the next argument as a literal, as
// clickhouse-go binds positional arguments on the client (the relay's
// queries have no ? inside a string literal).
func (c *engineConn) bind(query string, args []any) (string, error) {
	if c.rename != nil {
		query = c.rename.Replace(query)
	}
	return bind(query, args)
}

func bind(query string, args []any) (string, error) {
	if len(args) == 0 {
		return query, nil
	}
	var b strings.Builder
	n := 0
	for i := range len(query) {
		if query[i] != '?' {
			b.WriteByte(query[i])
			continue
		}
		if n == len(args) {
			return "", fmt.Errorf("bind: more ? than the %d arguments", len(args))
		}
		l, err := literal(args[n])
		if err != nil {
			return "", err
		}
		b.WriteString(l)
		n++
	}
	if n != len(args) {
		return "", fmt.Errorf("bind: %d arguments for %d ?", len(args), n)
	}
	return b.String(), nil
}

// literal spells a value as a ClickHouse literal.
func literal(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(x) + "'", nil
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), nil
	case bool:
		if x {
			return "true", nil
		}
		return "false", nil
	}
	return "", fmt.Errorf("literal: %T is not bound by the engine's Conn", v)
}

// Rows runs query and returns its rows as clickhouse-go decodes them
// (column.Interface.Row: a Nullable value as a pointer, nil for NULL).
func (e *Engine) Rows(t TB, query string) [][]any {
	t.Helper()
	out, err := e.Query(query, "Native")
	if err != nil {
		t.Fatalf("%s\n-> %v", query, err)
	}
	rows, err := decodeNative(out)
	if err != nil {
		t.Fatalf("%s\n-> %v", query, err)
	}
	var all [][]any
	for _, b := range rows.blocks {
		for i := range b.Rows() {
			row := make([]any, len(b.Columns))
			for j, c := range b.Columns {
				row[j] = c.Row(i, false)
			}
			all = append(all, row)
		}
	}
	return all
}
