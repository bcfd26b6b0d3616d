package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// hookReceiver is a local endpoint that checks each delivery's signature
// with the reference verifier and answers status.
type hookReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	status int
	got    []http.Header
	bodies []string
	bad    int
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{status: 204}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		wh, err := standardwebhooks.NewWebhook(h.secret)
		if err != nil || wh.Verify(body, r.Header) != nil {
			h.bad++
			w.WriteHeader(401)
			return
		}
		h.got = append(h.got, r.Header.Clone())
		h.bodies = append(h.bodies, string(body))
		w.WriteHeader(h.status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func webhookEnv(t *testing.T) *testEnv {
	return newEnv(t, func(v map[string]string) { v["WEBHOOK_ALLOW_HOSTS"] = "127.0.0.1" })
}

func TestWebhooksRegisterListTestDelete(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	rc := newHookReceiver(t)
	alice, bob := e.token("alice", ""), e.token("bob", "")

	r := e.do("POST", "/v1/webhooks", alice, map[string]any{"url": rc.srv.URL + "/hook?token=abc", "events": []string{"byok.key_invalid", "byok.fallback"}})
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", r.Header.Get("Cache-Control"))
	}
	var created struct {
		ID, URL, Secret, SecretHint, Status string
		Events                              []string
	}
	_ = json.Unmarshal(r.Body, &created)
	var raw map[string]any
	_ = json.Unmarshal(r.Body, &raw)
	created.SecretHint, _ = raw["secret_hint"].(string)
	if !strings.HasPrefix(created.Secret, "whsec_") || len(created.Secret) < 6+32 || !strings.HasPrefix(created.ID, "wh_") ||
		created.Status != "active" || len(created.Events) != 2 || !strings.HasSuffix(created.Secret, strings.TrimPrefix(created.SecretHint, "whsec_...")) {
		t.Fatalf("create answer %s", r.Body)
	}
	rc.mu.Lock()
	rc.secret = created.Secret
	rc.mu.Unlock()

	// list: the hint, never the secret
	r = e.do("GET", "/v1/webhooks", alice, nil)
	if r.Status != 200 || strings.Contains(string(r.Body), created.Secret) || !strings.Contains(string(r.Body), created.ID) {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	if r = e.do("GET", "/v1/webhooks", bob, nil); r.Status != 200 || strings.Contains(string(r.Body), created.ID) {
		t.Fatalf("bob's list: %d %s", r.Status, r.Body)
	}
	// the secret is stored sealed, not in clear
	if strings.Contains(e.scanAll(), created.Secret) || strings.Contains(e.scanAll(), strings.TrimPrefix(created.Secret, "whsec_")) {
		t.Fatal("the secret is stored in clear")
	}

	// test: delivered now, signed, recorded
	r = e.do("POST", "/v1/webhooks/"+created.ID+"/test", alice, nil)
	if r.Status != 200 {
		t.Fatalf("test: %d %s", r.Status, r.Body)
	}
	var att map[string]any
	_ = json.Unmarshal(r.Body, &att)
	if att["result"] != "delivered" || att["http_status"] != float64(204) || att["event_type"] != "byok.test" || att["attempt"] != float64(1) {
		t.Fatalf("test attempt %s", r.Body)
	}
	rc.mu.Lock()
	if len(rc.got) != 1 || rc.bad != 0 || rc.got[0].Get("webhook-id") != att["event_id"] || !strings.Contains(rc.bodies[0], `"event_type":"byok.test"`) {
		t.Fatalf("receiver got %v bad %d", rc.got, rc.bad)
	}
	rc.status = 500
	rc.mu.Unlock()
	r = e.do("POST", "/v1/webhooks/"+created.ID+"/test", alice, nil)
	_ = json.Unmarshal(r.Body, &att)
	if r.Status != 200 || att["result"] != "failed" || att["http_status"] != float64(500) || att["error"] != "http_status" {
		t.Fatalf("failing test: %d %s", r.Status, r.Body)
	}

	// deliveries, newest first
	r = e.do("GET", "/v1/webhooks/"+created.ID+"/deliveries", alice, nil)
	var ds struct{ Deliveries []map[string]any }
	_ = json.Unmarshal(r.Body, &ds)
	if r.Status != 200 || len(ds.Deliveries) != 2 || ds.Deliveries[0]["result"] != "failed" || ds.Deliveries[1]["result"] != "delivered" {
		t.Fatalf("deliveries: %d %s", r.Status, r.Body)
	}
	if r = e.do("GET", "/v1/webhooks/"+created.ID+"/deliveries?limit=1", alice, nil); r.Status != 200 || strings.Count(string(r.Body), `"attempt"`) != 1 {
		t.Fatalf("limit=1: %d %s", r.Status, r.Body)
	}
	if r = e.do("GET", "/v1/webhooks/"+created.ID+"/deliveries?limit=1000", alice, nil); r.Status != 400 || r.errCode(t) != "invalid_request" {
		t.Fatalf("limit=1000: %d %s", r.Status, r.Body)
	}

	// another user's id is not found, on every route
	for _, c := range [][2]string{{"DELETE", ""}, {"POST", "/test"}, {"GET", "/deliveries"}} {
		if r = e.do(c[0], "/v1/webhooks/"+created.ID+c[1], bob, nil); r.Status != 404 || r.errCode(t) != "not_found" {
			t.Fatalf("bob %s %s: %d %s", c[0], c[1], r.Status, r.Body)
		}
		if r = e.do(c[0], "/v1/webhooks/not-an-id"+c[1], alice, nil); r.Status != 400 || r.errCode(t) != "invalid_request" {
			t.Fatalf("malformed id %s %s: %d %s", c[0], c[1], r.Status, r.Body)
		}
		if r = e.do(c[0], "/v1/webhooks/"+created.ID+c[1], "", nil); r.Status != 401 {
			t.Fatalf("no token %s %s: %d", c[0], c[1], r.Status)
		}
	}
	if r = e.do("DELETE", "/v1/webhooks/"+created.ID, alice, nil); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r = e.do("DELETE", "/v1/webhooks/"+created.ID, alice, nil); r.Status != 404 || r.errCode(t) != "not_found" {
		t.Fatalf("delete again: %d %s", r.Status, r.Body)
	}
	if r = e.do("POST", "/v1/webhooks/"+created.ID+"/test", alice, nil); r.Status != 404 {
		t.Fatalf("test after delete: %d %s", r.Status, r.Body)
	}
	if strings.Contains(e.logs.String(), created.Secret) || strings.Contains(e.logs.String(), "token=abc") {
		t.Fatal("a log line holds the secret or the URL's token")
	}
}

func TestWebhooksBadInput(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	alice := e.token("alice", "")
	ok := "https://hooks.example.com/byok"
	cases := map[string]any{
		"not json":           `{"url":`,
		"array":              `[]`,
		"missing url":        map[string]any{"events": []string{"*"}},
		"url wrong type":     map[string]any{"url": 7, "events": []string{"*"}},
		"events wrong type":  map[string]any{"url": ok, "events": "byok.key_invalid"},
		"missing events":     map[string]any{"url": ok},
		"empty events":       map[string]any{"url": ok, "events": []string{}},
		"unknown event":      map[string]any{"url": ok, "events": []string{"byok.key_stolen"}},
		"repeated event":     map[string]any{"url": ok, "events": []string{"byok.fallback", "byok.fallback"}},
		"star and more":      map[string]any{"url": ok, "events": []string{"*", "byok.fallback"}},
		"test event":         map[string]any{"url": ok, "events": []string{"byok.test"}},
		"unknown field":      map[string]any{"url": ok, "events": []string{"*"}, "secret": "mine"},
		"duplicate key":      `{"url":"https://hooks.example.com/a","url":"https://hooks.example.com/b","events":["*"]}`,
		"plain http":         map[string]any{"url": "http://hooks.example.com/x", "events": []string{"*"}},
		"loopback":           map[string]any{"url": "https://127.0.0.2/x", "events": []string{"*"}},
		"metadata":           map[string]any{"url": "https://169.254.169.254/latest", "events": []string{"*"}},
		"private":            map[string]any{"url": "https://10.0.0.8/x", "events": []string{"*"}},
		"mapped v6 loopback": map[string]any{"url": "https://[::ffff:127.0.0.1]/x", "events": []string{"*"}},
		"credentials in url": map[string]any{"url": "https://u:p@hooks.example.com/x", "events": []string{"*"}},
		"relative url":       map[string]any{"url": "/x", "events": []string{"*"}},
	}
	for name, body := range cases {
		r := e.do("POST", "/v1/webhooks", alice, body)
		if r.Status != 400 || r.errCode(t) != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", name, r.Status, r.Body)
		}
	}
	if r := e.do("POST", "/v1/webhooks", alice, `{"url":"`+ok+`","events":["*"],"pad":"`+strings.Repeat("x", 20<<10)+`"}`); r.Status != 413 {
		t.Errorf("huge body: %d %s", r.Status, r.Body)
	}
	if r := e.do("POST", "/v1/webhooks", "", map[string]any{"url": ok, "events": []string{"*"}}); r.Status != 401 {
		t.Errorf("no token: %d", r.Status)
	}
	if r := e.do("GET", "/v1/webhooks", "", nil); r.Status != 401 {
		t.Errorf("no token: %d", r.Status)
	}
}

func TestWebhooksAtMostTenPerOwner(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	carol := e.token("carol", "")
	for i := 0; i < 10; i++ {
		if r := e.do("POST", "/v1/webhooks", carol, map[string]any{"url": fmt.Sprintf("https://hooks.example.com/%d", i), "events": []string{"*"}}); r.Status != 201 {
			t.Fatalf("#%d: %d %s", i, r.Status, r.Body)
		}
	}
	r := e.do("POST", "/v1/webhooks", carol, map[string]any{"url": "https://hooks.example.com/11", "events": []string{"*"}})
	if r.Status != 400 || !strings.Contains(string(r.Body), "at most 10") {
		t.Fatalf("eleventh: %d %s", r.Status, r.Body)
	}
	// another owner is not limited by carol's
	if r := e.do("POST", "/v1/webhooks", e.token("dan", ""), map[string]any{"url": "https://hooks.example.com/d", "events": []string{"*"}}); r.Status != 201 {
		t.Fatalf("dan: %d %s", r.Status, r.Body)
	}
	var list struct{ Webhooks []struct{ ID string } }
	_ = json.Unmarshal(e.do("GET", "/v1/webhooks", carol, nil).Body, &list)
	if len(list.Webhooks) != 10 {
		t.Fatalf("%d listed", len(list.Webhooks))
	}
	if r := e.do("DELETE", "/v1/webhooks/"+list.Webhooks[0].ID, carol, nil); r.Status != 204 {
		t.Fatalf("delete: %d", r.Status)
	}
	if r := e.do("POST", "/v1/webhooks", carol, map[string]any{"url": "https://hooks.example.com/again", "events": []string{"*"}}); r.Status != 201 {
		t.Fatalf("after a delete: %d %s", r.Status, r.Body)
	}
}
