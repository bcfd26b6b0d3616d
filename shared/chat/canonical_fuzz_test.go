package chat

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/credits"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/jsondec"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/translate"
)

// lastWins is what a provider reads: encoding/json takes the last of two
// keys (and matches names case-insensitively).
type lastWins struct {
	Model               string   `json:"model"`
	Stream              *bool    `json:"stream"`
	MaxTokens           *float64 `json:"max_tokens"`
	MaxCompletionTokens *float64 `json:"max_completion_tokens"`
	N                   *float64 `json:"n"`
	BestOf              *float64 `json:"best_of"`
}

// FuzzCanonicalRequest checks "what we bill, route and log equals what the
// upstream receives": each body is parsed as an OpenAI chat and as an
// Anthropic Messages request; an accepted one is sent to the fake provider
// (the real wire, both protocols, translated or passed through), and what
// the fake received, decoded last-wins, must equal what we recorded.
func FuzzCanonicalRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"stream":true,"max_tokens":5,"n":2}`,
		`{"model":"claude-3-5-haiku-20241022","max_tokens":7,"messages":[{"role":"user","content":"x"}]}`,
		`{"model":"anthropic/claude-3-5-haiku-20241022","max_completion_tokens":9,"messages":[{"role":"user","content":"x"}],"stream":false}`,
		`{"model":"openai/gpt-4o","max_tokens":3,"messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":false},"stream":true}`,
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"model":"o1-pro"}`,
		`{"model":"gpt-4o-mini","max_tokens":1,"messages":[{}],"MAX_TOKENS":100000}`,
		`{"model":"gpt-4o-mini","max_tokens":1e1,"best_of":3.0,"messages":[{"role":"user","content":"x"}]}`,
	} {
		f.Add([]byte(s))
	}
	fake := fakeprovider.New()
	f.Cleanup(fake.Close)
	const key = "sk-proj-fuzzkey0123456789abcdef0123"
	fake.SetKey(key, fakeprovider.Behavior{Chunks: 1})
	x := &Executor{HTTP: fake.Client(), Decoders: &jsondec.Pool{}, Prices: credits.DefaultPrices(),
		Endpoints: provider.Endpoints{OpenAI: fake.OpenAIBaseURL(), Anthropic: fake.AnthropicBaseURL()}}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, parse := range []func(*jsondec.Pool, []byte) (*apiRequest, error){parseChatRequest,
			func(p *jsondec.Pool, b []byte) (*apiRequest, error) { return parseMessagesRequest(p, b, http.Header{}) }} {
			req, err := parse(x.Decoders, body)
			if err != nil {
				continue
			}
			prov, up, err := ProviderForModel(req.Model)
			if err != nil || !opAllows(req.Op, prov) {
				continue
			}
			req.UpstreamModel = up
			c := &call{x: x, w: httptest.NewRecorder(), r: httptest.NewRequest("POST", "/", nil), start: time.Now(),
				req: req, prov: prov, key: &store.KeyRecord{Hint: "sk-...0123"}}
			before := fake.TotalCalls()
			out := c.attempt(context.Background(), key)
			if fake.TotalCalls() == before {
				continue // refused before the upstream (e.g. a feature the target lacks)
			}
			var got lastWins
			if err := json.Unmarshal(fake.LastRequest().Body, &got); err != nil {
				t.Fatalf("upstream body is not JSON: %v", err)
			}
			rec := c.record("byok", req.UpstreamModel, out)
			if got.Model != req.UpstreamModel || rec.Model != got.Model {
				t.Fatalf("model: upstream %q, routed %q, logged %q", got.Model, req.UpstreamModel, rec.Model)
			}
			if s := got.Stream != nil && *got.Stream; s != req.Stream || rec.Stream != s {
				t.Fatalf("stream: upstream %v, billed %v, logged %v", s, req.Stream, rec.Stream)
			}
			cap := max(num(got.MaxTokens), num(got.MaxCompletionTokens))
			if req.MaxTokens > 0 && cap != req.MaxTokens || req.MaxTokens == 0 && cap != 0 && cap != translate.DefaultMaxTokens {
				t.Fatalf("output cap: upstream %d, billed %d", cap, req.MaxTokens)
			}
			if n := max(1, num(got.N), num(got.BestOf)); n != req.Choices {
				t.Fatalf("choices: upstream %d, billed %d", n, req.Choices)
			}
		}
	})
}

func num(p *float64) int64 {
	if p == nil {
		return 0
	}
	return int64(*p)
}
