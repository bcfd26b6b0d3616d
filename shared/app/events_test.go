package app_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/fakeprovider"
)

// eventQueue is an SQS queue on the emulator subscribed (raw delivery) to
// the env's real SNS topic: every published event lands in it as its JSON
// body, with the event_type message attribute.
type eventQueue struct {
	t *testing.T
	q *awstest.Queue
}

// received is one delivered event.
type received struct {
	Type string // the event_type message attribute
	Body string
	Ev   eventBody
}

type eventBody struct {
	EventType  string `json:"event_type"`
	UserID     string `json:"user_id"`
	Email      string `json:"email"`
	Provider   string `json:"provider"`
	Scope      string `json:"scope"`
	Org        string `json:"org"`
	Project    string `json:"project"`
	Hint       string `json:"hint"`
	Reason     string `json:"reason"`
	DetectedBy string `json:"detected_by"`
	At         string `json:"at"`
	Subject    string `json:"subject"`
	Text       string `json:"text"`
}

// subscribeEvents points the app at the topic the bootstrap created
// (SNS_TOPIC_ARN, then restart) and subscribes a fresh queue to it.
func (e *testEnv) subscribeEvents() *eventQueue {
	e.t.Helper()
	q := awstest.SubscribeQueue(e.t, e.vars["TABLE_PREFIX"]+app.TopicName)
	e.vars["SNS_TOPIC_ARN"] = q.TopicARN
	e.restart()
	return &eventQueue{t: e.t, q: q}
}

// drain reads every delivered event; each body must be a well-formed event
// whose type matches its attribute.
func (q *eventQueue) drain() []received {
	t := q.t
	t.Helper()
	var out []received
	for _, m := range q.q.Drain(t) {
		rec := received{Type: m.Type, Body: m.Body}
		if err := json.Unmarshal([]byte(rec.Body), &rec.Ev); err != nil {
			t.Fatalf("event body is not JSON: %v: %q", err, rec.Body)
		}
		checkEventShape(t, rec)
		out = append(out, rec)
	}
	return out
}

// checkEventShape checks the docs/api.md §13 fields every event carries.
func checkEventShape(t *testing.T, r received) {
	t.Helper()
	ev := r.Ev
	if r.Type == "" || r.Type != ev.EventType {
		t.Errorf("event_type attribute %q, body %q", r.Type, ev.EventType)
	}
	// An org or project key's scheduled check has no acting user.
	if ev.UserID == "" && (ev.Scope == "" || ev.Scope == "user" || ev.DetectedBy != "schedule") || ev.Provider == "" || ev.DetectedBy == "" || ev.Subject == "" || ev.Text == "" || ev.Reason == "" && r.Type == "byok.key_invalid" {
		t.Errorf("event lacks a field: %s", r.Body)
	}
	// A warning about the platform credit balance concerns no key: no hint.
	creditWarning := r.Type == "byok.quota_warning" && strings.Contains(ev.Reason, "credit balance")
	if !creditWarning && (!strings.HasPrefix(ev.Hint, "sk-...") || len(ev.Hint) != len("sk-...")+7) {
		t.Errorf("event hint %q is not a hint: %s", ev.Hint, r.Body)
	}
	if _, err := time.Parse(time.RFC3339Nano, ev.At); err != nil {
		t.Errorf("event at %q: %v", ev.At, err)
	}
	var raw map[string]any
	_ = json.Unmarshal([]byte(r.Body), &raw)
	for _, f := range []string{"user_id", "email", "provider", "hint", "reason", "detected_by", "at", "subject", "text"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("event body lacks %q: %s", f, r.Body)
		}
	}
	for _, secret := range []string{"sk-proj-", "sk-ant-api03-", internalOpenAIKey, internalAnthropicKey} {
		if strings.Contains(r.Body, secret) {
			t.Errorf("event body carries key material (%q): %s", secret, r.Body)
		}
	}
}

// expectEvents checks that got is exactly want (type, user, provider,
// detected_by, reason), in order.
func expectEvents(t *testing.T, step string, got []received, want ...eventBody) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d: %+v", step, len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i].Ev
		if g.EventType != w.EventType || g.UserID != w.UserID || g.Provider != w.Provider || g.DetectedBy != w.DetectedBy ||
			(w.Reason != "" && g.Reason != w.Reason) || (w.Email != "" && g.Email != w.Email) || (w.Hint != "" && g.Hint != w.Hint) {
			t.Errorf("%s: event %d = %+v, want %+v", step, i, g, w)
		}
	}
}

func hintOf(key string) string { return "sk-..." + key[len(key)-7:] }

// Transitions publish exactly one event each, from save, test and use;
// unchanged statuses publish nothing.
func TestKeyEventsOnSaveTestUse(t *testing.T) {
	e := newEnv(t, nil)
	q := e.subscribeEvents()
	e.setTier("alice", "premium")
	tok := e.token("alice", "")

	// save: an invalid key → key_invalid (save); a valid replacement → key_valid (save).
	bad := openAIKey(t)
	e.fake.SetKey(bad, fakeprovider.Unauthorized())
	if r := e.do("PUT", "/v1/keys/openai", tok, map[string]string{"api_key": bad}); r.Status != 200 || r.json(t)["status"] != "invalid" {
		t.Fatalf("save invalid key: %d %s", r.Status, r.Body)
	}
	expectEvents(t, "save invalid", q.drain(), eventBody{EventType: "byok.key_invalid", UserID: "alice", Provider: "openai",
		DetectedBy: "save", Reason: "unauthorized", Email: "alice@example.com", Hint: hintOf(bad)})
	good := openAIKey(t)
	e.saveKey("alice", "openai", good)
	expectEvents(t, "replace with valid", q.drain(), eventBody{EventType: "byok.key_valid", UserID: "alice", Provider: "openai",
		DetectedBy: "save", Email: "alice@example.com", Hint: hintOf(good)})

	// A fresh valid key: no event.
	ant := anthropicKey(t)
	e.saveKey("alice", "anthropic", ant)
	expectEvents(t, "save valid", q.drain())

	// test: valid → invalid → (unchanged) → valid → (unchanged).
	test := func(want string) {
		t.Helper()
		r := e.do("POST", "/v1/keys/anthropic/test", tok, nil)
		if r.Status != 200 || r.json(t)["status"] != want {
			t.Fatalf("test: %d %s, want status %s", r.Status, r.Body, want)
		}
	}
	e.fake.SetKey(ant, fakeprovider.Unauthorized())
	test("invalid")
	test("invalid")
	expectEvents(t, "test invalid", q.drain(), eventBody{EventType: "byok.key_invalid", UserID: "alice", Provider: "anthropic",
		DetectedBy: "test", Reason: "unauthorized", Email: "alice@example.com", Hint: hintOf(ant)})
	e.fake.SetKey(ant, fakeprovider.OK())
	test("valid")
	test("valid")
	expectEvents(t, "test valid again", q.drain(), eventBody{EventType: "byok.key_valid", UserID: "alice", Provider: "anthropic",
		DetectedBy: "test", Email: "alice@example.com", Hint: hintOf(ant)})

	// An unreachable provider on test (unchecked) is no transition either.
	e.fake.SetKey(ant, fakeprovider.ServerError())
	test("unchecked")
	expectEvents(t, "test unchecked", q.drain())

	// use: a BYOK call answered 401 marks the key invalid → key_invalid (use).
	e.setTier("bob", "premium")
	bobKey := openAIKey(t)
	e.saveKey("bob", "openai", bobKey)
	e.fake.SetKey(bobKey, fakeprovider.Unauthorized())
	body := map[string]any{"model": "gpt-4o-mini", "messages": []map[string]string{{"role": "user", "content": "hello"}}}
	if r := e.do("POST", "/v1/chat/completions", e.token("bob", ""), body); r.Status != 402 {
		t.Fatalf("chat with a revoked key and no credits: %d %s", r.Status, r.Body)
	}
	// The key is now invalid and no longer used: a second request changes nothing.
	if r := e.do("POST", "/v1/chat/completions", e.token("bob", ""), body); r.Status != 402 {
		t.Fatalf("second chat: %d %s", r.Status, r.Body)
	}
	expectEvents(t, "use", q.drain(), eventBody{EventType: "byok.key_invalid", UserID: "bob", Provider: "openai",
		DetectedBy: "use", Reason: "unauthorized", Email: "bob@example.com", Hint: hintOf(bobKey)})

	for _, k := range []string{bad, good, ant, bobKey} {
		assertNoLeak(t, "logs", e.logs.String(), k, len("sk-ant-api03-"))
	}
}

// byok.fallback is published at most once per user and provider per hour.
func TestFallbackEventThrottled(t *testing.T) {
	e := newEnv(t, nil)
	q := e.subscribeEvents()
	e.setTier("carol", "premium")
	e.grant("carol", 1_000_000)
	key := openAIKey(t)
	e.saveKey("carol", "openai", key)
	e.fake.SetKey(key, fakeprovider.ServerError())
	body := map[string]any{"model": "gpt-4o-mini", "messages": []map[string]string{{"role": "user", "content": "hello"}}}
	for i := range 2 {
		r := e.do("POST", "/v1/chat/completions", e.token("carol", ""), body)
		if r.Status != 200 || r.Header.Get("X-Byok-Route") != "credits" || r.Header.Get("X-Byok-Fallback") == "" {
			t.Fatalf("request %d: %d route %q fallback %q: %s", i, r.Status, r.Header.Get("X-Byok-Route"), r.Header.Get("X-Byok-Fallback"), r.Body)
		}
	}
	got := q.drain()
	expectEvents(t, "fallback", got, eventBody{EventType: "byok.fallback", UserID: "carol", Provider: "openai",
		DetectedBy: "use", Email: "carol@example.com", Hint: hintOf(key)})
	if got[0].Ev.Reason == "" {
		t.Errorf("fallback event has no reason: %s", got[0].Body)
	}
	// A 500 is not a key problem: the key stays usable and no key event is sent.
	if r := e.do("GET", "/v1/keys", e.token("carol", ""), nil); !strings.Contains(string(r.Body), `"status":"valid"`) {
		t.Errorf("key status after 5xx on use: %s", r.Body)
	}
}

// A failed publish (no such topic) is logged and never fails the request.
func TestFailedPublishNeverFailsRequest(t *testing.T) {
	e := newEnv(t, nil)
	e.vars["SNS_TOPIC_ARN"] = "arn:aws:sns:us-east-1:123456789012:" + e.vars["TABLE_PREFIX"] + "no-such-topic"
	e.restart()
	e.setTier("dave", "premium")
	tok := e.token("dave", "")
	key := openAIKey(t)
	e.fake.SetKey(key, fakeprovider.Unauthorized())
	if r := e.do("PUT", "/v1/keys/openai", tok, map[string]string{"api_key": key}); r.Status != 200 || r.json(t)["status"] != "invalid" {
		t.Fatalf("save: %d %s", r.Status, r.Body)
	}
	e.fake.SetKey(key, fakeprovider.OK())
	if r := e.do("POST", "/v1/keys/openai/test", tok, nil); r.Status != 200 || r.json(t)["status"] != "valid" {
		t.Fatalf("test: %d %s", r.Status, r.Body)
	}
	e.fake.SetKey(key, fakeprovider.Unauthorized())
	body := map[string]any{"model": "gpt-4o-mini", "messages": []map[string]string{{"role": "user", "content": "hello"}}}
	if r := e.do("POST", "/v1/chat/completions", tok, body); r.Status != 402 {
		t.Fatalf("chat: %d %s", r.Status, r.Body)
	}
	if n := strings.Count(e.logs.String(), "event publish failed"); n != 3 {
		t.Fatalf("%d publish failures logged, want 3 (save, test, use):\n%s", n, e.logs.String())
	}
}

// docs/api.md §9: byok.quota_warning when a credit balance falls below 10 % of the
// last grant (once a day), and when the provider reports the user's own
// quota exhausted.
func TestQuotaWarnings(t *testing.T) {
	e := newEnv(t, nil)
	q := e.subscribeEvents()
	e.setTier("quinn", "free")
	e.grant("quinn", 1000)
	// The upstream reports 60,000 input tokens: ~900 credits of gpt-4o-mini.
	e.fake.SetKey(internalOpenAIKey, fakeprovider.Behavior{Usage: &fakeprovider.Usage{Input: 60_000, Output: 1}})
	tok := e.token("quinn", "")
	if r := e.do("POST", "/v1/chat/completions", tok, string(chatBody("gpt-4o-mini", 10, "x"))); r.Status != 200 {
		t.Fatalf("chat: %d %s", r.Status, r.Body)
	}
	if bal := e.balance("quinn"); bal >= 100 {
		t.Fatalf("balance %d, want below 10%% of the grant", bal)
	}
	var warnings int
	for _, m := range q.drain() {
		if m.Type == "byok.quota_warning" && m.Ev.UserID == "quinn" {
			warnings++
		}
	}
	if warnings != 1 {
		t.Fatalf("%d quota warnings for a balance below 10%%, want 1", warnings)
	}

	// The user's own key reports its quota exhausted (BYOK, byok_first, credits to fall back on).
	e.setTier("rita", "premium")
	e.grant("rita", 1_000_000)
	key := openAIKey(t)
	e.saveKey("rita", "openai", key)
	q.drain()
	e.fake.SetKey(key, fakeprovider.InsufficientQuota())
	if r := e.do("POST", "/v1/chat/completions", e.token("rita", ""), string(chatBody("gpt-4o-mini", 10, "x"))); r.Status != 200 || r.Header.Get("X-Byok-Fallback") != "quota_exceeded" {
		t.Fatalf("quota fallback: %d %v", r.Status, r.Header)
	}
	got := map[string]int{}
	for _, m := range q.drain() {
		if m.Ev.UserID == "rita" {
			got[m.Type]++
		}
	}
	if got["byok.quota_warning"] != 1 || got["byok.fallback"] != 1 {
		t.Fatalf("events after the user's quota ran out: %v", got)
	}
}

// TestQuotaWarningFromRateLimitHeaders: a BYOK answer whose rate-limit
// headers show less than 10% left raises byok.quota_warning, at most once
// per key per hour; the answer itself is served as usual.
func TestQuotaWarningFromRateLimitHeaders(t *testing.T) {
	e := newEnv(t, nil)
	q := e.subscribeEvents()
	e.setTier("sara", "premium")
	key := openAIKey(t)
	e.saveKey("sara", "openai", key)
	q.drain()
	e.fake.SetKey(key, fakeprovider.Behavior{Headers: map[string]string{
		"x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "42",
	}})
	for i := 0; i < 3; i++ {
		if r := e.do("POST", "/v1/chat/completions", e.token("sara", ""), string(chatBody("gpt-4o-mini", 10, "x"))); r.Status != 200 || r.Header.Get("X-Byok-Route") != "byok" {
			t.Fatalf("chat: %d %v %s", r.Status, r.Header, r.Body)
		}
	}
	var warnings []received
	for _, m := range q.drain() {
		if m.Type == "byok.quota_warning" && m.Ev.UserID == "sara" {
			warnings = append(warnings, m)
		}
	}
	if len(warnings) != 1 {
		t.Fatalf("%d quota warnings for 3 answers with 0.42%% of requests left, want 1", len(warnings))
	}
	if w := warnings[0].Ev; w.Hint != hintOf(key) || !strings.Contains(w.Reason, "42 of 10000 requests") || !strings.Contains(w.Subject, "rate limit") {
		t.Fatalf("warning %+v", w)
	}
}
