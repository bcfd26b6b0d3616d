package chat

import (
	"testing"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
)

func TestProviderForModel(t *testing.T) {
	cases := map[string]struct {
		p     provider.Name
		model string
	}{
		"gpt-4o":                     {provider.OpenAI, "gpt-4o"},
		"o1-mini":                    {provider.OpenAI, "o1-mini"},
		"o3":                         {provider.OpenAI, "o3"},
		"o4-mini":                    {provider.OpenAI, "o4-mini"},
		"chatgpt-4o-latest":          {provider.OpenAI, "chatgpt-4o-latest"},
		"ft:gpt-4o-mini:org:x:123":   {provider.OpenAI, "ft:gpt-4o-mini:org:x:123"},
		"text-embedding-3-small":     {provider.OpenAI, "text-embedding-3-small"},
		"whisper-1":                  {provider.OpenAI, "whisper-1"},
		"claude-3-5-sonnet-20241022": {provider.Anthropic, "claude-3-5-sonnet-20241022"},
		"gemini-1.5-pro":             {provider.Google, "gemini-1.5-pro"},
		"mistral-large":              {provider.Mistral, "mistral-large"},
		"ministral-8b":               {provider.Mistral, "ministral-8b"},
		"codestral-latest":           {provider.Mistral, "codestral-latest"},
		"open-mistral-nemo":          {provider.Mistral, "open-mistral-nemo"},
		"command-r-plus":             {provider.Cohere, "command-r-plus"},
		"azure/my-deployment":        {provider.AzureOpenAI, "my-deployment"},
		"anthropic/claude-x":         {provider.Anthropic, "claude-x"},
		"openai/claude-lookalike":    {provider.OpenAI, "claude-lookalike"},
	}
	for in, want := range cases {
		p, m, err := ProviderForModel(in)
		if err != nil || p != want.p || m != want.model {
			t.Errorf("ProviderForModel(%q) = %s, %s, %v; want %s, %s", in, p, m, err, want.p, want.model)
		}
	}
	for _, bad := range []string{"", "llama-3", "openai/", "davinci"} {
		if _, _, err := ProviderForModel(bad); err == nil {
			t.Errorf("ProviderForModel(%q) succeeded", bad)
		}
	}
	if _, _, err := ProviderForModel("llama-3"); apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("unknown model code = %s", apperr.CodeOf(err))
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		p      provider.Name
		status int
		body   string
		want   routing.FailureClass
	}{
		{provider.OpenAI, 401, `{}`, routing.FailAuth},
		{provider.OpenAI, 403, `{}`, routing.FailAuth},
		{provider.OpenAI, 402, `{}`, routing.FailBilling},
		{provider.OpenAI, 429, `{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}`, routing.FailBilling},
		{provider.OpenAI, 429, `{"error":{"type":"requests","code":"rate_limit_exceeded"}}`, routing.FailRateLimit},
		{provider.OpenAI, 500, ``, routing.FailUnavailable},
		{provider.OpenAI, 503, ``, routing.FailUnavailable},
		{provider.Anthropic, 529, `{"type":"error","error":{"type":"overloaded_error"}}`, routing.FailUnavailable},
		{provider.Anthropic, 400, `{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API."}}`, routing.FailBilling},
		{provider.Anthropic, 400, `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: field required"}}`, routing.FailRequest},
		{provider.OpenAI, 400, `{}`, routing.FailRequest},
		{provider.OpenAI, 404, `{}`, routing.FailRequest},
		{provider.OpenAI, 413, `{}`, routing.FailRequest},
		{provider.OpenAI, 422, `{}`, routing.FailRequest},
	}
	for _, c := range cases {
		if got := classify(c.p, c.status, []byte(c.body)); got != c.want {
			t.Errorf("classify(%s, %d, %s) = %s, want %s", c.p, c.status, c.body, got, c.want)
		}
	}
}

func TestCircuit(t *testing.T) {
	now := time.Unix(1000, 0)
	c := NewCircuit(60*time.Second, func() time.Time { return now })
	if c.Open("u", "openai") {
		t.Fatal("a new circuit is open")
	}
	c.Failure("u", "openai")
	if !c.Open("u", "openai") || c.Open("u", "anthropic") || c.Open("v", "openai") {
		t.Fatal("the circuit must be open for that user and provider only")
	}
	now = now.Add(59 * time.Second)
	if !c.Open("u", "openai") {
		t.Fatal("closed before 60 s")
	}
	now = now.Add(2 * time.Second)
	if c.Open("u", "openai") {
		t.Fatal("no probe after 60 s")
	}
	if !c.Open("u", "openai") {
		t.Fatal("a second request went through while the probe is in flight")
	}
	c.Failure("u", "openai") // the probe failed: open again
	if !c.Open("u", "openai") {
		t.Fatal("failed probe did not re-open")
	}
	now = now.Add(61 * time.Second)
	if c.Open("u", "openai") {
		t.Fatal("no second probe")
	}
	c.Success("u", "openai")
	if c.Open("u", "openai") || c.Open("u", "openai") {
		t.Fatal("success did not close")
	}
	// A probe that never reports expires: the circuit cannot stay open for good.
	c.Failure("u", "openai")
	now = now.Add(61 * time.Second)
	if c.Open("u", "openai") {
		t.Fatal("no probe")
	}
	if !c.Open("u", "openai") {
		t.Fatal("second request during the probe")
	}
	now = now.Add(61 * time.Second)
	if c.Open("u", "openai") {
		t.Fatal("a probe that never reported held the circuit open")
	}
}

func TestParseChatRequest(t *testing.T) {
	bad := map[string]string{
		"empty":          ``,
		"not json":       `{"model":`,
		"array":          `[]`,
		"no model":       `{"messages":[{"role":"user","content":"x"}]}`,
		"model number":   `{"model":5,"messages":[{"role":"user","content":"x"}]}`,
		"no messages":    `{"model":"gpt-4o"}`,
		"empty messages": `{"model":"gpt-4o","messages":[]}`,
		"stream string":  `{"model":"gpt-4o","messages":[{}],"stream":"yes"}`,
		"max_tokens 0":   `{"model":"gpt-4o","messages":[{}],"max_tokens":0}`,
		"max_tokens 1.5": `{"model":"gpt-4o","messages":[{}],"max_tokens":1.5}`,
	}
	for name, body := range bad {
		if _, err := parseChatRequest(nil, []byte(body)); apperr.CodeOf(err) != apperr.InvalidRequest {
			t.Errorf("%s: err %v, want invalid_request", name, err)
		}
	}
	r, err := parseChatRequest(nil, []byte(`{"model":"openai/gpt-4o","messages":[{"role":"user","content":"x"}],"stream":true,"max_completion_tokens":7,"x_unknown":{"a":1}}`))
	if err != nil || !r.Stream || r.MaxTokens != 7 || r.IncludeUsage {
		t.Fatalf("parse: %+v %v", r, err)
	}
	r.UpstreamModel = "gpt-4o"
	out := r.openAIBody()
	want := `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"stream":true,"max_completion_tokens":7,"x_unknown":{"a":1},"stream_options":{"include_usage":true}}`
	if string(out) != want {
		t.Fatalf("openAIBody:\n got %s\nwant %s", out, want)
	}
}
