package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/webhooks"
)

// createHook registers rc under base ("/v1" or "/v1/orgs/{org}") with tok
// and gives rc the secret; it returns the new id.
func (e *testEnv) createHook(base, tok string, rc *hookReceiver, evs ...string) string {
	e.t.Helper()
	if len(evs) == 0 {
		evs = []string{"*"}
	}
	r := e.do("POST", base+"/webhooks", tok, map[string]any{"url": rc.srv.URL + "/hook", "events": evs})
	wantStatus(e.t, r, 201, "")
	var c struct{ ID, Secret string }
	_ = json.Unmarshal(r.Body, &c)
	rc.mu.Lock()
	rc.secret = c.Secret
	rc.mu.Unlock()
	return c.ID
}

// TestOrgWebhooksRoutes: an org's owners and admins manage its endpoints
// under /v1/orgs/{org}/webhooks with the user routes' shapes; members,
// other orgs' admins and tokens without the org get 403; another owner's id
// is 404 there; the org's and a person's endpoints are separate.
func TestOrgWebhooksRoutes(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	rc := newHookReceiver(t)
	olga := e.orgToken("olga", "acme", "", "admin")
	owen := e.orgToken("owen", "acme", "", "owner")
	mia := e.orgToken("mia", "acme", "", "member")
	bea := e.orgToken("bea", "beta", "", "admin")
	plain := e.token("olga", "")

	id := e.createHook("/v1/orgs/acme", olga, rc, "byok.key_invalid")
	for name, tok := range map[string]string{"member": mia, "another org's admin": bea, "a token without the org": plain} {
		for _, c := range [][3]string{{"GET", "/webhooks", ""}, {"POST", "/webhooks", `{"url":"https://hooks.example.com/x","events":["*"]}`},
			{"PATCH", "/webhooks/" + id, `{"enabled":false}`}, {"DELETE", "/webhooks/" + id, ""}, {"POST", "/webhooks/" + id + "/test", ""},
			{"GET", "/webhooks/" + id + "/deliveries", ""}} {
			var body any
			if c[2] != "" {
				body = c[2]
			}
			if r := e.do(c[0], "/v1/orgs/acme"+c[1], tok, body); r.Status != 403 || r.errCode(t) != "forbidden" {
				t.Fatalf("%s: %s %s: %d %s, want 403", name, c[0], c[1], r.Status, r.Body)
			}
		}
	}
	if r := e.do("GET", "/v1/orgs/acme/webhooks", "", nil); r.Status != 401 {
		t.Fatalf("no token: %d", r.Status)
	}
	// The owner sees what the admin made; the admin's own list does not.
	if r := e.do("GET", "/v1/orgs/acme/webhooks", owen, nil); r.Status != 200 || !strings.Contains(string(r.Body), id) {
		t.Fatalf("owner's list: %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/v1/webhooks", plain, nil); r.Status != 200 || strings.Contains(string(r.Body), id) {
		t.Fatalf("olga's personal list shows the org's endpoint: %s", r.Body)
	}
	// Another owner's ids are not found under the org, and the other way.
	betaID := e.createHook("/v1/orgs/beta", bea, newHookReceiver(t))
	personal := e.createHook("/v1", plain, newHookReceiver(t))
	for _, other := range []string{betaID, personal} {
		for _, c := range [][2]string{{"DELETE", ""}, {"PATCH", ""}, {"POST", "/test"}, {"GET", "/deliveries"}} {
			var body any
			if c[0] == "PATCH" {
				body = map[string]any{"enabled": false}
			}
			if r := e.do(c[0], "/v1/orgs/acme/webhooks/"+other+c[1], olga, body); r.Status != 404 || r.errCode(t) != "not_found" {
				t.Fatalf("%s %s of another owner under acme: %d %s", c[0], c[1], r.Status, r.Body)
			}
		}
	}
	if r := e.do("DELETE", "/v1/webhooks/"+id, plain, nil); r.Status != 404 {
		t.Fatalf("the org's id on the personal route: %d %s", r.Status, r.Body)
	}

	// Test: signed, naming the org, recorded on the org's endpoint.
	r := e.do("POST", "/v1/orgs/acme/webhooks/"+id+"/test", olga, nil)
	wantStatus(t, r, 200, "")
	rc.mu.Lock()
	if len(rc.bodies) != 1 || rc.bad != 0 || !strings.Contains(rc.bodies[0], `"org":"acme"`) {
		t.Fatalf("org test delivery: %v (bad signatures %d)", rc.bodies, rc.bad)
	}
	rc.mu.Unlock()
	if r := e.do("GET", "/v1/orgs/acme/webhooks/"+id+"/deliveries", owen, nil); r.Status != 200 || strings.Count(string(r.Body), `"attempt"`) != 1 {
		t.Fatalf("org deliveries: %d %s", r.Status, r.Body)
	}
	if r := e.do("PATCH", "/v1/orgs/acme/webhooks/"+id, olga, map[string]any{"events": []string{"*"}}); r.Status != 200 || !strings.Contains(string(r.Body), `"events":["*"]`) {
		t.Fatalf("org patch: %d %s", r.Status, r.Body)
	}
	if r := e.do("DELETE", "/v1/orgs/acme/webhooks/"+id, owen, nil); r.Status != 204 {
		t.Fatalf("org delete: %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/v1/orgs/acme/webhooks", olga, nil); r.Status != 200 || strings.Contains(string(r.Body), id) {
		t.Fatalf("after delete: %s", r.Body)
	}
}

// TestWebhookPatch: PATCH re-enables a disabled endpoint (active, no
// disabled_at), pauses one, changes url and events, and refuses bad input
// with a clear 400 and changes nothing.
func TestWebhookPatch(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	rc := newHookReceiver(t)
	alice := e.token("alice", "")
	id := e.createHook("/v1", alice, rc, "byok.key_invalid")
	path := "/v1/webhooks/" + id
	view := func(r response) webhooks.View {
		t.Helper()
		wantStatus(t, r, 200, "")
		var v webhooks.View
		if err := json.Unmarshal(r.Body, &v); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(r.Body), `"secret"`) {
			t.Fatalf("PATCH answer carries a secret: %s", r.Body)
		}
		return v
	}
	if v := view(e.do("PATCH", path, alice, map[string]any{"enabled": false})); v.Status != "disabled" || v.DisabledAt == nil {
		t.Fatalf("paused: %+v", v)
	}
	if v := view(e.do("PATCH", path, alice, map[string]any{"enabled": true})); v.Status != "active" || v.DisabledAt != nil {
		t.Fatalf("re-enabled: %+v", v)
	}
	v := view(e.do("PATCH", path, alice, map[string]any{"url": rc.srv.URL + "/other", "events": []string{"byok.fallback", "byok.key_valid"}}))
	if v.URL != rc.srv.URL+"/other" || strings.Join(v.Events, ",") != "byok.fallback,byok.key_valid" || v.Status != "active" {
		t.Fatalf("changed: %+v", v)
	}
	bad := map[string]any{
		"empty":          map[string]any{},
		"not json":       `{"enabled":`,
		"enabled string": map[string]any{"enabled": "yes"},
		"unknown field":  map[string]any{"enabled": true, "secret": "mine"},
		"private url":    map[string]any{"url": "https://10.0.0.8/x"},
		"plain http":     map[string]any{"url": "http://hooks.example.com/x"},
		"empty events":   map[string]any{"events": []string{}},
		"unknown event":  map[string]any{"events": []string{"byok.key_stolen"}},
		"duplicate key":  `{"enabled":true,"enabled":false}`,
	}
	for name, body := range bad {
		if r := e.do("PATCH", path, alice, body); r.Status != 400 || r.errCode(t) != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", name, r.Status, r.Body)
		}
	}
	var list struct{ Webhooks []webhooks.View }
	_ = json.Unmarshal(e.do("GET", "/v1/webhooks", alice, nil).Body, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].URL != v.URL || len(list.Webhooks[0].Events) != 2 || list.Webhooks[0].Status != "active" {
		t.Fatalf("a refused PATCH changed the endpoint: %+v", list.Webhooks)
	}
	if r := e.do("PATCH", path, e.token("bob", ""), map[string]any{"enabled": true}); r.Status != 404 || r.errCode(t) != "not_found" {
		t.Fatalf("another user's id: %d %s", r.Status, r.Body)
	}
	if r := e.do("PATCH", "/v1/webhooks/not-an-id", alice, map[string]any{"enabled": true}); r.Status != 400 {
		t.Fatalf("malformed id: %d %s", r.Status, r.Body)
	}
	if r := e.do("PATCH", path, "", map[string]any{"enabled": true}); r.Status != 401 {
		t.Fatalf("no token: %d", r.Status)
	}
}

// TestOrgKeyEventReachesOrgWebhook: an org key found invalid (an admin's
// test) is published naming the org, and the webhooks consumer delivers it
// to the org's endpoint, verifiably signed; neither the acting admin's nor
// a member's personal endpoint gets it.
func TestOrgKeyEventReachesOrgWebhook(t *testing.T) {
	t.Parallel()
	e := webhookEnv(t)
	e.subscribeEvents() // the app publishes to the topic from here on
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q, err := app.BootstrapWebhooks(ctx, e.clients, e.vars["TABLE_PREFIX"], e.vars["SNS_TOPIC_ARN"])
	if err != nil {
		t.Fatal(err)
	}
	cons, err := e.app.WebhookConsumer(app.ConfigFromEnv(func(k string) string { return e.vars[k] }), e.clients, q)
	if err != nil {
		t.Fatal(err)
	}
	poller := &webhooks.Poller{SQS: e.clients.SQS, QueueURL: q.URL, Consumer: cons, Wait: 1, Log: cons.Log}

	olga := e.orgToken("olga", "acme", "", "admin")
	orgHook, olgaHook, miaHook := newHookReceiver(t), newHookReceiver(t), newHookReceiver(t)
	e.createHook("/v1/orgs/acme", olga, orgHook, "byok.key_invalid")
	e.createHook("/v1", e.token("olga", ""), olgaHook)
	e.createHook("/v1", e.token("mia", ""), miaHook)

	_, keyID := e.saveTeamKey("olga", "acme", "", "org", fakeprovider.Unauthorized())
	r := e.do("POST", "/v1/orgs/acme/keys/openai/"+keyID+"/test", olga, nil)
	wantStatus(t, r, 200, "")

	for i := 0; i < 30; i++ {
		orgHook.mu.Lock()
		n := len(orgHook.bodies)
		orgHook.mu.Unlock()
		if n > 0 {
			break
		}
		if _, err := poller.PollOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2; i++ { // anything else queued is handled too
		if _, err := poller.PollOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	orgHook.mu.Lock()
	defer orgHook.mu.Unlock()
	if len(orgHook.bodies) != 1 || orgHook.bad != 0 {
		t.Fatalf("org endpoint got %d deliveries (%d badly signed), want 1", len(orgHook.bodies), orgHook.bad)
	}
	var ev struct {
		Type  string `json:"event_type"`
		Org   string `json:"org"`
		Scope string `json:"scope"`
		Hint  string `json:"hint"`
	}
	_ = json.Unmarshal([]byte(orgHook.bodies[0]), &ev)
	if ev.Type != "byok.key_invalid" || ev.Org != "acme" || ev.Scope != "org" || !strings.HasPrefix(ev.Hint, "sk-...") {
		t.Fatalf("org delivery body %s", orgHook.bodies[0])
	}
	for name, h := range map[string]*hookReceiver{"the acting admin's": olgaHook, "a member's": miaHook} {
		h.mu.Lock()
		if len(h.bodies)+h.bad != 0 {
			t.Errorf("%s personal endpoint got the org's key event: %v", name, h.bodies)
		}
		h.mu.Unlock()
	}
}
