// Package api is the demo HTTP service of the outbox relay: it creates users
// and, in the same Postgres transaction, publishes their user_created event
// through package outbox. The relay later streams that event to ClickHouse.
//
// Contract:
//
//   - POST /users commits the users row and its outbox_event row together or
//     not at all; a duplicate email (409) writes neither.
//   - Every DB call runs under Config.DBTimeout derived from the request
//     context; a client that goes away cancels its work.
//   - Errors are RFC 9457 application/problem+json. Every response carries
//     X-Request-Id (the client's, if it sent a sane one, else a new UUID).
//   - The access log never contains request or response bodies. 5xx responses
//     are reported to Sentry on a per-request hub clone, tagged request_id;
//     without a DSN the hub is a no-op.
//   - GET /users/{id} answers 404 for ids that are not UUIDs: such a user
//     cannot exist, and the client gets the same answer as for a missing one.
//
// api/openapi.yaml documents every route and status; the package tests check
// the handler against it.
package api
