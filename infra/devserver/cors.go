package main

import (
	"net/http"
	"slices"
	"strings"
)

// corsAllowHeaders are the request headers browsers may send: ours and what
// the official OpenAI and Anthropic SDKs add (as template.yaml lists them
// for the chat Function URL).
var corsAllowHeaders = []string{
	"authorization", "content-type", "x-api-key", "api-key", "idempotency-key", "x-request-id",
	"anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access",
	"openai-organization", "openai-project", "openai-beta",
	"x-stainless-arch", "x-stainless-lang", "x-stainless-os", "x-stainless-package-version",
	"x-stainless-runtime", "x-stainless-runtime-version", "x-stainless-retry-count", "x-stainless-timeout",
	"x-stainless-helper", "x-stainless-helper-method", "x-stainless-async", "x-stainless-poll-helper",
	"x-stainless-custom-poll-interval",
}

const corsExposeHeaders = "X-Byok-Route, X-Byok-Fallback, X-Request-Id, Retry-After, Content-Disposition"

func splitOrigins(s string) []string {
	var out []string
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// corsPreflight answers CORS for origins ("*" = any): preflights (OPTIONS
// with Access-Control-Request-Method) get 204 and the allowed methods and
// headers; other requests from an allowed origin get Allow-Origin and the
// exposed headers. No credentials: requests carry bearer tokens, not
// cookies. With no origins it is next itself.
func corsPreflight(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	any := slices.Contains(origins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || (!any && !slices.Contains(origins, origin)) {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		if any {
			h.Set("Access-Control-Allow-Origin", "*")
		} else {
			h.Set("Access-Control-Allow-Origin", origin)
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, PUT, POST, PATCH, DELETE")
			h.Set("Access-Control-Allow-Headers", strings.Join(corsAllowHeaders, ", "))
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		next.ServeHTTP(w, r)
	})
}
