package app_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/synthstack/byok/shared/fakeprovider"
)

// The new providers' keys and the platform's (the credits route), in each
// provider's format.
const (
	internalGoogleKey  = "AIzaSyINTERNAL000000000000000000000000a"
	internalMistralKey = "INTERNALmistral00000000000000000"
	internalCohereKey  = "INTERNALcohere00000000000000000000000000"
)

func googleKey(t testing.TB) string  { return "AIza" + randomHex(t, 17) + "x" }
func mistralKey(t testing.TB) string { return randomHex(t, 16) }
func cohereKey(t testing.TB) string  { return randomHex(t, 20) }

// newProvidersEnv is newEnv with Google, Mistral and Cohere pointed at the fake.
func newProvidersEnv(t *testing.T) *testEnv {
	var fakeURL string
	e := newEnv(t, func(v map[string]string) {
		fakeURL = strings.TrimSuffix(v["OPENAI_BASE_URL"], "/v1")
		v["GOOGLE_BASE_URL"] = fakeprovider.GoogleBaseURL(fakeURL)
		v["MISTRAL_BASE_URL"] = fakeprovider.MistralBaseURL(fakeURL)
		v["COHERE_BASE_URL"] = fakeprovider.CohereBaseURL(fakeURL)
		v["INTERNAL_GOOGLE_API_KEY"] = internalGoogleKey
		v["INTERNAL_MISTRAL_API_KEY"] = internalMistralKey
		v["INTERNAL_COHERE_API_KEY"] = internalCohereKey
	})
	for _, k := range []string{internalGoogleKey, internalMistralKey, internalCohereKey} {
		e.fake.SetKey(k, fakeprovider.OK())
	}
	return e
}

type newProvider struct {
	name, model, embed, internal string
	key                          func(testing.TB) string
	quota                        fakeprovider.Behavior
}

func newProviders() []newProvider {
	return []newProvider{
		{"google", "gemini-2.5-flash", "gemini-embedding-001", internalGoogleKey, googleKey, fakeprovider.GoogleDailyQuota()},
		{"mistral", "mistral-large-latest", "mistral-embed", internalMistralKey, mistralKey, fakeprovider.MistralUsageLimit()},
		{"cohere", "command-a-03-2025", "embed-v4.0", internalCohereKey, cohereKey, fakeprovider.CohereTrialMonthly()},
	}
}

// The §8 table (docs/providers.md failure classes) for the new providers:
// byok_first with credits, every class: auth and quota and unavailable fall
// back to credits, a rate limit comes back as 429 with Retry-After, a
// request error as it is.
func TestRoutingTableNewProviders(t *testing.T) {
	e := newProvidersEnv(t)
	e.setMode("byok_first")
	n := 0
	for _, p := range newProviders() {
		cases := []struct {
			name     string
			b        fakeprovider.Behavior
			status   int
			route    string
			fallback bool
			internal int
		}{
			{"success", fakeprovider.OK(), 200, "byok", false, 0},
			{"auth 401", fakeprovider.Unauthorized(), 200, "credits", true, 1},
			{"auth 403", fakeprovider.Forbidden(), 200, "credits", true, 1},
			{"quota", p.quota, 200, "credits", true, 1},
			{"unavailable 500", fakeprovider.ServerError(), 200, "credits", true, 1},
			{"unavailable 503", fakeprovider.Behavior{Status: 503}, 200, "credits", true, 1},
			{"connection dropped", fakeprovider.Behavior{DropConn: true}, 200, "credits", true, 1},
			{"rate limit", fakeprovider.RateLimited(), 429, "byok", false, 0},
			{"request 400", fakeprovider.Behavior{Status: 400}, 400, "byok", false, 0},
		}
		if p.name == "google" {
			cases = append(cases, struct {
				name     string
				b        fakeprovider.Behavior
				status   int
				route    string
				fallback bool
				internal int
			}{"auth API_KEY_INVALID", fakeprovider.GoogleKeyInvalid(), 200, "credits", true, 1})
		}
		for _, c := range cases {
			for _, stream := range []bool{false, true} {
				n++
				name := fmt.Sprintf("%s/%s/stream=%v", p.name, c.name, stream)
				user := fmt.Sprintf("np%d", n)
				e.setTier(user, "premium")
				e.grant(user, 1_000_000)
				key := p.key(t)
				e.fake.SetKey(key, fakeprovider.OK())
				e.saveKey(user, p.name, key)
				e.fake.SetKey(key, c.b)
				before, ibefore := e.fake.Calls(key), e.fake.Calls(p.internal)
				r := e.do("POST", "/v1/chat/completions", e.token(user, ""), map[string]any{
					"model": p.model, "stream": stream, "messages": []map[string]string{{"role": "user", "content": "hello"}},
				})
				if r.Status != c.status || r.Header.Get("X-Byok-Route") != c.route || (r.Header.Get("X-Byok-Fallback") != "") != c.fallback ||
					e.fake.Calls(key)-before != 1 || e.fake.Calls(p.internal)-ibefore != c.internal {
					t.Errorf("%s: status %d route %q fallback %q calls user %d internal %d; want %d %s %v 1 %d\n%s", name, r.Status,
						r.Header.Get("X-Byok-Route"), r.Header.Get("X-Byok-Fallback"), e.fake.Calls(key)-before, e.fake.Calls(p.internal)-ibefore,
						c.status, c.route, c.fallback, c.internal, r.Body)
					continue
				}
				if c.name == "rate limit" && r.Header.Get("Retry-After") == "" {
					t.Errorf("%s: no Retry-After", name)
				}
				if c.status == 200 && !stream && !strings.Contains(string(r.Body), `"chat.completion"`) {
					t.Errorf("%s: not a chat completion: %s", name, r.Body)
				}
				if c.status == 200 && stream && !strings.Contains(string(r.Body), "data: [DONE]") {
					t.Errorf("%s: stream without [DONE]: %s", name, r.Body)
				}
			}
		}
	}
	// No key of any provider ever travelled in a URL.
	for _, rec := range e.fake.Requests() {
		for _, k := range e.fake.Keys() {
			if strings.Contains(rec.Path+"?"+rec.RawQuery, k) {
				t.Fatalf("a key in the URL %s?%s", rec.Path, rec.RawQuery)
			}
		}
	}
}

// Both caller protocols reach the new providers; embeddings too; keys can
// be saved and listed; GET /v1/models lists their models.
func TestNewProvidersEndToEnd(t *testing.T) {
	e := newProvidersEnv(t)
	e.setMode("byok_only")
	for i, p := range newProviders() {
		user := fmt.Sprintf("ee%d", i)
		e.setTier(user, "premium")
		key := p.key(t)
		e.saveKey(user, p.name, key)
		e.fake.SetKey(key, fakeprovider.Behavior{ToolCall: true})
		tok := e.token(user, "")
		if st := keysByProvider(t, e.do("GET", "/v1/keys", tok, nil))[p.name]["status"]; st != "valid" {
			t.Errorf("%s: key status %v", p.name, st)
		}
		tools := []map[string]any{{"type": "function", "function": map[string]any{"name": "get_weather",
			"parameters": map[string]any{"type": "object", "properties": map[string]any{"city": map[string]string{"type": "string"}}}}}}
		r := e.do("POST", "/v1/chat/completions", tok, map[string]any{"model": p.model, "tools": tools,
			"messages": []map[string]string{{"role": "user", "content": "weather in Paris?"}}})
		if r.Status != 200 || !strings.Contains(string(r.Body), `"tool_calls"`) || !strings.Contains(string(r.Body), "get_weather") {
			t.Errorf("%s chat+tools: %d %s", p.name, r.Status, r.Body)
		}
		r = e.do("POST", "/v1/messages", tok, map[string]any{"model": p.model, "max_tokens": 100,
			"messages": []map[string]string{{"role": "user", "content": "hello"}}})
		if r.Status != 200 || !strings.Contains(string(r.Body), `"type":"message"`) {
			t.Errorf("%s messages: %d %s", p.name, r.Status, r.Body)
		}
		r = e.do("POST", "/v1/messages", tok, map[string]any{"model": p.model, "max_tokens": 100, "stream": true,
			"messages": []map[string]string{{"role": "user", "content": "hello"}}})
		if r.Status != 200 || !strings.Contains(string(r.Body), "message_stop") {
			t.Errorf("%s messages stream: %d %s", p.name, r.Status, r.Body)
		}
		e.fake.SetKey(key, fakeprovider.OK())
		r = e.do("POST", "/v1/embeddings", tok, map[string]any{"model": p.embed, "input": []string{"a", "b"}})
		if r.Status != 200 || !strings.Contains(string(r.Body), `"embedding"`) {
			t.Errorf("%s embeddings: %d %s", p.name, r.Status, r.Body)
		}
		r = e.do("GET", "/v1/models", tok, nil)
		if !strings.Contains(string(r.Body), `"provider":"`+p.name+`"`) {
			t.Errorf("%s missing from /v1/models: %s", p.name, r.Body)
		}
	}
	if r := e.do("POST", "/v1/chat/completions", e.token("ee2", ""), map[string]any{"model": "command-a-03-2025", "n": 2,
		"messages": []map[string]string{{"role": "user", "content": "hi"}}}); r.Status != 400 || !strings.Contains(string(r.Body), "n other than 1") {
		t.Errorf("n=2 on cohere: %d %s", r.Status, r.Body)
	}
}
