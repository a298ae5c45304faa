package api

import (
	"encoding/json"
	"net/http"
)

// Problem type URIs (RFC 9457 §3.1.1). about:blank means "the status code
// says it all".
const (
	problemBlank      = "about:blank"
	problemValidation = "urn:outbox-relay:problem:validation"
	problemEmailTaken = "urn:outbox-relay:problem:email-taken"
)

// problem is an RFC 9457 problem details object with two extensions:
// request_id, and errors for field-level validation failures.
type problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []fieldError `json:"errors,omitempty"`
}

// fieldError names one invalid request field.
type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func newProblem(status int, detail string) problem {
	return problem{Type: problemBlank, Title: http.StatusText(status), Status: status, Detail: detail}
}

// writeProblem sends p; instance is the request path and request_id the
// request's id, so a user can quote either when reporting it.
func writeProblem(w http.ResponseWriter, r *http.Request, p problem) {
	p.Instance = r.URL.Path
	p.RequestID = requestIDFrom(r.Context())
	writeJSON(w, "application/problem+json", p.Status, p)
}

func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own plain structs are written; cannot happen
		status, b = http.StatusInternalServerError, []byte(`{"title":"Internal Server Error","status":500}`)
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// serverError answers 500 without leaking err; err is kept on the request
// for the access log and Sentry.
func serverError(w http.ResponseWriter, r *http.Request, err error) {
	recordError(r.Context(), err)
	writeProblem(w, r, newProblem(http.StatusInternalServerError,
		"the request could not be completed; quote the request_id when reporting this"))
}
