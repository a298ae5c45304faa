package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/deadletter"
	"github.com/outbox-relay/relay/internal/failpoint"
	"github.com/outbox-relay/relay/internal/termsafe"
)

// deadLetterTimeout bounds one dead-letter command's statements.
const deadLetterTimeout = time.Minute

// dlOptions are the flags shared by the deadletter subcommands.
type dlOptions struct {
	cfg       config.Config
	types     []string
	streams   []string
	olderThan time.Duration
	newerThan time.Duration
	all       bool
	json      bool
	limit     int
	yes       bool
}

func newDeadLetterCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "deadletter",
		Aliases: []string{"dlq"},
		Short:   "List, show, replay or discard the events ClickHouse rejected (outbox_dead_letter)",
		Long: `deadletter handles the events the relay set aside in outbox_dead_letter because
ClickHouse rejected their content. Each names its stream and the ClickHouse
table that rejected it. Fix the cause (the row, with SQL, or the ClickHouse
table), then replay: the rows move back into their streams' outbox tables in
one transaction, under their own keys, and the running relay delivers them.
It reads the streams as relay run does (--config / RELAY_CONFIG, or
RELAY_OUTBOX_TABLE and its column settings).

Exit codes: 0 done, 1 failure (PostgreSQL, an ID that is not a dead letter,
a declined confirmation), 2 usage or configuration error.`,
	}
	cmd.AddCommand(newDLListCmd(e), newDLShowCmd(e), newDLReplayCmd(e), newDLDiscardCmd(e))
	return cmd
}

func newDLListCmd(e *env) *cobra.Command {
	o := &dlOptions{cfg: config.Defaults()}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, oldest failure first (id, stream, table, type, failed at, size, error)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.checkAges(); err != nil {
				return err
			}
			return withDeadLetterDB(cmd, e, o, func(ctx context.Context, db *pgxpool.Pool) error {
				ls, total, err := deadletter.List(ctx, db, o.filter(nil), o.limit)
				if err != nil {
					return err
				}
				return writeList(e, ls, total, o.json)
			})
		},
	}
	o.register(cmd, true)
	cmd.Flags().BoolVar(&o.json, "json", false, `print a JSON object: "dead_letters" (without payloads; see show), "total" matching, "truncated" by --limit`)
	cmd.Flags().IntVar(&o.limit, "limit", 100, "show at most this many; 0 shows all")
	return cmd
}

func newDLShowCmd(e *env) *cobra.Command {
	o := &dlOptions{cfg: config.Defaults()}
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one dead letter whole, payload included",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseIDs(args)
			if err != nil {
				return err
			}
			return withDeadLetterDB(cmd, e, o, func(ctx context.Context, db *pgxpool.Pool) error {
				l, err := deadletter.Show(ctx, db, ids[0])
				if err != nil {
					return err
				}
				if o.json {
					return writeJSON(e.stdout, l)
				}
				return writeLetter(e.stdout, l)
			})
		},
	}
	o.register(cmd, false)
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	return cmd
}

func newDLReplayCmd(e *env) *cobra.Command {
	o := &dlOptions{cfg: config.Defaults()}
	cmd := &cobra.Command{
		Use:   "replay [ID...]",
		Short: "Move dead letters back into their outbox tables (one transaction) for the running relay to deliver",
		Long: `replay moves the named dead letters (IDs, --type/--stream/--older-than/
--newer-than, or --all) back into the outbox table of their stream in one
transaction, under that stream's column names, keeping each event's key (so
its identity in ClickHouse) and its extra columns, and removes them from
outbox_dead_letter in the same transaction. Columns the stream ignores take
their defaults. Killed at any point, it either moved all of them or none; run
again, it finds nothing left to move. An event ClickHouse still rejects comes
back as a dead letter. It refuses, naming them, dead letters of a stream that
is no longer configured, of messages that held no event (show, then discard
them), without a key for a table whose key is not a uuid, and values of a
column their outbox table no longer has.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := o.selection(args)
			if err != nil {
				return err
			}
			fp := failpoint.FromEnv(e.environ)
			return withDeadLetterDB(cmd, e, o, func(ctx context.Context, db *pgxpool.Pool) error {
				moved, err := deadletter.Replay(ctx, db, o.cfg.Streams(), f, func() { fp.Hit(failpoint.ReplayBeforeCommit) })
				if err != nil {
					return err
				}
				fp.Hit(failpoint.ReplayAfterCommit)
				return reportReplay(e.stdout, f.IDs, moved)
			})
		},
	}
	o.register(cmd, true)
	cmd.Flags().BoolVar(&o.all, "all", false, "replay every dead letter")
	return cmd
}

func newDLDiscardCmd(e *env) *cobra.Command {
	o := &dlOptions{cfg: config.Defaults()}
	cmd := &cobra.Command{
		Use:   "discard [ID...]",
		Short: "Delete dead letters for good (asks on a terminal, or --yes)",
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := o.selection(args)
			if err != nil {
				return err
			}
			if !o.yes && !isTerminal(e.stdin) {
				return usageError(errors.New("discard deletes events for good: confirm with --yes (stdin is not a terminal to ask on)"))
			}
			return withDeadLetterDB(cmd, e, o, func(ctx context.Context, db *pgxpool.Pool) error {
				return discard(ctx, e, db, f, o.yes)
			})
		},
	}
	o.register(cmd, true)
	cmd.Flags().BoolVar(&o.all, "all", false, "discard every dead letter")
	cmd.Flags().BoolVar(&o.yes, "yes", false, "do not ask for confirmation")
	return cmd
}

// register adds the connection and stream flags and, with filters, the
// selection flags.
func (o *dlOptions) register(cmd *cobra.Command, filters bool) {
	config.RegisterFlags(cmd.Flags(), &o.cfg, append([]string{"database-url"}, config.StreamFlags()...)...)
	if !filters {
		return
	}
	cmd.Flags().StringSliceVar(&o.types, "type", nil, "only these event types (repeat or comma-separate)")
	cmd.Flags().StringSliceVar(&o.streams, "stream", nil, "only these streams, by name (repeat or comma-separate)")
	cmd.Flags().DurationVar(&o.olderThan, "older-than", 0, "only those that failed longer ago than this (e.g. 1h)")
	cmd.Flags().DurationVar(&o.newerThan, "newer-than", 0, "only those that failed within this (e.g. 10m)")
}

func (o *dlOptions) filter(ids []uuid.UUID) deadletter.Filter {
	return deadletter.Filter{IDs: ids, Types: o.types, Streams: o.streams, OlderThan: o.olderThan, NewerThan: o.newerThan}
}

// selection is what replay and discard act on: IDs and/or filters, or --all
// alone; naming nothing is a usage error, so no command acts on every row
// by accident.
func (o *dlOptions) selection(args []string) (deadletter.Filter, error) {
	ids, err := parseIDs(args)
	if err != nil {
		return deadletter.Filter{}, err
	}
	f := o.filter(ids)
	named := len(ids) > 0 || len(o.types) > 0 || len(o.streams) > 0 || o.olderThan > 0 || o.newerThan > 0
	if err := o.checkAges(); err != nil {
		return f, err
	}
	switch {
	case o.all && named:
		return f, usageError(errors.New("--all selects every dead letter: give it alone, without IDs or filters"))
	case !o.all && !named:
		return f, usageError(errors.New("name the dead letters: IDs, --type, --stream, --older-than/--newer-than, or --all"))
	}
	return f, nil
}

// checkAges refuses negative ages, which would select every row.
func (o *dlOptions) checkAges() error {
	if o.olderThan < 0 || o.newerThan < 0 {
		return usageError(errors.New("--older-than and --newer-than must be positive"))
	}
	return nil
}

func parseIDs(args []string) ([]uuid.UUID, error) {
	ids := make([]uuid.UUID, 0, len(args))
	var bad []string
	for _, a := range args {
		id, err := uuid.Parse(a)
		if err != nil {
			bad = append(bad, a)
			continue
		}
		ids = append(ids, id)
	}
	if len(bad) > 0 {
		return nil, usageError(fmt.Errorf("not an event id (UUID): %s", strings.Join(bad, ", ")))
	}
	return ids, nil
}

// withDeadLetterDB loads DATABASE_URL, connects and runs fn under the
// command's timeout.
func withDeadLetterDB(cmd *cobra.Command, e *env, o *dlOptions, fn func(context.Context, *pgxpool.Pool) error) error {
	if o.limit < 0 {
		return usageError(errors.New("--limit must not be negative"))
	}
	if err := config.Load(cmd.Flags(), &o.cfg, e.environ, config.NeedPostgres); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), deadLetterTimeout)
	defer cancel()
	pool, err := openOnePool(ctx, o.cfg.DatabaseURL, "outbox-relay-deadletter")
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(ctx, pool)
}

// letterList is list --json: the letters shown and how many match, so a
// script sees when --limit cut the list.
type letterList struct {
	DeadLetters []deadletter.Letter `json:"dead_letters"`
	Total       int64               `json:"total"`
	Truncated   bool                `json:"truncated"`
}

// writeList prints what list found: JSON, or the table with a hint on
// stderr when more match than it shows.
func writeList(e *env, ls []deadletter.Letter, total int64, asJSON bool) error {
	more := total - int64(len(ls))
	if asJSON {
		return writeJSON(e.stdout, letterList{DeadLetters: ls, Total: total, Truncated: more > 0})
	}
	if err := writeLetters(e.stdout, ls); err != nil {
		return err
	}
	if more > 0 {
		_, err := fmt.Fprintf(e.stderr, "%d more match (--limit 0 shows all)\n", more)
		return err
	}
	return nil
}

// writeJSON writes v as one line of JSON that is safe on a terminal.
func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(termsafe.JSON(b), '\n'))
	return err
}

func writeLetters(w io.Writer, ls []deadletter.Letter) error {
	if len(ls) == 0 {
		_, err := fmt.Fprintln(w, "no dead letters")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTREAM\tTABLE\tTYPE\tFAILED AT\tSIZE\tERROR")
	for _, l := range ls {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d B\t%s\n", l.ID, termsafe.Escape(l.Stream), termsafe.Escape(orDash(l.Table)),
			termsafe.Escape(l.EventType), l.FailedAt.UTC().Format(time.RFC3339), l.PayloadBytes, termsafe.Escape(oneLine(l.Error, 100)))
	}
	return tw.Flush()
}

// orDash is s, or "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine shortens s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func writeLetter(w io.Writer, l deadletter.Letter) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"id", l.ID.String()}, {"stream", l.Stream}, {"clickhouse_table", orDash(l.Table)}, {"event_type", l.EventType},
		{"event_date_time", l.EventDateTime.UTC().Format(time.RFC3339Nano)}, {"environment", l.Environment},
		{"metadata_version", fmt.Sprint(l.MetadataVersion)}, {"failed_at", l.FailedAt.UTC().Format(time.RFC3339Nano)},
		{"payload_bytes", fmt.Sprint(l.PayloadBytes)}, {"error", l.Error},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", kv[0], termsafe.Escape(kv[1]))
	}
	if l.Key != "" {
		fmt.Fprintf(tw, "outbox_key\t%s\n", termsafe.Escape(l.Key))
	}
	if l.Raw != nil {
		fmt.Fprintf(tw, "raw_payload\t%s\n", strconv.Quote(string(l.Raw)))
	}
	for _, name := range slices.Sorted(maps.Keys(l.Columns)) {
		v := "NULL"
		if p := l.Columns[name]; p != nil {
			v = *p
		}
		fmt.Fprintf(tw, "column %s\t%s\n", termsafe.Escape(name), termsafe.Escape(v))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var pretty strings.Builder
	enc := json.NewEncoder(&pretty)
	enc.SetIndent("", "  ")
	if err := enc.Encode(l.Context); err != nil {
		return err
	}
	// JSON escapes C0 controls but not C1 ones (U+009B is a CSI): escape
	// each line, keeping the indentation's line breaks.
	if _, err := fmt.Fprintln(w, "event_context:"); err != nil {
		return err
	}
	for line := range strings.Lines(pretty.String()) {
		if _, err := fmt.Fprintln(w, termsafe.Escape(strings.TrimSuffix(line, "\n"))); err != nil {
			return err
		}
	}
	return nil
}

// reportReplay prints what moved; IDs asked for that were not dead letters
// (already replayed or discarded, or mistyped) make it fail.
func reportReplay(w io.Writer, asked []uuid.UUID, moved []deadletter.Moved) error {
	got := make(map[uuid.UUID]bool, len(moved))
	for _, m := range moved {
		got[m.ID] = true
		note := ""
		if !m.Inserted {
			note = " (the table already held it)"
		}
		fmt.Fprintf(w, "replayed %s into %s (stream %s)%s\n", m.ID, termsafe.Escape(m.Outbox), termsafe.Escape(m.Stream), note)
	}
	fmt.Fprintf(w, "%d dead letters moved to their outbox tables; the running relay delivers them\n", len(moved))
	var missing []string
	for _, id := range asked {
		if !got[id] {
			missing = append(missing, id.String())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not dead letters (already replayed or discarded?): %s", strings.Join(missing, ", "))
	}
	return nil
}

// discard lists what f selects, asks unless yes, then deletes exactly the
// rows listed (a row dead-lettered meanwhile is kept).
func discard(ctx context.Context, e *env, db *pgxpool.Pool, f deadletter.Filter, yes bool) error {
	ls, _, err := deadletter.List(ctx, db, f, 0)
	if err != nil {
		return err
	}
	ids := make([]uuid.UUID, len(ls))
	for i, l := range ls {
		ids[i] = l.ID
	}
	if missing := missingIDs(f.IDs, ids); len(missing) > 0 {
		return fmt.Errorf("not dead letters (already replayed or discarded?): %s", strings.Join(missing, ", "))
	}
	if len(ls) == 0 {
		_, err := fmt.Fprintln(e.stdout, "no dead letters to discard")
		return err
	}
	if !yes {
		if err := writeLetters(e.stdout, ls); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "Discard these %d events for good? [y/N] ", len(ls))
		answer, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return errors.New("discard declined; nothing deleted")
		}
	}
	f.IDs = ids
	gone, err := deadletter.Discard(ctx, db, f)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%d dead letters discarded\n", len(gone))
	return err
}

func missingIDs(asked, found []uuid.UUID) []string {
	have := make(map[uuid.UUID]bool, len(found))
	for _, id := range found {
		have[id] = true
	}
	var out []string
	for _, id := range asked {
		if !have[id] {
			out = append(out, id.String())
		}
	}
	return out
}

func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}
