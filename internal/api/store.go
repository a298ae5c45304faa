package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outbox-relay/relay/outbox"
)

// DB is what the API needs from Postgres; *pgxpool.Pool satisfies it.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Ping(ctx context.Context) error
}

// EventUserCreated is the outbox event type written by POST /users.
const EventUserCreated = "user_created"

// userCreatedVersion is the metadata_version of the user_created context.
const userCreatedVersion = 1

// User is a row of the users table and the JSON the API returns.
type User struct {
	ID        uuid.UUID `json:"id"`
	Email     string    `json:"email"`
	FirstName string    `json:"first_name"`
	LastName  string    `json:"last_name"`
	CreatedAt time.Time `json:"created_at"`
}

// userCreated is the event context of user_created. It is its own type so the
// event schema cannot drift silently with the API response; it carries no
// secrets.
type userCreated struct {
	ID        uuid.UUID `json:"id"`
	Email     string    `json:"email"`
	FirstName string    `json:"first_name"`
	LastName  string    `json:"last_name"`
	CreatedAt time.Time `json:"created_at"`
}

var (
	errEmailTaken = errors.New("email already registered")
	errNotFound   = errors.New("user not found")
)

// Steps of the create-user transaction, in order, as passed to a stepHook.
const (
	stepInsertUser   = "insert_user"
	stepPublishEvent = "publish_event"
	stepCommit       = "commit"
)

// stepHook runs before each step inside the transaction; an error fails that
// step. It is a seam for tests only (see withStepHook).
type stepHook func(ctx context.Context, step string, tx pgx.Tx) error

// store performs the database work of the handlers.
type store struct {
	db      DB
	pub     *outbox.Publisher
	timeout time.Duration
	hook    stepHook
}

const insertUserSQL = `INSERT INTO users (email, first_name, last_name) VALUES ($1, $2, $3) RETURNING id, created_at`

const selectUserSQL = `SELECT id, email, first_name, last_name, created_at FROM users WHERE id = $1`

// create inserts the user and publishes user_created in one transaction.
func (s *store) create(ctx context.Context, in User) (u User, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return User{}, fmt.Errorf("begin: %w", err)
	}
	defer rollback(ctx, tx)

	u = in
	if err := s.step(ctx, stepInsertUser, tx); err != nil {
		return User{}, err
	}
	if err := tx.QueryRow(ctx, insertUserSQL, in.Email, in.FirstName, in.LastName).Scan(&u.ID, &u.CreatedAt); err != nil {
		return User{}, classifyInsert(err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	if err := s.step(ctx, stepPublishEvent, tx); err != nil {
		return User{}, err
	}
	if _, err := s.pub.Publish(ctx, tx, s.userCreatedEvent(u)); err != nil {
		return User{}, fmt.Errorf("publish %s: %w", EventUserCreated, err)
	}
	if err := s.step(ctx, stepCommit, tx); err != nil {
		return User{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return User{}, fmt.Errorf("commit: %w", err)
	}
	return u, nil
}

// userIDColumn is the outbox table's extra column that user_created events
// fill with the user's id (added by EnsureSchema), where the publisher has it.
const userIDColumn = "user_id"

func (s *store) userCreatedEvent(u User) outbox.Event {
	ev := outbox.Event{
		Type:            EventUserCreated,
		OccurredAt:      u.CreatedAt,
		MetadataVersion: userCreatedVersion,
		Context:         userCreated(u),
	}
	if s.pub.HasColumn(userIDColumn) {
		ev.Columns = map[string]any{userIDColumn: u.ID}
	}
	return ev
}

func (s *store) step(ctx context.Context, name string, tx pgx.Tx) error {
	if s.hook == nil {
		return nil
	}
	if err := s.hook(ctx, name, tx); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// rollback ends tx if it is still open. It runs after the request context
// may be gone, so it gets a short context of its own; if even that fails,
// pgx closes the connection and the server rolls back.
func rollback(ctx context.Context, tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(ctx)
}

// classifyInsert maps the users INSERT failure. Its only unique constraints
// are the server-generated primary key and email, so 23505 means the email.
func classifyInsert(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return errEmailTaken
	}
	return fmt.Errorf("insert user: %w", err)
}

func (s *store) get(ctx context.Context, id uuid.UUID) (User, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var u User
	err := s.db.QueryRow(ctx, selectUserSQL, id).Scan(&u.ID, &u.Email, &u.FirstName, &u.LastName, &u.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, errNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("select user: %w", err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

func (s *store) ping(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}
