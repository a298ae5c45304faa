package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/google/uuid"
)

const openAPIPath = "../../api/openapi.yaml"

// specServer is the host routes are matched against, whatever test server
// actually answered.
const specServer = "http://api.test"

func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile(openAPIPath)
	if err != nil {
		t.Fatalf("load %s: %v", openAPIPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validate %s: %v", openAPIPath, err)
	}
	return doc
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := loadSpec(t)
	if len(documentedPairs(doc)) == 0 {
		t.Fatal("document has no operations")
	}
}

// documentedPairs lists "METHOD /path STATUS" for every documented response.
func documentedPairs(doc *openapi3.T) []string {
	var pairs []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				pairs = append(pairs, method+" "+path+" "+status)
			}
		}
	}
	slices.Sort(pairs)
	return pairs
}

// conformance validates every response against the document and remembers
// which (route, status) pairs were produced.
type conformance struct {
	t      *testing.T
	router routers.Router
	mu     sync.Mutex
	seen   map[string]bool
}

func newConformance(t *testing.T, doc *openapi3.T) *conformance {
	t.Helper()
	doc.Servers = openapi3.Servers{{URL: specServer}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return &conformance{t: t, router: router, seen: map[string]bool{}}
}

// RoundTrip makes conformance an http.RoundTripper that checks each response.
func (c *conformance) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	c.check(req, resp, body)
	return resp, nil
}

func (c *conformance) check(req *http.Request, resp *http.Response, body []byte) {
	spec, _ := url.Parse(specServer)
	vreq := req.Clone(context.Background())
	vreq.URL.Scheme, vreq.URL.Host, vreq.Host = spec.Scheme, spec.Host, spec.Host
	route, params, err := c.router.FindRoute(vreq)
	if err != nil {
		c.t.Errorf("%s %s: not in the document: %v", req.Method, req.URL.Path, err)
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		c.t.Errorf("%s %s -> %d does not match the document: %v\nbody: %s", req.Method, req.URL.Path, resp.StatusCode, err, body)
	}
	c.mu.Lock()
	c.seen[fmt.Sprintf("%s %s %d", route.Method, route.Path, resp.StatusCode)] = true
	c.mu.Unlock()
}

// TestOpenAPIConformance drives every documented route and status through
// the real handler (real database for the happy paths, a failing fake for
// 5xx), validates each response against the document, and fails if the
// document promises a pair no request produced.
func TestOpenAPIConformance(t *testing.T) {
	doc := loadSpec(t)
	c := newConformance(t, doc)
	client := &http.Client{Transport: c}

	e := newDBEnv(t)
	broken := newFixture(t, &fakeDB{}, nil)
	brokenTS := httptest.NewServer(broken.srv.Handler())
	t.Cleanup(brokenTS.Close)

	email := e.email("spec")
	var created User
	steps := []struct {
		name        string
		base        string
		method      string
		path        func() string
		contentType string
		body        string
		wantStatus  int
	}{
		{"create", e.ts.URL, "POST", fixed("/users"), "application/json", userBody(email), 201},
		{"duplicate", e.ts.URL, "POST", fixed("/users"), "application/json", userBody(email), 409},
		{"malformed", e.ts.URL, "POST", fixed("/users"), "application/json", `{"email":`, 400},
		{"too large", e.ts.URL, "POST", fixed("/users"), "application/json", `{"email":"` + strings.Repeat("x", 1<<20) + `"}`, 413},
		{"not json", e.ts.URL, "POST", fixed("/users"), "text/plain", `hi`, 415},
		{"invalid fields", e.ts.URL, "POST", fixed("/users"), "application/json", `{"email":"nope","first_name":"","last_name":"x"}`, 422},
		{"create fails", brokenTS.URL, "POST", fixed("/users"), "application/json", userBody(email), 500},
		{"get", e.ts.URL, "GET", func() string { return "/users/" + created.ID.String() }, "", "", 200},
		{"get unknown", e.ts.URL, "GET", fixed("/users/" + uuid.NewString()), "", "", 404},
		{"get malformed id", e.ts.URL, "GET", fixed("/users/42"), "", "", 404},
		{"get fails", brokenTS.URL, "GET", fixed("/users/" + uuid.NewString()), "", "", 500},
		{"healthz", e.ts.URL, "GET", fixed("/healthz"), "", "", 200},
		{"readyz", e.ts.URL, "GET", fixed("/readyz"), "", "", 200},
		{"not ready", brokenTS.URL, "GET", fixed("/readyz"), "", "", 503},
	}
	for _, s := range steps {
		req, err := http.NewRequestWithContext(t.Context(), s.method, s.base+s.path(), strings.NewReader(s.body))
		if err != nil {
			t.Fatal(err)
		}
		if s.contentType != "" {
			req.Header.Set("Content-Type", s.contentType)
		}
		r := send(t, client, req)
		if r.status != s.wantStatus {
			t.Errorf("%s: status %d, want %d: %s", s.name, r.status, s.wantStatus, r.body)
		}
		if s.name == "create" {
			if err := json.Unmarshal(r.body, &created); err != nil {
				t.Fatalf("create: %v", err)
			}
		}
	}

	for _, pair := range documentedPairs(doc) {
		if !c.seen[pair] {
			t.Errorf("documented response %q was never produced by this test", pair)
		}
	}
}

func fixed(p string) func() string { return func() string { return p } }
