package api

import (
	"errors"
	"net/http"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Field limits of POST /users.
const (
	maxEmailLen = 254 // RFC 5321 path limit
	maxNameLen  = 100 // in characters
)

// createUserRequest is the body of POST /users.
type createUserRequest struct {
	Email     string `json:"email"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
}

// normalize trims the fields and lower-cases the email's domain, which is
// case-insensitive (the local part is not, so it is kept as sent). It returns
// every field problem at once.
func (req createUserRequest) normalize() (User, []fieldError) {
	u := User{
		Email:     strings.TrimSpace(req.Email),
		FirstName: strings.TrimSpace(req.FirstName),
		LastName:  strings.TrimSpace(req.LastName),
	}
	var errs []fieldError
	if msg := checkEmail(u.Email); msg != "" {
		errs = append(errs, fieldError{Field: "email", Message: msg})
	} else {
		at := strings.LastIndexByte(u.Email, '@')
		u.Email = u.Email[:at] + strings.ToLower(u.Email[at:])
	}
	for _, f := range []struct{ name, value string }{{"first_name", u.FirstName}, {"last_name", u.LastName}} {
		if msg := checkName(f.value); msg != "" {
			errs = append(errs, fieldError{Field: f.name, Message: msg})
		}
	}
	return u, errs
}

func checkEmail(s string) string {
	if s == "" {
		return "is required"
	}
	if len(s) > maxEmailLen {
		return "must be at most 254 bytes"
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "must be a plain email address like name@example.com"
	}
	return ""
}

func checkName(s string) string {
	switch {
	case s == "":
		return "is required"
	case utf8.RuneCountInString(s) > maxNameLen:
		return "must be at most 100 characters"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "must not contain control characters"
	}
	return ""
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	var req createUserRequest
	if p := decodeJSON(w, r, s.cfg.MaxBodyBytes, &req); p != nil {
		writeProblem(w, r, *p)
		return
	}
	in, fieldErrs := req.normalize()
	if len(fieldErrs) > 0 {
		p := newProblem(http.StatusUnprocessableEntity, "the request has invalid fields")
		p.Type, p.Title, p.Errors = problemValidation, "Validation failed", fieldErrs
		writeProblem(w, r, p)
		return
	}
	u, err := s.store.create(r.Context(), in)
	switch {
	case errors.Is(err, errEmailTaken):
		p := newProblem(http.StatusConflict, "a user with this email already exists")
		p.Type, p.Title = problemEmailTaken, "Email already registered"
		writeProblem(w, r, p)
	case err != nil:
		serverError(w, r, err)
	default:
		w.Header().Set("Location", "/users/"+u.ID.String())
		writeJSON(w, "application/json", http.StatusCreated, u)
	}
}

// getUser answers 404 for a malformed id as for an unknown one.
func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		writeProblem(w, r, newProblem(http.StatusNotFound, "no user with this id"))
		return
	}
	u, err := s.store.get(r.Context(), id)
	switch {
	case errors.Is(err, errNotFound):
		writeProblem(w, r, newProblem(http.StatusNotFound, "no user with this id"))
	case err != nil:
		serverError(w, r, err)
	default:
		writeJSON(w, "application/json", http.StatusOK, u)
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, "application/json", http.StatusOK, status{Status: "ok"})
}

// readyz reports whether Postgres answers a ping within Config.ReadyTimeout.
// A failing database is expected operational state, not a 5xx to report.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.store.ping(r.Context(), s.cfg.ReadyTimeout); err != nil {
		s.log.Warn().Err(err).Str("request_id", requestIDFrom(r.Context())).Msg("readiness check failed")
		markSilent(r.Context())
		writeProblem(w, r, newProblem(http.StatusServiceUnavailable, "database is not reachable"))
		return
	}
	writeJSON(w, "application/json", http.StatusOK, status{Status: "ok"})
}

type status struct {
	Status string `json:"status"`
}
