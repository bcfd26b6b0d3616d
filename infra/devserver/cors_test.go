package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCORSPreflight(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := corsPreflight([]string{"https://app.example.test"}, next)
	do := func(method, origin string, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/v1/chat/completions", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	// The preflight the OpenAI SDK's browser build causes.
	rec := do("OPTIONS", "https://app.example.test", "Access-Control-Request-Method", "POST",
		"Access-Control-Request-Headers", "authorization,content-type,x-stainless-lang,x-stainless-retry-count")
	if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.test" {
		t.Fatalf("preflight: %d %v", rec.Code, rec.Header())
	}
	allowed := rec.Header().Get("Access-Control-Allow-Headers")
	for _, h := range []string{"authorization", "x-stainless-lang", "anthropic-dangerous-direct-browser-access", "openai-project"} {
		if !strings.Contains(allowed, h) {
			t.Errorf("Allow-Headers lacks %s: %s", h, allowed)
		}
	}
	if rec.Header().Get("Access-Control-Allow-Credentials") != "" {
		t.Error("credentials must not be allowed")
	}
	// A request from the allowed origin passes through with the exposed headers.
	rec = do("POST", "https://app.example.test")
	if rec.Code != http.StatusTeapot || !strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), "X-Byok-Route") {
		t.Errorf("simple request: %d %v", rec.Code, rec.Header())
	}
	// Another origin gets no CORS headers (the browser blocks it).
	rec = do("OPTIONS", "https://evil.example.test", "Access-Control-Request-Method", "POST")
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("other origin allowed: %v", rec.Header())
	}
	// No origins configured: nothing added.
	rec = httptest.NewRecorder()
	corsPreflight(nil, next).ServeHTTP(rec, httptest.NewRequest("OPTIONS", "/", nil))
	if rec.Code != http.StatusTeapot {
		t.Errorf("unconfigured: %d", rec.Code)
	}
}
