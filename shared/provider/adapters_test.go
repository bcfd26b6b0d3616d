package provider_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/provider/schema"
)

func TestNewKeyFormats(t *testing.T) {
	good := map[provider.Name][]string{
		provider.Google:      {googleKey, "AIza" + strings.Repeat("x_-9", 8) + "abc"},
		provider.Mistral:     {mistralKey},
		provider.Cohere:      {cohereKey},
		provider.AzureOpenAI: {azureKey, strings.Repeat("Ab1", 28)},
	}
	bad := map[provider.Name][]string{
		provider.Google:      {"AIza" + strings.Repeat("x", 34), "AIzb" + strings.Repeat("x", 35), "AIza" + strings.Repeat("x", 34) + "!", "sk-" + strings.Repeat("x", 36)},
		provider.Mistral:     {mistralKey + "a", mistralKey[:31] + "-", "sk-" + strings.Repeat("a", 29)},
		provider.Cohere:      {cohereKey[:39], cohereKey[:39] + "_"},
		provider.AzureOpenAI: {"0123456789abcdef0123456789abcdeg", strings.Repeat("Ab1", 28)[:83], azureKey + "0"},
	}
	for p, ks := range good {
		for _, k := range ks {
			if err := provider.CheckFormat(p, k); err != nil {
				t.Errorf("CheckFormat(%s, good key) = %v", p, err)
			}
		}
	}
	for p, ks := range bad {
		for _, k := range ks {
			err := provider.CheckFormat(p, k)
			if !apperr.Is(err, apperr.InvalidKeyFormat) {
				t.Errorf("CheckFormat(%s, %q) = %v, want invalid_key_format", p, k, err)
			} else if strings.Contains(err.Error(), k) {
				t.Errorf("error echoes the key: %v", err)
			}
		}
	}
}

func TestForModel(t *testing.T) {
	reg := provider.NewRegistry(provider.Endpoints{})
	cases := map[string][2]string{
		"gpt-4o": {"openai", "gpt-4o"}, "claude-sonnet-4": {"anthropic", "claude-sonnet-4"},
		"gemini-2.5-pro": {"google", "gemini-2.5-pro"}, "mistral-large-latest": {"mistral", "mistral-large-latest"},
		"ministral-8b-latest": {"mistral", "ministral-8b-latest"}, "codestral-latest": {"mistral", "codestral-latest"},
		"open-mistral-nemo": {"mistral", "open-mistral-nemo"}, "command-a-03-2025": {"cohere", "command-a-03-2025"},
		"azure/prod-4o": {"azure_openai", "prod-4o"}, "azure_openai/prod-4o": {"azure_openai", "prod-4o"},
		"google/gemma-3": {"google", "gemma-3"}, "mistral/pixtral-large": {"mistral", "pixtral-large"},
		"openai/claude-lookalike": {"openai", "claude-lookalike"},
	}
	for m, want := range cases {
		p, model, err := reg.ForModel(m)
		if err != nil || string(p) != want[0] || model != want[1] {
			t.Errorf("ForModel(%q) = %s, %s, %v; want %v", m, p, model, err, want)
		}
	}
	for _, m := range []string{"llama-3", "azure/", "nobody/x", ""} {
		if _, _, err := reg.ForModel(m); err == nil {
			t.Errorf("ForModel(%q) succeeded", m)
		}
	}
}

// A feature the target lacks is a FeatureError naming it, never dropped.
func TestUnsupportedFeatures(t *testing.T) {
	reg := provider.NewRegistry(provider.Endpoints{})
	n3 := func(r *schema.ChatRequest) { r.N = schema.Ptr(3) }
	lp := func(r *schema.ChatRequest) { r.Logprobs = schema.Ptr(true); r.TopLogprobs = schema.Ptr(2) }
	audio := func(r *schema.ChatRequest) { r.Modalities = []string{"text", "audio"} }
	img := func(r *schema.ChatRequest) {
		r.Messages = append(r.Messages, schema.Message{Role: "user", Content: schema.Content{Parts: []schema.Part{
			{Type: "image_url", ImageURL: &schema.ImageURL{URL: "https://example.com/cat.png"}}}}})
	}
	cases := []struct {
		p       provider.Name
		mut     func(*schema.ChatRequest)
		feature string
	}{
		{provider.Cohere, n3, "n other than 1"},
		{provider.Google, lp, "logprobs"},
		{provider.Mistral, lp, "logprobs"},
		{provider.Cohere, lp, "top_logprobs"},
		{provider.Google, audio, "audio"},
		{provider.Mistral, audio, "audio"},
		{provider.AzureOpenAI, audio, "audio"},
		{provider.Google, img, "data: URLs"},
	}
	for _, c := range cases {
		a, _ := reg.Adapter(c.p)
		req := chatReq("m", false, false)
		c.mut(req)
		cred := schema.Credential{Key: "k", BaseURL: "https://x.openai.azure.com", APIVersion: "2024-10-21"}
		_, err := a.ChatRequest(context.Background(), cred, req)
		var fe *schema.FeatureError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), c.feature) {
			t.Errorf("%s: err = %v, want a FeatureError naming %q", c.p, err, c.feature)
		}
	}
	// Gemini takes n up to 8 as candidateCount; Mistral takes n.
	for _, p := range []provider.Name{provider.Google, provider.Mistral} {
		a, _ := reg.Adapter(p)
		req := chatReq("m", false, false)
		n3(req)
		if _, err := a.ChatRequest(context.Background(), schema.Credential{Key: "k"}, req); err != nil {
			t.Errorf("%s n=3: %v", p, err)
		}
	}
}

// Mistral refuses unknown fields (the fake, like Mistral, answers 422):
// whatever the caller sent, the adapter's body holds only documented fields.
func TestMistralSendsOnlyKnownFields(t *testing.T) {
	r := newRig(t)
	r.fp.SetKey(mistralKey, fakeprovider.OK())
	tg := targets[1]
	req := chatReq(tg.model, false, true)
	req.User, req.ReasoningEffort, req.Seed, req.ParallelToolCalls = "u-1", "high", schema.Ptr(int64(7)), schema.Ptr(false)
	req.MaxCompletionTokens = schema.Ptr(50)
	req.Messages = append(req.Messages,
		schema.Message{Role: "assistant", ToolCalls: []schema.ToolCall{{ID: "call_abc123_openai_style", Type: "function", Function: schema.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris"}`}}}},
		schema.Message{Role: "tool", ToolCallID: "call_abc123_openai_style", Content: schema.TextContent(`{"temp":21}`)},
		schema.Message{Role: "developer", Content: schema.TextContent("Answer in French.")})
	resp, body := r.send(t, tg, func(a provider.Adapter, c schema.Credential) (*http.Request, error) {
		return a.ChatRequest(context.Background(), c, req)
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	// And the fake does refuse an unknown field.
	hr, _ := http.NewRequest(http.MethodPost, fakeprovider.MistralBaseURL(r.plain.URL)+"/chat/completions",
		strings.NewReader(`{"model":"mistral-small","messages":[{"role":"user","content":"hi"}],"user":"u-1"}`))
	hr.Header.Set("Authorization", "Bearer "+mistralKey)
	res, err := r.client.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("unknown field: status %d, want 422", res.StatusCode)
	}
}

// Live validation reads each provider's vocabulary (docs/providers.md).
func TestValidateNewProviders(t *testing.T) {
	r := newRig(t)
	v := provider.NewValidator(r.tls.Client(), provider.Endpoints{
		Google: fakeprovider.GoogleBaseURL(r.tls.URL), Mistral: fakeprovider.MistralBaseURL(r.tls.URL),
		Cohere: fakeprovider.CohereBaseURL(r.tls.URL), AzureSuffixes: []string{"127.0.0.1"},
	}, 2*time.Second)
	type c struct {
		p      provider.Name
		b      fakeprovider.Behavior
		status provider.Status
		reason provider.Reason
		detail string
	}
	cases := []c{
		{provider.Google, fakeprovider.OK(), "valid", "", ""},
		{provider.Google, fakeprovider.GoogleKeyInvalid(), "invalid", "unauthorized", ""},
		{provider.Google, fakeprovider.GoogleAPIDisabled(), "invalid", "forbidden", "has not been used"},
		{provider.Google, fakeprovider.GoogleLocationUnsupported(), "invalid", "forbidden", "location is not supported"},
		{provider.Google, fakeprovider.GoogleDailyQuota(), "invalid", "quota_exceeded", ""},
		{provider.Google, fakeprovider.RateLimited(), "unchecked", "rate_limited", ""},
		{provider.Google, fakeprovider.ServerError(), "unchecked", "provider_unavailable", ""},
		{provider.Mistral, fakeprovider.OK(), "valid", "", ""},
		{provider.Mistral, fakeprovider.Unauthorized(), "invalid", "unauthorized", ""},
		{provider.Mistral, fakeprovider.RateLimited(), "unchecked", "rate_limited", ""},
		{provider.Cohere, fakeprovider.OK(), "valid", "", ""},
		{provider.Cohere, fakeprovider.Unauthorized(), "invalid", "unauthorized", ""},
		{provider.Cohere, fakeprovider.Behavior{Body: `{"valid":false}`}, "invalid", "unauthorized", ""},
		{provider.Cohere, fakeprovider.CohereTrialMonthly(), "invalid", "quota_exceeded", ""},
		{provider.AzureOpenAI, fakeprovider.OK(), "valid", "", ""},
		{provider.AzureOpenAI, fakeprovider.Unauthorized(), "invalid", "unauthorized", ""},
		{provider.AzureOpenAI, fakeprovider.AzureDeploymentNotFound(), "invalid", "deployment_not_found", "deployment for this resource does not exist"},
		{provider.AzureOpenAI, fakeprovider.Forbidden(), "invalid", "forbidden", "private endpoint"},
	}
	keys := map[provider.Name]string{provider.Google: googleKey, provider.Mistral: mistralKey, provider.Cohere: cohereKey, provider.AzureOpenAI: azureKey}
	for _, cc := range cases {
		t.Run(string(cc.p)+"/"+string(cc.reason), func(t *testing.T) {
			r.fp.SetKey(keys[cc.p], cc.b)
			cred := schema.Credential{Key: keys[cc.p]}
			if cc.p == provider.AzureOpenAI {
				cred = r.azureCred
			}
			got := v.ValidateCredential(context.Background(), cc.p, cred)
			if got.Status != cc.status || got.Reason != cc.reason || !strings.Contains(got.Detail, cc.detail) {
				t.Fatalf("= %+v, want %s/%s detail ~%q", got, cc.status, cc.reason, cc.detail)
			}
			if strings.Contains(got.Detail, keys[cc.p]) {
				t.Fatal("detail holds the key")
			}
		})
	}
	// Azure without an endpoint, or with one outside the suffixes, is never sent.
	before := r.fp.TotalCalls()
	if got := v.Validate(context.Background(), provider.AzureOpenAI, azureKey); got.Status != "unchecked" {
		t.Errorf("azure without endpoint = %+v", got)
	}
	bad := r.azureCred
	bad.BaseURL = "https://169.254.169.254"
	if got := v.ValidateCredential(context.Background(), provider.AzureOpenAI, bad); got.Status != "unchecked" || !strings.Contains(got.Detail, "refused") {
		t.Errorf("azure metadata endpoint = %+v", got)
	}
	if r.fp.TotalCalls() != before {
		t.Fatal("a refused endpoint reached the fake")
	}
}
