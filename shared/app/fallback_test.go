package app_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/synthstack/byok/shared/fakeprovider"
)

// A streamed request falls back before its first byte, never after; and
// after an `unavailable` failure the circuit sends the next request straight
// to credits.
func TestStreamFallbackAndCircuit(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	e.grant("alice", 10_000_000)
	key := openAIKey(t)
	e.saveKey("alice", "openai", key)
	tok := e.token("alice", "")
	body := map[string]any{"model": "gpt-4o-mini", "stream": true, "messages": []map[string]string{{"role": "user", "content": "x"}}}

	// 1. BYOK fails before any byte: the stream comes from credits.
	e.fake.SetKey(key, fakeprovider.ServerError())
	resp := e.streamReq(context.Background(), tok, body)
	all, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Byok-Route") != "credits" || resp.Header.Get("X-Byok-Fallback") != "provider_unavailable" ||
		!strings.Contains(string(all), "[DONE]") {
		t.Fatalf("fallback stream: %d %v %s", resp.StatusCode, resp.Header, all)
	}
	if e.fake.Calls(key) != 2 || e.fake.Calls(internalOpenAIKey) != 1 { // save + attempt; one credits call
		t.Fatalf("calls: user %d internal %d", e.fake.Calls(key), e.fake.Calls(internalOpenAIKey))
	}

	// 2. The circuit is open now: the next request goes straight to credits.
	e.fake.SetKey(key, fakeprovider.OK())
	r := e.do("POST", "/v1/chat/completions", tok, string(chatBody("gpt-4o-mini", 10, "x")))
	if r.Status != 200 || r.Header.Get("X-Byok-Route") != "credits" || r.Header.Get("X-Byok-Fallback") != "circuit_open" {
		t.Fatalf("circuit: %d %v", r.Status, r.Header)
	}
	if e.fake.Calls(key) != 2 {
		t.Fatal("the user's key was tried while the circuit was open")
	}

	// 3. A stream cut after its first byte does not fall back.
	e.setTier("bob", "premium")
	e.grant("bob", 10_000_000)
	bkey := openAIKey(t)
	e.saveKey("bob", "openai", bkey)
	e.fake.SetKey(bkey, fakeprovider.Behavior{Chunks: 4, CutAfter: 1})
	before := e.fake.Calls(internalOpenAIKey)
	resp = e.streamReq(context.Background(), e.token("bob", ""), body)
	all, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Byok-Route") != "byok" || strings.Contains(string(all), "[DONE]") {
		t.Fatalf("cut stream: %d %v %s", resp.StatusCode, resp.Header, all)
	}
	if e.fake.Calls(internalOpenAIKey) != before {
		t.Fatal("a stream fell back to credits after its first byte")
	}
}

// An upstream that goes silent mid-stream is cut after UPSTREAM_IDLE_TIMEOUT:
// the client's stream ends, the usage row says cut, and on the credits route
// only what was delivered is charged.
func TestStalledStreamIsCut(t *testing.T) {
	e := newEnv(t, func(v map[string]string) { v["UPSTREAM_IDLE_TIMEOUT"] = "300ms" })
	e.setTier("alice", "premium")
	key := openAIKey(t)
	e.saveKey("alice", "openai", key)
	e.fake.SetKey(key, fakeprovider.Behavior{Chunks: 5, FirstChunkThenWait: time.Hour})
	body := map[string]any{"model": "gpt-4o-mini", "stream": true, "messages": []map[string]string{{"role": "user", "content": "x"}}}
	resp := e.streamReq(context.Background(), e.token("alice", ""), body)
	all, _ := io.ReadAll(resp.Body) // returns once the gateway cuts the stalled upstream
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Contains(string(all), "[DONE]") {
		t.Fatalf("stalled stream: %d %s", resp.StatusCode, all)
	}
	rows := e.usageRows("alice")
	if len(rows) != 1 {
		t.Fatalf("%d usage rows", len(rows))
	}
	if c, _ := rows[0]["cut"].(*types.AttributeValueMemberBOOL); c == nil || !c.Value {
		t.Fatalf("stalled stream not recorded as cut: %v", rows[0])
	}
	waitFor(t, "the upstream call to be cancelled", func() bool { return e.fake.Cancelled() > 0 })
}

// docs/api.md §7: a downgrade below premium keeps the key (encrypted) but BYOK stops
// being used; an upgrade re-enables it.
func TestDowngradeKeepsKeysUpgradeReenables(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("dana", "premium")
	e.grant("dana", 1_000_000)
	key := openAIKey(t)
	e.saveKey("dana", "openai", key)
	tok := e.token("dana", "")
	body := string(chatBody("gpt-4o-mini", 10, "x"))
	route := func() string {
		t.Helper()
		r := e.do("POST", "/v1/chat/completions", tok, body)
		if r.Status != 200 {
			t.Fatalf("chat: %d %s", r.Status, r.Body)
		}
		return r.Header.Get("X-Byok-Route")
	}
	if got := route(); got != "byok" {
		t.Fatalf("premium: route %s", got)
	}
	e.setTier("dana", "starter")
	if got := route(); got != "credits" {
		t.Fatalf("after downgrade: route %s, want credits", got)
	}
	if e.keyItem("dana", "openai") == nil {
		t.Fatal("downgrade deleted the key")
	}
	ks := keysByProvider(t, e.do("GET", "/v1/keys", tok, nil))
	if ks["openai"]["configured"] != true || e.do("GET", "/v1/keys", tok, nil).json(t)["routing"].(map[string]any)["byok_eligible"] != false {
		t.Fatalf("after downgrade: %v", ks["openai"])
	}
	e.setTier("dana", "lifetime")
	if got := route(); got != "byok" {
		t.Fatalf("after upgrade: route %s, want byok", got)
	}
}
