package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// decodeJSON reads exactly one JSON object from r's body into dst, refusing
// unknown fields, bodies over limit and non-JSON content types. A non-nil
// result is the problem to send.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, dst any) *problem {
	if p := checkContentType(r); p != nil {
		return p
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeProblem(err, limit)
	}
	// Anything after the object, even a second valid one, is an error.
	err := dec.Decode(&struct{}{})
	if errors.Is(err, io.EOF) {
		return nil
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return decodeProblem(err, limit)
	}
	p := newProblem(http.StatusBadRequest, "body must contain a single JSON object")
	return &p
}

func checkContentType(r *http.Request) *problem {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json")) {
		return nil
	}
	p := newProblem(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	return &p
}

func decodeProblem(err error, limit int64) *problem {
	var (
		tooLarge  *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
		p         problem
	)
	switch {
	case errors.As(err, &tooLarge):
		p = newProblem(http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes", limit))
	case errors.Is(err, io.EOF):
		p = newProblem(http.StatusBadRequest, "body is empty")
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		p = newProblem(http.StatusBadRequest, "body is not well-formed JSON")
	case errors.As(err, &typeErr):
		p = newProblem(http.StatusBadRequest, fmt.Sprintf("field %q must be a JSON %s", typeErr.Field, jsonKind(typeErr)))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		p = newProblem(http.StatusBadRequest, strings.TrimPrefix(err.Error(), "json: "))
	default:
		p = newProblem(http.StatusBadRequest, "body could not be read as JSON")
	}
	return &p
}

func jsonKind(e *json.UnmarshalTypeError) string {
	if e.Field == "" {
		return "object"
	}
	return e.Type.Kind().String()
}
