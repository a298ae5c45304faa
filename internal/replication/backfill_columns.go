package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// publishedColumns is the select list of a backfill: the columns the
// publication carries of the outbox table, so that rows read from the
// table have the shape the stream gives them (a column left out of the
// publication, PostgreSQL 15+, is left out of both). "*" when the
// publication has no column list, or the server has none (before 15).
func (s *Source) publishedColumns(ctx context.Context, tx pgx.Tx) (string, error) {
	var names []string
	err := tx.QueryRow(ctx, `SELECT coalesce(array(SELECT jsonb_array_elements_text(to_jsonb(t) -> 'attnames')), '{}')
		FROM pg_publication_tables t
		WHERE t.pubname = $1 AND format('%I.%I', t.schemaname, t.tablename)::regclass = $2::regclass`,
		s.cfg.Publication, s.cfg.Table).Scan(&names)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && len(names) == 0 {
		return "*", nil
	}
	if err != nil {
		return "", classify(fmt.Errorf("read the columns publication %q carries: %w", s.cfg.Publication, err))
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(quoted, ", "), nil
}
