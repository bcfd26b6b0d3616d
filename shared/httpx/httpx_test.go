package httpx

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/synthstack/byok/shared/apperr"
)

func decode(t *testing.T, body, ct string, limit int64) error {
	t.Helper()
	r := httptest.NewRequest("POST", "/", strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	var dst struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	return DecodeJSON(httptest.NewRecorder(), r, limit, &dst)
}

func TestDecodeJSON(t *testing.T) {
	cases := []struct {
		body, ct string
		code     apperr.Code
		msg      string
	}{
		{`{"name":"x","n":1}`, "application/json", "", ""},
		{`{"name":"x"}`, "application/json; charset=utf-8", "", ""},
		{``, "application/json", apperr.InvalidRequest, "empty"},
		{`{"name":`, "application/json", apperr.InvalidRequest, "not valid JSON"},
		{`{"name":1}`, "application/json", apperr.InvalidRequest, `"name" must be of type string`},
		{`[1]`, "application/json", apperr.InvalidRequest, "JSON object"},
		{`{"name":"x"} {"n":2}`, "application/json", apperr.InvalidRequest, "single JSON object"},
		{`{"other":1}`, "application/json", apperr.InvalidRequest, `unknown field "other"`},
		{`{"sk-proj-abcdefghijklmnopqrstuvwxyz0123456789":1}`, "application/json", apperr.InvalidRequest, "an unknown field"},
		{`{"name":"x","name":"y"}`, "application/json", apperr.InvalidRequest, `duplicate key "name"`},
		{`{"name":"x","NAME":"y"}`, "application/json", apperr.InvalidRequest, "one spelling"},
		{`{"n":1,"name":{"a":1,"a":2}}`, "application/json", apperr.InvalidRequest, `duplicate key "a"`},
		{`{"name":"x"}`, "text/plain", apperr.InvalidRequest, "Content-Type"},
		{`{"name":"` + strings.Repeat("a", 200) + `"}`, "application/json", apperr.RequestTooLarge, "exceeds"},
	}
	for _, c := range cases {
		err := decode(t, c.body, c.ct, 100)
		if c.code == "" {
			if err != nil {
				t.Errorf("%s: %v", c.body, err)
			}
			continue
		}
		if apperr.CodeOf(err) != c.code || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%.40s: got %v, want %s containing %q", c.body, err, c.code, c.msg)
		}
		if strings.Contains(err.Error(), "sk-proj-") {
			t.Errorf("error echoes a secret-looking field name: %v", err)
		}
	}
}

func TestEnvelopeAndMiddleware(t *testing.T) {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := Middleware(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/limited":
			WriteError(w, r, &apperr.Error{Code: apperr.RateLimited, Message: "slow down", RetryAfter: 7})
		case "/internal":
			WriteError(w, r, errors.New("dynamodb: secret detail"))
		case "/panic":
			panic("boom")
		}
	}))
	for path, want := range map[string]struct {
		status int
		code   string
	}{"/limited": {429, "rate_limited"}, "/internal": {500, "internal"}, "/panic": {500, "internal"}} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set(RequestIDHeader, "client-id-1")
		h.ServeHTTP(w, r)
		var env struct {
			Error struct{ Type, Code, Message, RequestID string } `json:"error"`
		}
		_ = json.Unmarshal(w.Body.Bytes(), &env)
		if w.Code != want.status || env.Error.Code != want.code || env.Error.Type == "" || w.Header().Get(RequestIDHeader) != "client-id-1" {
			t.Errorf("%s: %d %s", path, w.Code, w.Body.String())
		}
		if strings.Contains(w.Body.String(), "secret detail") || strings.Contains(w.Body.String(), "boom") {
			t.Errorf("%s: internal detail leaked: %s", path, w.Body.String())
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/limited", nil))
	if w.Header().Get("Retry-After") != "7" {
		t.Error("Retry-After not set")
	}
	if id := w.Header().Get(RequestIDHeader); len(id) != 32 {
		t.Errorf("generated request id %q", id)
	}
	w = httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/limited", nil)
	r.Header.Set(RequestIDHeader, "bad id with spaces")
	h.ServeHTTP(w, r)
	if w.Header().Get(RequestIDHeader) == "bad id with spaces" {
		t.Error("an invalid client request id was trusted")
	}
}

func TestEveryCodeHasAStatus(t *testing.T) {
	for _, c := range []apperr.Code{apperr.InvalidRequest, apperr.InvalidKeyFormat, apperr.Unauthorized, apperr.PaymentRequired,
		apperr.Forbidden, apperr.BYOKNotAvailable, apperr.BYOKRequired, apperr.BYOKDisabled, apperr.NotFound,
		apperr.UnsupportedProvider, apperr.RequestTooLarge, apperr.RateLimited, apperr.ProviderRateLimited,
		apperr.ProviderError, apperr.ServiceUnavailable, apperr.Internal, apperr.Conflict} {
		if apperr.Status(c) < 400 || apperr.Type(c) == "" {
			t.Errorf("code %s has no status or type", c)
		}
	}
	want := map[apperr.Code]int{apperr.InvalidKeyFormat: 400, apperr.Unauthorized: 401, apperr.PaymentRequired: 402,
		apperr.BYOKRequired: 403, apperr.UnsupportedProvider: 404, apperr.RequestTooLarge: 413,
		apperr.ProviderRateLimited: 429, apperr.ProviderError: 502, apperr.ServiceUnavailable: 503, apperr.Internal: 500}
	for c, s := range want {
		if apperr.Status(c) != s {
			t.Errorf("%s → %d, want %d", c, apperr.Status(c), s)
		}
	}
}
