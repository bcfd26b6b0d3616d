package app_test

import (
	"strings"
	"testing"
)

// A method a path does not serve is a 405 naming the methods it does (Allow),
// in our envelope; a path nobody serves stays a 404.
func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token("mona", "")
	for _, c := range []struct{ method, path, allow string }{
		{"PATCH", "/v1/keys", "GET"},
		{"GET", "/v1/chat/completions", "POST"},
		{"POST", "/v1/keys/openai/test/extra", ""},
		{"DELETE", "/v1/usage", "GET"},
	} {
		r := e.do(c.method, c.path, tok, nil)
		if c.allow == "" {
			if r.Status != 404 {
				t.Errorf("%s %s: %d, want 404", c.method, c.path, r.Status)
			}
			continue
		}
		if r.Status != 405 || r.errCode(t) != "method_not_allowed" || !strings.Contains(r.Header.Get("Allow"), c.allow) {
			t.Errorf("%s %s: %d %q Allow=%q, want 405 method_not_allowed with %s", c.method, c.path, r.Status, r.Body, r.Header.Get("Allow"), c.allow)
		}
	}
}
