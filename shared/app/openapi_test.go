package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/fakeprovider"
)

// openAPIPath is docs/openapi.yaml, relative to this package.
const openAPIPath = "../../docs/openapi.yaml"

// maxRecordedBody caps the response body kept per exchange.
const maxRecordedBody = 1 << 20

// exchange is one request/response made through testEnv.do.
type exchange struct {
	Test        string
	Method      string
	Path        string // with the query
	ContentType string // of the request
	Status      int
	Header      http.Header
	Body        []byte
	Truncated   bool // the body was longer than maxRecordedBody
}

// exchangeLog collects every exchange of the package's tests; TestMain
// checks them all against docs/openapi.yaml once the tests have run.
type exchangeLog struct {
	mu   sync.Mutex
	list []exchange
}

var recorded exchangeLog

func (l *exchangeLog) add(x exchange) {
	if len(x.Body) > maxRecordedBody {
		x.Body, x.Truncated = x.Body[:maxRecordedBody], true
	}
	x.Body = bytes.Clone(x.Body)
	x.Header = x.Header.Clone()
	l.mu.Lock()
	l.list = append(l.list, x)
	l.mu.Unlock()
}

func (l *exchangeLog) all() []exchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.list)
}

// loadOpenAPI loads and validates docs/openapi.yaml.
func loadOpenAPI() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openAPIPath)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", openAPIPath, err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("%s is not a valid OpenAPI document: %w", openAPIPath, err)
	}
	return doc, nil
}

func init() {
	// Streams are validated as text against the spec's string schemas.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
}

// checkExchanges validates every recorded exchange against the spec and
// returns one message per mismatch, and a one-line summary.
func checkExchanges(xs []exchange) (problems []string, summary string) {
	doc, err := loadOpenAPI()
	if err != nil {
		return []string{err.Error()}, ""
	}
	// Route on paths only: the test servers listen on random ports.
	doc.Servers = openapi3.Servers{{URL: "/"}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return []string{"openapi router: " + err.Error()}, ""
	}
	envelope := doc.Components.Schemas["NotFoundError"]
	anyError := doc.Components.Schemas["ErrorEnvelope"]
	covered := map[string]int{}
	unrouted := 0
	for _, x := range xs {
		req := httptest.NewRequest(x.Method, "http://byok.test"+x.Path, nil)
		if x.ContentType != "" {
			req.Header.Set("Content-Type", x.ContentType)
		}
		where := fmt.Sprintf("%s: %s %s → %d", x.Test, x.Method, x.Path, x.Status)
		route, params, err := router.FindRoute(req)
		if err != nil {
			// No operation: only the code's catch-all may answer, with 404
			// not_found (or, for a documented path, 405 with Allow) in the
			// envelope.
			if (errors.Is(err, routers.ErrPathNotFound) && x.Status == http.StatusNotFound) ||
				(errors.Is(err, routers.ErrMethodNotAllowed) && (x.Status == http.StatusNotFound || x.Status == http.StatusMethodNotAllowed)) {
				var v any
				if jerr := json.Unmarshal(x.Body, &v); jerr != nil {
					problems = append(problems, where+": unrouted 404 is not JSON: "+jerr.Error())
				} else if x.Status == http.StatusMethodNotAllowed {
					if verr := anyError.Value.VisitJSON(v); verr != nil || x.Header.Get("Allow") == "" {
						problems = append(problems, where+": 405 without Allow or outside the envelope: "+fmt.Sprint(verr))
					}
				} else if verr := envelope.Value.VisitJSON(v); verr != nil {
					problems = append(problems, where+": unrouted 404 is not the not_found envelope: "+verr.Error())
				}
				unrouted++
				continue
			}
			problems = append(problems, fmt.Sprintf("%s: no operation in %s (%v)", where, openAPIPath, err))
			continue
		}
		covered[fmt.Sprintf("%s %s %d", x.Method, route.Path, x.Status)]++
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
			Status:                 x.Status,
			Header:                 x.Header,
			Options: &openapi3filter.Options{
				IncludeResponseStatus: true,
				MultiError:            true,
				ExcludeResponseBody:   x.Truncated,
			},
		}
		in.SetBodyBytes(x.Body)
		if msg := requestIDMismatch(x); msg != "" {
			problems = append(problems, where+": "+msg)
		}
		if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
			body := x.Body
			if len(body) > 600 {
				body = append(body[:600:600], "..."...)
			}
			problems = append(problems, fmt.Sprintf("%s: %s\n    body: %s", where, describeMismatch(err), body))
		}
	}
	// Documented statuses no recorded exchange produced (informational:
	// SDK-driven tests do not go through e.do).
	var uncovered []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				if covered[method+" "+path+" "+status] == 0 && !strings.HasSuffix(status, "XX") {
					uncovered = append(uncovered, method+" "+path+" "+status)
				}
			}
		}
	}
	sort.Strings(uncovered)
	summary = fmt.Sprintf("openapi: %d exchanges checked against %s (%d operation/status pairs; %d on unknown routes), %d mismatches\n"+
		"openapi: documented but not exercised through e.do: %s",
		len(xs), openAPIPath, len(covered), unrouted, len(problems), strings.Join(uncovered, ", "))
	return problems, summary
}

// requestIDMismatch checks what the spec can only state in prose: byok's
// error bodies carry the request id of the X-Request-Id header.
func requestIDMismatch(x exchange) string {
	if x.Status < 400 || x.Truncated {
		return ""
	}
	var body struct {
		RequestID *string `json:"request_id"`
		Error     struct {
			RequestID *string `json:"request_id"`
		} `json:"error"`
	}
	if json.Unmarshal(x.Body, &body) != nil {
		return ""
	}
	if body.Error.RequestID == nil {
		return "" // a relayed provider error (its own request_id, if any, is the provider's)
	}
	id := x.Header.Get("X-Request-Id")
	for _, got := range []*string{body.Error.RequestID, body.RequestID} {
		if got != nil && *got != id {
			return fmt.Sprintf("request_id %q differs from X-Request-Id %q", *got, id)
		}
	}
	return ""
}

// describeMismatch renders a validation error in a line or two (kin-openapi's
// own text dumps whole schemas).
func describeMismatch(err error) string {
	switch e := err.(type) {
	case *openapi3filter.ResponseError:
		if e.Err == nil {
			return e.Reason
		}
		return e.Reason + ": " + describeMismatch(e.Err)
	case openapi3.MultiError:
		parts := make([]string, 0, len(e))
		for _, x := range e {
			parts = append(parts, describeMismatch(x))
		}
		return strings.Join(parts, "; ")
	case *openapi3.SchemaError:
		return fmt.Sprintf("at /%s: %s", strings.Join(e.JSONPointer(), "/"), e.Reason)
	}
	return err.Error()
}

// openAPIMain runs after the package's tests (from TestMain): it checks
// every recorded exchange and returns 1 if any does not match the spec.
func openAPIMain(w io.Writer, verbose bool) int {
	xs := recorded.all()
	if len(xs) == 0 {
		return 0
	}
	problems, summary := checkExchanges(xs)
	for _, p := range problems {
		fmt.Fprintln(w, "openapi mismatch:", p)
	}
	if len(problems) > 0 || verbose {
		fmt.Fprintln(w, summary)
	}
	if len(problems) > 0 {
		return 1
	}
	return 0
}

// specOperations returns "METHOD /path" → tag of every operation in the spec.
func specOperations(t *testing.T, doc *openapi3.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			tag := ""
			if len(op.Tags) == 1 {
				tag = op.Tags[0]
			}
			out[method+" "+path] = tag
		}
	}
	return out
}

// TestOpenAPICoversRoutes: the spec's operations are exactly the routes the
// code serves, each tagged with the function that serves it.
func TestOpenAPICoversRoutes(t *testing.T) {
	doc, err := loadOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	spec := specOperations(t, doc)
	served := map[string]string{}
	for fn, patterns := range app.Routes() {
		for _, p := range patterns {
			// The settings page (shared/page) is HTML for people, not part of
			// the JSON API; its routes and headers are tested in shared/page.
			if _, path, _ := strings.Cut(p, " "); !strings.HasPrefix(path, "/v1/") {
				continue
			}
			served[p] = fn
		}
	}
	var missing, extra, mistagged []string
	for p, fn := range served {
		tag, ok := spec[p]
		switch {
		case !ok:
			missing = append(missing, p)
		case tag != fn:
			mistagged = append(mistagged, fmt.Sprintf("%s (tag %q, served by %s)", p, tag, fn))
		}
	}
	for p := range spec {
		if _, ok := served[p]; !ok {
			extra = append(extra, p)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(mistagged)
	if len(missing) > 0 {
		t.Errorf("routes served but not in %s: %s", openAPIPath, strings.Join(missing, ", "))
	}
	if len(extra) > 0 {
		t.Errorf("operations in %s that no function serves: %s", openAPIPath, strings.Join(extra, ", "))
	}
	if len(mistagged) > 0 {
		t.Errorf("operations tagged with the wrong function: %s", strings.Join(mistagged, "; "))
	}
	// Every operation is authenticated.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			sec := doc.Security
			if op.Security != nil {
				sec = *op.Security
			}
			if len(sec) == 0 {
				t.Errorf("%s %s has no security requirement", method, path)
			}
			if op.Responses.Status(http.StatusUnauthorized) == nil {
				t.Errorf("%s %s documents no 401", method, path)
			}
		}
	}
}

// TestOpenAPIExercise drives route/status combinations the other tests do
// not reach through e.do, so that the recorded exchanges cover them.
func TestOpenAPIExercise(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.token("root", "admin")
	e.fake.SetDefault(fakeprovider.OK())
	want := func(r response, status int, code string) {
		t.Helper()
		if r.Status != status {
			t.Fatalf("got %d %s, want %d", r.Status, r.Body, status)
		}
		if code != "" {
			var body struct {
				Error struct{ Code string } `json:"error"`
			}
			if err := json.Unmarshal(r.Body, &body); err != nil || body.Error.Code != code {
				t.Fatalf("got %d %s, want code %s", r.Status, r.Body, code)
			}
		}
	}

	// admin: settings and users
	want(e.do("GET", "/v1/admin/settings", admin, nil), 200, "")
	want(e.do("PUT", "/v1/admin/settings", admin, map[string]any{"routing_mode": "sideways"}), 400, "invalid_request")
	want(e.do("PUT", "/v1/admin/settings", admin, map[string]any{"byok_enabled": true,
		"tier_limits": map[string]any{"free": map[string]any{"requests_per_minute": 12}}}), 200, "")
	want(e.do("PUT", "/v1/admin/settings", admin, `{"tier_limits":{"gold":{}}}`), 400, "invalid_request")
	want(e.do("PUT", "/v1/admin/users/dora", admin, map[string]any{"tier": "premium", "email": "dora@example.com"}), 200, "")
	want(e.do("PUT", "/v1/admin/users/dora", admin, map[string]any{}), 400, "invalid_request")
	want(e.do("PUT", "/v1/admin/users/dora", admin, map[string]any{"tier": "gold"}), 400, "invalid_request")
	want(e.do("PUT", "/v1/admin/users/dora", admin, map[string]any{"email": "not an address"}), 400, "invalid_request")
	want(e.do("GET", "/v1/admin/users/dora", admin, nil), 200, "")
	want(e.do("GET", "/v1/admin/users/nobody-here", admin, nil), 404, "not_found")
	want(e.do("GET", "/v1/admin/users/dora", "", nil), 401, "unauthorized")
	want(e.do("GET", "/v1/admin/users/dora", e.token("dora", ""), nil), 403, "forbidden")
	want(e.do("POST", "/v1/admin/users/dora/credits", admin, map[string]any{"amount": 100, "reason": "welcome"}), 400, "invalid_request")
	want(e.do("POST", "/v1/admin/users/dora/credits", admin, map[string]any{"amount": 0, "reason": "zero"}, "Idempotency-Key", "g0"), 400, "invalid_request")
	want(e.do("POST", "/v1/admin/users/dora/credits", admin, map[string]any{"amount": 1_000_000, "reason": "welcome"}, "Idempotency-Key", "g1"), 200, "")
	want(e.do("POST", "/v1/admin/users/dora/credits", admin, map[string]any{"amount": 1_000_000, "reason": "welcome"}, "Idempotency-Key", "g1"), 200, "")
	want(e.do("POST", "/v1/admin/users/dora/credits", e.token("dora", ""), map[string]any{"amount": 100, "reason": "me"}, "Idempotency-Key", "g2"), 403, "forbidden")
	want(e.do("POST", "/v1/admin/users/dora/credits", "", nil), 401, "unauthorized")
	pad := strings.Repeat("x", 70<<10)
	want(e.do("PUT", "/v1/admin/settings", admin, `{"routing_mode":"byok_first","padding":"`+pad+`"}`), 413, "request_too_large")
	want(e.do("PUT", "/v1/admin/settings", "", map[string]any{"byok_enabled": true}), 401, "unauthorized")
	want(e.do("PUT", "/v1/admin/users/dora", admin, `{"email":"`+pad+`"}`), 413, "request_too_large")
	want(e.do("PUT", "/v1/admin/users/dora", "", map[string]any{"tier": "free"}), 401, "unauthorized")
	want(e.do("POST", "/v1/admin/users/dora/credits", admin, `{"amount":1,"reason":"`+pad+`"}`, "Idempotency-Key", "g3"), 413, "request_too_large")
	want(e.do("GET", "/v1/admin/users/a%20b", admin, nil), 400, "invalid_request")

	// keys: list, save, test, delete
	dora := e.token("dora", "")
	key := openAIKey(t)
	want(e.do("GET", "/v1/keys", dora, nil), 200, "")
	want(e.do("DELETE", "/v1/keys/openai", dora, nil), 404, "not_found")
	want(e.do("POST", "/v1/keys/openai/test", dora, nil), 404, "not_found")
	want(e.do("PUT", "/v1/keys/openai", dora, map[string]string{"api_key": key}), 200, "")
	want(e.do("POST", "/v1/keys/openai/test", dora, nil), 200, "")
	want(e.do("GET", "/v1/keys", dora, nil), 200, "")
	want(e.do("DELETE", "/v1/keys/openai", dora, nil), 204, "")
	want(e.do("DELETE", "/v1/keys/openai", dora, nil), 404, "not_found")

	// credits and models
	want(e.do("GET", "/v1/credits", dora, nil), 200, "")
	want(e.do("GET", "/v1/credits?limit=500", dora, nil), 400, "invalid_request")
	want(e.do("GET", "/v1/credits", "", nil), 401, "unauthorized")
	want(e.do("GET", "/v1/models", dora, nil), 200, "")
	want(e.do("GET", "/v1/models", "", nil), 401, "unauthorized")

	// chat routes: success and byok's own errors, in each protocol
	chat := map[string]any{"model": "gpt-4o-mini", "messages": []map[string]string{{"role": "user", "content": "hi"}}}
	want(e.do("POST", "/v1/chat/completions", dora, chat), 200, "")
	want(e.do("POST", "/v1/chat/completions", "", chat), 401, "unauthorized")
	want(e.do("POST", "/v1/chat/completions", dora, `{"model":"gpt-4o-mini","messages":`), 400, "invalid_request")
	msgs := map[string]any{"model": "claude-3-5-haiku-20241022", "max_tokens": 16,
		"messages": []map[string]string{{"role": "user", "content": "hi"}}}
	want(e.do("POST", "/v1/messages", "", nil, "x-api-key", dora, "Content-Type", "application/json",
		"anthropic-version", "2023-06-01"), 400, "invalid_request")
	want(e.do("POST", "/v1/messages", "", msgs, "x-api-key", dora, "anthropic-version", "2023-06-01"), 200, "")
	msgs["stream"] = true
	want(e.do("POST", "/v1/messages", dora, msgs), 200, "")
	want(e.do("POST", "/v1/messages", "", msgs), 401, "unauthorized")
	want(e.do("POST", "/v1/messages", dora, map[string]any{"model": "nope", "max_tokens": 5,
		"messages": []map[string]string{{"role": "user", "content": "x"}}}), 404, "not_found")
	want(e.do("POST", "/v1/messages", dora, map[string]any{"model": "azure/my-deployment", "max_tokens": 5,
		"messages": []map[string]string{{"role": "user", "content": "x"}}}), 503, "service_unavailable") // no azure key, no platform Azure key
	want(e.do("POST", "/v1/embeddings", dora, map[string]any{"model": "text-embedding-3-small", "input": "x"}, "api-key", dora), 200, "")
	want(e.do("POST", "/v1/embeddings", dora, map[string]any{"model": "text-embedding-3-small"}), 400, "invalid_request")
	ct, audio := multipartBody(t, map[string]string{"model": "whisper-1"}, []byte("abc"))
	want(e.do("POST", "/v1/audio/transcriptions", dora, audio, "Content-Type", ct), 200, "")
	ct, audio = multipartBody(t, map[string]string{"model": "whisper-1", "response_format": "text"}, []byte("abc"))
	want(e.do("POST", "/v1/audio/transcriptions", dora, audio, "Content-Type", ct), 200, "")
	want(e.do("POST", "/v1/audio/transcriptions", dora, map[string]string{"model": "whisper-1"}), 400, "invalid_request")
	want(e.do("POST", "/v1/copilot/chat", dora, map[string]any{"message": "hi", "stream": true}), 200, "")
	want(e.do("POST", "/v1/copilot/chat", dora, map[string]any{}), 400, "invalid_request")

	// more of byok's own refusals on the AI routes
	big := `{"model":"gpt-4o-mini","messages":[],"pad":"` + strings.Repeat("x", 11<<20) + `"}`
	want(e.do("POST", "/v1/chat/completions", dora, big), 413, "request_too_large")
	want(e.do("POST", "/v1/messages", dora, big), 413, "request_too_large")
	want(e.do("POST", "/v1/chat/completions", dora, map[string]any{"model": "llama-3-70b",
		"messages": []map[string]string{{"role": "user", "content": "x"}}}), 404, "not_found")
	emb := map[string]any{"model": "text-embedding-3-small", "input": "x"}
	want(e.do("POST", "/v1/embeddings", dora, map[string]any{"model": "llama-embed", "input": "x"}), 404, "not_found")
	want(e.do("POST", "/v1/embeddings", "", emb), 401, "unauthorized")
	want(e.do("POST", "/v1/audio/transcriptions", "", audio, "Content-Type", ct), 401, "unauthorized")
	want(e.do("POST", "/v1/copilot/chat", "", map[string]any{"message": "hi"}), 401, "unauthorized")
	// the same Idempotency-Key twice on the credits route (no Anthropic key: credits)
	msgs["stream"] = false
	want(e.do("POST", "/v1/messages", dora, msgs, "Idempotency-Key", "once-"+randomHex(t, 4)), 200, "")
	idem := "twice-" + randomHex(t, 4)
	want(e.do("POST", "/v1/messages", dora, msgs, "Idempotency-Key", idem), 200, "")
	want(e.do("POST", "/v1/messages", dora, msgs, "Idempotency-Key", idem), 409, "conflict")
	// the platform's provider fails on the credits route: 502, not charged
	e.fake.SetKey(internalAnthropicKey, fakeprovider.ServerError())
	want(e.do("POST", "/v1/messages", dora, msgs), 502, "provider_error")
	claudeChat := map[string]any{"model": "claude-3-5-haiku-20241022", "messages": []map[string]string{{"role": "user", "content": "hi"}}}
	want(e.do("POST", "/v1/chat/completions", dora, claudeChat), 502, "provider_error")
	want(e.do("POST", "/v1/copilot/chat", dora, map[string]any{"message": "hi", "model": "claude-3-5-haiku-20241022"}), 502, "provider_error")
	e.fake.SetKey(internalAnthropicKey, fakeprovider.OK())

	// usage reports and exports
	want(e.do("GET", "/v1/usage", dora, nil), 200, "")
	want(e.do("GET", "/v1/usage?days=7", dora, nil), 200, "")
	want(e.do("GET", "/v1/usage?days=0", dora, nil), 400, "invalid_request")
	want(e.do("GET", "/v1/usage?user_id=erin", dora, nil), 400, "invalid_request")
	want(e.do("GET", "/v1/usage", "", nil), 401, "unauthorized")
	want(e.do("GET", "/v1/usage/export", dora, nil), 200, "")
	want(e.do("GET", "/v1/usage/export?format=json", dora, nil), 200, "")
	want(e.do("GET", "/v1/usage/export?format=xml", dora, nil), 400, "invalid_request")
	want(e.do("GET", "/v1/usage/export?format=csv&from=yesterday", dora, nil), 400, "invalid_request")
	want(e.do("GET", "/v1/usage/export", "", nil), 401, "unauthorized")

	// routing refusals: no credits, BYOK required
	e.setTier("erin", "free")
	erin := e.token("erin", "")
	want(e.do("POST", "/v1/chat/completions", erin, chat), 402, "payment_required")
	want(e.do("POST", "/v1/messages", erin, msgs), 402, "payment_required")
	want(e.do("POST", "/v1/embeddings", erin, emb), 402, "payment_required")
	want(e.do("POST", "/v1/copilot/chat", erin, map[string]any{"message": "hi"}), 402, "payment_required")
	ct, audio = multipartBody(t, map[string]string{"model": "whisper-1"}, []byte("abc"))
	want(e.do("POST", "/v1/audio/transcriptions", erin, audio, "Content-Type", ct), 402, "payment_required")
	e.setMode("byok_only")
	want(e.do("POST", "/v1/chat/completions", erin, chat), 403, "byok_required")
	want(e.do("POST", "/v1/messages", erin, msgs), 403, "byok_required")
	want(e.do("POST", "/v1/embeddings", erin, emb), 403, "byok_required")
	want(e.do("POST", "/v1/copilot/chat", erin, map[string]any{"message": "hi"}), 403, "byok_required")
	want(e.do("POST", "/v1/audio/transcriptions", erin, audio, "Content-Type", ct), 403, "byok_required")
	e.setMode("byok_first")

	// a provider request error (422) relayed as it is, in each protocol
	bad := openAIKey(t)
	e.saveKey("dora", "openai", bad)
	e.fake.SetKey(bad, fakeprovider.Behavior{Status: http.StatusUnprocessableEntity})
	want(e.do("POST", "/v1/chat/completions", dora, chat), 422, "")
	gptMsgs := map[string]any{"model": "gpt-4o-mini", "max_tokens": 5, "messages": []map[string]string{{"role": "user", "content": "x"}}}
	want(e.do("POST", "/v1/messages", dora, gptMsgs), 422, "")
	// the user's own key hits the provider's rate limit: 429 with its Retry-After
	e.fake.SetKey(bad, fakeprovider.RateLimited())
	want(e.do("POST", "/v1/chat/completions", dora, chat), 429, "provider_rate_limited")
	want(e.do("POST", "/v1/messages", dora, gptMsgs), 429, "provider_rate_limited")
	want(e.do("POST", "/v1/embeddings", dora, emb), 429, "provider_rate_limited")

	// no platform key configured: the credits route is unavailable (503)
	e2 := newEnv(t, func(v map[string]string) { v["INTERNAL_OPENAI_API_KEY"], v["INTERNAL_ANTHROPIC_API_KEY"] = "", "" })
	e2.setTier("finn", "free")
	e2.grant("finn", 1_000_000)
	finn := e2.token("finn", "")
	want(e2.do("POST", "/v1/chat/completions", finn, chat), 503, "service_unavailable")
	want(e2.do("POST", "/v1/messages", finn, msgs), 503, "service_unavailable")
	want(e2.do("POST", "/v1/embeddings", finn, emb), 503, "service_unavailable")
	want(e2.do("GET", "/v1/models", finn, nil), 200, "")
}
