package chat

import (
	"strings"
	"testing"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/jsondec"
)

// A key given twice, at any depth, is refused naming it: providers take the
// last occurrence, so billing on the first would bill another request
// (one canonical request).
func TestDuplicateKeysRefused(t *testing.T) {
	cases := map[string]struct{ body, name string }{
		"model":        {`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"model":"o1-pro"}`, "model"},
		"stream":       {`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"stream":false,"stream":true}`, "stream"},
		"max_tokens":   {`{"model":"gpt-4o-mini","max_tokens":10,"messages":[{"role":"user","content":"x"}],"max_tokens":100000}`, "max_tokens"},
		"deep":         {`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x","content":"y"}]}`, "content"},
		"escaped":      {`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"mod\u0065l":"o1-pro"}`, "model"},
		"nested opts":  {`{"model":"gpt-4o-mini","messages":[{}],"stream_options":{"include_usage":false,"include_usage":true}}`, "include_usage"},
		"case variant": {`{"model":"gpt-4o-mini","max_tokens":10,"messages":[{}],"MAX_TOKENS":100000}`, "MAX_TOKENS"},
	}
	pool := &jsondec.Pool{} // shared by every case: a reused decoder must refuse as a fresh one
	for name, c := range cases {
		for i, parse := range []func(*jsondec.Pool, []byte) (*apiRequest, error){
			parseChatRequest, parseEmbeddingsRequest,
			func(p *jsondec.Pool, b []byte) (*apiRequest, error) { return parseMessagesRequest(p, b, nil) },
		} {
			_, err := parse(pool, []byte(c.body))
			if apperr.CodeOf(err) != apperr.InvalidRequest || !strings.Contains(err.Error(), `"`+c.name+`"`) {
				t.Errorf("%s (parser %d): err %v; want invalid_request naming %q", name, i, err, c.name)
			}
		}
	}
}

// The upstream body is re-encoded from the one parse: unknown members keep
// their raw values, names their order.
func TestCanonicalBodyKeepsUnknownFields(t *testing.T) {
	in := `{ "model" : "anthropic/claude-3-5-haiku-20241022", "max_tokens":10, "messages":[{"role":"user","content":"x\u00e9"}], "x_custom":{"deep":[1,2.50,{"k":"v"}]}, "top_k":5 }`
	r, err := parseMessagesRequest(nil, []byte(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.UpstreamModel = "claude-3-5-haiku-20241022"
	want := `{"model":"claude-3-5-haiku-20241022","max_tokens":10,"messages":[{"role":"user","content":"x\u00e9"}],"x_custom":{"deep":[1,2.50,{"k":"v"}]},"top_k":5}`
	if got := string(r.anthropicBody()); got != want {
		t.Fatalf("anthropicBody:\n got %s\nwant %s", got, want)
	}
}

// n and best_of are read for the reservation.
func TestChoicesParsed(t *testing.T) {
	r, err := parseChatRequest(nil, []byte(`{"model":"gpt-4o","messages":[{}],"n":50,"max_tokens":1000}`))
	if err != nil || r.Choices != 50 || r.MaxTokens != 1000 {
		t.Fatalf("%+v %v", r, err)
	}
	if _, err := parseChatRequest(nil, []byte(`{"model":"gpt-4o","messages":[{}],"n":"5"}`)); apperr.CodeOf(err) != apperr.InvalidRequest {
		t.Fatalf("n string: %v", err)
	}
}
