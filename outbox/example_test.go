package outbox_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outbox-relay/relay/outbox"
)

// printingExecer stands in for a pgx.Tx so the example runs without a
// database: it prints the statement it would send.
type printingExecer struct{}

func (printingExecer) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	rows := len(args[1].([]string))
	fmt.Printf("%s: %d rows, environment %s\n", strings.Join(strings.Fields(sql)[:3], " "), rows, args[0])
	return pgconn.NewCommandTag(fmt.Sprintf("INSERT 0 %d", rows)), nil
}

func ExamplePublisher_Publish() {
	pub, err := outbox.NewPublisher("production")
	if err != nil {
		fmt.Println(err)
		return
	}
	var tx outbox.Execer = printingExecer{} // in real code: the pgx.Tx of your business writes

	ids, err := pub.Publish(context.Background(), tx,
		outbox.Event{Type: "user_created", Context: map[string]string{"email": "ada@example.com"}},
		outbox.Event{Type: "welcome_mail_requested", Context: []byte(`{"template":"welcome"}`)},
		outbox.Event{Type: "audit", Context: struct{ By string }{"signup"}, MetadataVersion: 2},
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("published", len(ids), "events")

	_, err = pub.Publish(context.Background(), tx, outbox.Event{Context: 1})
	fmt.Println(err)
	// Output:
	// INSERT INTO "outbox_event": 3 rows, environment production
	// published 3 events
	// outbox: event 0: event type is empty
}

// The usual shape: business rows and their event in one pgx transaction.
// The caller begins and commits; Publish only inserts.
func ExamplePublisher_Publish_transaction() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()
	pub, err := outbox.NewPublisher("production")
	if err != nil {
		fmt.Println(err)
		return
	}

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var id uuid.UUID
		var createdAt time.Time
		err := tx.QueryRow(ctx,
			`INSERT INTO users (email, first_name, last_name) VALUES ($1, $2, $3) RETURNING id, created_at`,
			"ada@example.com", "Ada", "Lovelace").Scan(&id, &createdAt)
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		_, err = pub.Publish(ctx, tx, outbox.Event{
			Type:       "user_created",
			OccurredAt: createdAt,
			Context:    map[string]any{"id": id, "email": "ada@example.com"},
		})
		return err // non-nil rolls back both rows
	})
	if err != nil {
		fmt.Println(err)
	}
}

// Message mode: the same call emits transactional logical decoding
// messages (PostgreSQL 14+) instead of rows; a relay with
// RELAY_MESSAGE_PREFIX=outbox delivers them.
func ExampleWithMessages() {
	pub, err := outbox.NewPublisher("production", outbox.WithMessages("outbox"))
	if err != nil {
		fmt.Println(err)
		return
	}
	var tx outbox.Execer = messageExecer{} // in real code: the pgx.Tx of your business writes
	ids, err := pub.Publish(context.Background(), tx,
		outbox.Event{Type: "user_created", Context: map[string]string{"email": "ada@example.com"}},
		outbox.Event{Type: "welcome_mail_requested", Context: []byte(`{"template":"welcome"}`)},
	)
	fmt.Println(len(ids), err)
	// Output:
	// SELECT count(pg_logical_emit_message(true, $1::text, m.p)): prefix outbox, 2 messages
	// 2 <nil>
}

// messageExecer prints the message-mode statement it would send.
type messageExecer struct{}

func (messageExecer) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	head, _, _ := strings.Cut(sql, " FROM")
	fmt.Printf("%s: prefix %s, %d messages\n", head, args[0], len(args[1].([][]byte)))
	return pgconn.NewCommandTag("SELECT 1"), nil
}
