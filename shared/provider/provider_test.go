package provider_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/provider"
)

const (
	oaKey  = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456"
	antKey = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456"
)

func TestSupportedAndParse(t *testing.T) {
	if got := provider.Supported(); !reflect.DeepEqual(got, []provider.Name{provider.OpenAI, provider.Anthropic, provider.Google, provider.Mistral, provider.Cohere, provider.AzureOpenAI}) {
		t.Fatalf("Supported() = %v", got)
	}
	for _, s := range []string{"openai", "anthropic", "google", "mistral", "cohere", "azure_openai"} {
		if n, err := provider.Parse(s); err != nil || string(n) != s {
			t.Errorf("Parse(%q) = %q, %v", s, n, err)
		}
	}
	long := strings.Repeat("x", 41)
	for _, s := range []string{"", "groq", "azure", "OpenAI", "foo\nbar", long} {
		_, err := provider.Parse(s)
		if !apperr.Is(err, apperr.UnsupportedProvider) {
			t.Fatalf("Parse(%q) err = %v", s, err)
		}
		_, msg, _ := apperr.Public(err)
		if !strings.Contains(msg, "openai, anthropic, google, mistral, cohere, azure_openai") {
			t.Errorf("Parse(%q) message %q does not name the supported providers", s, msg)
		}
		if strings.Contains(msg, long) || strings.Contains(msg, "\n") {
			t.Errorf("Parse(%q) message echoes unsafe input: %q", s, msg)
		}
	}
}

func TestCheckFormat(t *testing.T) {
	cases := []struct {
		p   provider.Name
		key string
		ok  bool
	}{
		{provider.OpenAI, oaKey, true},
		{provider.OpenAI, "sk-abcdefghijklmnopq", true}, // exactly 20
		{provider.OpenAI, "sk-abcdefghijklmnop", false}, // 19
		{provider.OpenAI, "", false},
		{provider.OpenAI, antKey, false},
		{provider.OpenAI, "pk-abcdefghijklmnopqrstuvwxyz", false},
		{provider.OpenAI, "sk-abc defghijklmnopqrstuvwxyz", false},
		{provider.OpenAI, " " + oaKey, false},
		{provider.OpenAI, oaKey + "\n", false},
		{provider.OpenAI, "sk-abc\tdefghijklmnopqrstuvwxyz", false},
		{provider.OpenAI, "sk-abc\x00defghijklmnopqrstuvwxyz", false},
		{provider.OpenAI, "sk-abcdéfghijklmnopqrstuvwxyz", false},
		{provider.OpenAI, "sk-" + strings.Repeat("a", 509), true}, // 512
		{provider.OpenAI, "sk-" + strings.Repeat("a", 510), false},
		{provider.Anthropic, antKey, true},
		{provider.Anthropic, oaKey, false},
		{provider.Anthropic, "sk-ant-short", false},
		{provider.Anthropic, antKey + " ", false},
	}
	for _, c := range cases {
		err := provider.CheckFormat(c.p, c.key)
		if c.ok {
			if err != nil {
				t.Errorf("CheckFormat(%s, len %d) = %v, want nil", c.p, len(c.key), err)
			}
			continue
		}
		if !apperr.Is(err, apperr.InvalidKeyFormat) {
			t.Errorf("CheckFormat(%s, %q) = %v, want invalid_key_format", c.p, c.key, err)
			continue
		}
		if c.key != "" && strings.Contains(err.Error(), strings.TrimSpace(c.key)) {
			t.Errorf("CheckFormat error contains the key: %v", err)
		}
	}
	if err := provider.CheckFormat("groq", oaKey); !apperr.Is(err, apperr.UnsupportedProvider) {
		t.Errorf("CheckFormat(groq) = %v, want unsupported_provider", err)
	}
	// Providers with an adapter check their own format.
	if err := provider.CheckFormat(provider.Google, oaKey); !apperr.Is(err, apperr.InvalidKeyFormat) {
		t.Errorf("CheckFormat(google, an OpenAI key) = %v, want invalid_key_format", err)
	}
}

func TestHint(t *testing.T) {
	cases := map[string]string{
		oaKey:                  "sk-...0123456",
		antKey:                 "sk-...0123456",
		"sk-abcdefghijklmnopq": "sk-...klmnopq",
		"sk-short":             "sk-...",
		"":                     "sk-...",
		"sk-abc defghijklmnop": "sk-...",
	}
	for in, want := range cases {
		if got := provider.Hint(in); got != want {
			t.Errorf("Hint(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEndpointsFromEnv(t *testing.T) {
	ep := provider.EndpointsFromEnv(func(string) string { return "" })
	if ep.OpenAI != "https://api.openai.com/v1" || ep.Anthropic != "https://api.anthropic.com" {
		t.Fatalf("defaults = %+v", ep)
	}
	env := map[string]string{"OPENAI_BASE_URL": "http://x/v1/", "ANTHROPIC_BASE_URL": "http://y"}
	ep = provider.EndpointsFromEnv(func(k string) string { return env[k] })
	if ep.OpenAI != "http://x/v1" || ep.Anthropic != "http://y" {
		t.Fatalf("from env = %+v", ep)
	}
	if ep := provider.EndpointsFromEnv(nil); ep.OpenAI == "" {
		t.Fatal("nil getenv gave no defaults")
	}
}

func TestClassifyHTTP(t *testing.T) {
	oaQuota := fakeprovider.OpenAIError("You exceeded your current quota", "insufficient_quota", "insufficient_quota")
	oaQuotaCodeOnly := fakeprovider.OpenAIError("quota", "requests", "insufficient_quota")
	oaRate := fakeprovider.OpenAIError("Rate limit reached", "requests", "rate_limit_exceeded")
	antRate := fakeprovider.AnthropicError("rate_limit_error", "Number of requests has exceeded your rate limit")
	antCredit := fakeprovider.AnthropicError("invalid_request_error", "Your credit balance is too low to access the Anthropic API.")
	antBilling := fakeprovider.AnthropicError("invalid_request_error", "Please check your Billing settings")
	antUsage := fakeprovider.AnthropicError("invalid_request_error", "You have reached your specified API usage limits.")
	antBad := fakeprovider.AnthropicError("invalid_request_error", "max_tokens: field required")
	ant402 := fakeprovider.AnthropicError("billing_error", "billing issue")

	type want struct {
		s provider.Status
		r provider.Reason
	}
	cases := []struct {
		p      provider.Name
		status int
		body   string
		want   want
	}{
		{provider.OpenAI, 200, "", want{provider.StatusValid, ""}},
		{provider.OpenAI, 204, "", want{provider.StatusValid, ""}},
		{provider.OpenAI, 401, "", want{provider.StatusInvalid, provider.ReasonUnauthorized}},
		{provider.OpenAI, 403, "", want{provider.StatusInvalid, provider.ReasonForbidden}},
		{provider.OpenAI, 402, "", want{provider.StatusInvalid, provider.ReasonNoBilling}},
		{provider.OpenAI, 429, oaQuota, want{provider.StatusInvalid, provider.ReasonQuotaExceeded}},
		{provider.OpenAI, 429, oaQuotaCodeOnly, want{provider.StatusInvalid, provider.ReasonQuotaExceeded}},
		{provider.OpenAI, 429, oaRate, want{provider.StatusUnchecked, provider.ReasonRateLimited}},
		{provider.OpenAI, 429, "", want{provider.StatusUnchecked, provider.ReasonRateLimited}},
		{provider.OpenAI, 429, "<html>not json", want{provider.StatusUnchecked, provider.ReasonRateLimited}},
		{provider.OpenAI, 400, antCredit, want{provider.StatusUnchecked, provider.ReasonRequestError}},
		{provider.OpenAI, 404, "", want{provider.StatusUnchecked, provider.ReasonRequestError}},
		{provider.OpenAI, 500, "", want{provider.StatusUnchecked, provider.ReasonUnavailable}},
		{provider.OpenAI, 503, "", want{provider.StatusUnchecked, provider.ReasonUnavailable}},
		{provider.OpenAI, 302, "", want{provider.StatusUnchecked, provider.ReasonUnexpected}},
		{provider.Anthropic, 200, "", want{provider.StatusValid, ""}},
		{provider.Anthropic, 401, fakeprovider.AnthropicError("authentication_error", "invalid x-api-key"), want{provider.StatusInvalid, provider.ReasonUnauthorized}},
		{provider.Anthropic, 403, "", want{provider.StatusInvalid, provider.ReasonForbidden}},
		{provider.Anthropic, 402, ant402, want{provider.StatusInvalid, provider.ReasonNoBilling}},
		{provider.Anthropic, 400, antCredit, want{provider.StatusInvalid, provider.ReasonNoBilling}},
		{provider.Anthropic, 400, antBilling, want{provider.StatusInvalid, provider.ReasonNoBilling}},
		{provider.Anthropic, 400, antUsage, want{provider.StatusInvalid, provider.ReasonQuotaExceeded}},
		{provider.Anthropic, 400, antBad, want{provider.StatusUnchecked, provider.ReasonRequestError}},
		{provider.Anthropic, 413, "", want{provider.StatusUnchecked, provider.ReasonRequestError}},
		{provider.Anthropic, 429, antRate, want{provider.StatusUnchecked, provider.ReasonRateLimited}},
		{provider.Anthropic, 500, "", want{provider.StatusUnchecked, provider.ReasonUnavailable}},
		{provider.Anthropic, 529, fakeprovider.AnthropicError("overloaded_error", "Overloaded"), want{provider.StatusUnchecked, provider.ReasonUnavailable}},
	}
	for _, c := range cases {
		s, r := provider.ClassifyHTTP(c.p, c.status, []byte(c.body))
		if (want{s, r}) != c.want {
			t.Errorf("ClassifyHTTP(%s, %d, %.40q) = %s/%s, want %s/%s", c.p, c.status, c.body, s, r, c.want.s, c.want.r)
		}
	}
}

func newValidator(fp *fakeprovider.Server, timeout time.Duration) *provider.Validator {
	return provider.NewValidator(nil, provider.Endpoints{
		OpenAI: fp.OpenAIBaseURL(), Anthropic: fp.AnthropicBaseURL(),
	}, timeout)
}

func TestValidatePresets(t *testing.T) {
	fp := fakeprovider.New()
	defer fp.Close()
	v := newValidator(fp, 2*time.Second)

	cases := []struct {
		name   string
		b      fakeprovider.Behavior
		p      provider.Name
		want   provider.Result
		noAnth bool
	}{
		{"ok", fakeprovider.OK(), provider.OpenAI, provider.Result{Status: "valid", HTTPStatus: 200}, false},
		{"unauthorized", fakeprovider.Unauthorized(), provider.OpenAI, provider.Result{Status: "invalid", Reason: "unauthorized", HTTPStatus: 401}, false},
		{"forbidden", fakeprovider.Forbidden(), provider.OpenAI, provider.Result{Status: "invalid", Reason: "forbidden", HTTPStatus: 403}, false},
		{"payment", fakeprovider.PaymentRequired(), provider.OpenAI, provider.Result{Status: "invalid", Reason: "no_billing", HTTPStatus: 402}, false},
		{"quota", fakeprovider.InsufficientQuota(), provider.OpenAI, provider.Result{Status: "invalid", Reason: "quota_exceeded", HTTPStatus: 429}, false},
		{"ratelimited", fakeprovider.RateLimited(), provider.OpenAI, provider.Result{Status: "unchecked", Reason: "rate_limited", HTTPStatus: 429}, false},
		{"servererror", fakeprovider.ServerError(), provider.OpenAI, provider.Result{Status: "unchecked", Reason: "provider_unavailable", HTTPStatus: 500}, false},
		{"overloaded", fakeprovider.Overloaded(), provider.Anthropic, provider.Result{Status: "unchecked", Reason: "provider_unavailable", HTTPStatus: 529}, true},
		{"anthropic-nobilling", fakeprovider.AnthropicNoBilling(), provider.Anthropic, provider.Result{Status: "invalid", Reason: "no_billing", HTTPStatus: 400}, true},
	}
	for _, c := range cases {
		ps := []provider.Name{c.p}
		if !c.noAnth {
			ps = append(ps, provider.Anthropic)
		}
		for _, p := range ps {
			t.Run(c.name+"/"+string(p), func(t *testing.T) {
				key := oaKey + "-" + c.name
				if p == provider.Anthropic {
					key = antKey + "-" + c.name
				}
				fp.SetKey(key, c.b)
				before := fp.Calls(key)
				got := v.Validate(context.Background(), p, key)
				if c.want.Reason == "forbidden" && got.Detail == "" {
					t.Errorf("forbidden without the provider's explanation in Detail")
				}
				got.Detail = ""
				if got != c.want {
					t.Fatalf("Validate = %+v, want %+v", got, c.want)
				}
				if fp.Calls(key) != before+1 {
					t.Fatalf("calls for key = %d, want %d", fp.Calls(key), before+1)
				}
			})
		}
	}
}

func TestValidateSendsCredentials(t *testing.T) {
	fp := fakeprovider.New()
	defer fp.Close()
	fp.SetKey(oaKey, fakeprovider.OK())
	fp.SetKey(antKey, fakeprovider.OK())
	v := newValidator(fp, 0)

	if r := v.Validate(context.Background(), provider.OpenAI, oaKey); r.Status != provider.StatusValid {
		t.Fatalf("openai: %+v", r)
	}
	lr := fp.LastRequest()
	if lr.Method != http.MethodGet || lr.Path != "/v1/models" || lr.Header.Get("Authorization") != "Bearer "+oaKey ||
		lr.Protocol != fakeprovider.ProtocolOpenAI || lr.Header.Get("x-api-key") != "" {
		t.Fatalf("openai request = %s %s proto %s", lr.Method, lr.Path, lr.Protocol)
	}

	if r := v.Validate(context.Background(), provider.Anthropic, antKey); r.Status != provider.StatusValid {
		t.Fatalf("anthropic: %+v", r)
	}
	lr = fp.LastRequest()
	if lr.Method != http.MethodGet || lr.Path != "/v1/models" || lr.Header.Get("x-api-key") != antKey ||
		lr.Header.Get("anthropic-version") != "2023-06-01" || lr.Header.Get("Authorization") != "" ||
		lr.Protocol != fakeprovider.ProtocolAnthropic {
		t.Fatalf("anthropic request = %s %s proto %s", lr.Method, lr.Path, lr.Protocol)
	}
	if fp.TotalCalls() != 2 {
		t.Fatalf("total calls = %d", fp.TotalCalls())
	}

	// An unknown key gets the fake's default 401.
	if r := v.Validate(context.Background(), provider.OpenAI, "sk-unknownunknownunknown"); r.Reason != provider.ReasonUnauthorized {
		t.Fatalf("unknown key: %+v", r)
	}
	// A malformed key is refused without a call.
	before := fp.TotalCalls()
	if r := v.Validate(context.Background(), provider.OpenAI, antKey); r.Status != provider.StatusInvalid || r.Reason != provider.ReasonInvalidFormat {
		t.Fatalf("malformed key: %+v", r)
	}
	if fp.TotalCalls() != before {
		t.Fatal("malformed key was sent upstream")
	}
}

func TestValidateFailures(t *testing.T) {
	fp := fakeprovider.New()
	defer fp.Close()

	fp.SetKey(oaKey, fakeprovider.Behavior{Stall: true})
	start := time.Now()
	r := newValidator(fp, 150*time.Millisecond).Validate(context.Background(), provider.OpenAI, oaKey)
	if r.Status != provider.StatusUnchecked || r.Reason != provider.ReasonUnreachable || r.HTTPStatus != 0 ||
		!strings.Contains(r.Detail, "network failed, not the key") || !strings.Contains(r.Detail, "timeout") {
		t.Fatalf("stall: %+v", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("stall took %v", d)
	}

	fp.SetKey(antKey, fakeprovider.Behavior{DropConn: true})
	r = newValidator(fp, time.Second).Validate(context.Background(), provider.Anthropic, antKey)
	if r.Status != provider.StatusUnchecked || r.Reason != provider.ReasonUnreachable || !strings.Contains(r.Detail, "network failed") {
		t.Fatalf("dropconn: %+v", r)
	}

	// Caller cancellation is not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r = newValidator(fp, time.Second).Validate(ctx, provider.OpenAI, oaKey)
	if r.Status != provider.StatusUnchecked || r.Reason != provider.ReasonCanceled {
		t.Fatalf("canceled: %+v", r)
	}

	v := newValidator(fp, time.Second)
	fp.Close()
	for _, p := range []provider.Name{provider.OpenAI, provider.Anthropic} {
		key := oaKey
		if p == provider.Anthropic {
			key = antKey
		}
		r = v.Validate(context.Background(), p, key)
		if r.Status != provider.StatusUnchecked || r.Reason != provider.ReasonUnreachable || r.Detail != "the network failed, not the key: connection refused" {
			t.Fatalf("closed server %s: %+v", p, r)
		}
	}
}

func TestValidateDoesNotFollowRedirects(t *testing.T) {
	target := fakeprovider.New()
	defer target.Close()
	target.SetDefault(fakeprovider.OK())
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL()+"/v1/models", http.StatusFound)
	}))
	defer redir.Close()

	v := provider.NewValidator(nil, provider.Endpoints{OpenAI: redir.URL + "/v1", Anthropic: redir.URL}, time.Second)
	for _, c := range []struct {
		p   provider.Name
		key string
	}{{provider.OpenAI, oaKey}, {provider.Anthropic, antKey}} {
		r := v.Validate(context.Background(), c.p, c.key)
		if r.Status != provider.StatusUnchecked || r.Reason != provider.ReasonUnexpected || r.HTTPStatus != http.StatusFound {
			t.Fatalf("%s redirect: %+v", c.p, r)
		}
	}
	if target.TotalCalls() != 0 {
		t.Fatal("validator followed a redirect and sent the key on")
	}
}

// A provider's explanation is stored and shown as the key's detail: it must
// never carry the key (echoed whole, or masked) and stays short.
func TestValidationDetailHidesKeys(t *testing.T) {
	fp := fakeprovider.New()
	defer fp.Close()
	long := strings.Repeat("x", 3000)
	for _, tc := range []struct {
		p   provider.Name
		key string
	}{{provider.OpenAI, oaKey}, {provider.Anthropic, antKey}} {
		msg := "Project access denied for key " + tc.key + " (also sk-proj-ab12****wxyz, Bearer " + tc.key + ") " + long
		body := `{"error":{"type":"permission_error","code":"forbidden","message":"` + msg + `"}}`
		if tc.p == provider.Anthropic {
			body = `{"type":"error","error":{"type":"permission_error","message":"` + msg + `"}}`
		}
		fp.SetKey(tc.key, fakeprovider.Behavior{Status: 403, Body: body})
		r := newValidator(fp, time.Second).Validate(context.Background(), tc.p, tc.key)
		if r.Reason != provider.ReasonForbidden || r.Detail == "" {
			t.Fatalf("%s: %+v", tc.p, r)
		}
		if strings.Contains(r.Detail, tc.key) || strings.Contains(r.Detail, "sk-proj-ab12") || strings.Contains(r.Detail, tc.key[len(tc.key)-12:]) {
			t.Errorf("%s: detail carries a key: %q", tc.p, r.Detail[:min(len(r.Detail), 200)])
		}
		if len(r.Detail) > 510 {
			t.Errorf("%s: detail is %d bytes long", tc.p, len(r.Detail))
		}
	}
}

// The credential pattern masks keys and bearer tokens, not ordinary words.
func TestMaskCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"a task-based, risk-free plan":              "a task-based, risk-free plan",
		"use the Bearer scheme":                     "use the Bearer scheme",
		"key sk-proj-ab12****wxyz was rejected":     "key [h] was rejected",
		"Authorization: Bearer sk-abcdefghijklmnop": "Authorization: [h]",
		"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig":       "[h]",
		"google AIzaSyA-1234567890 denied":          "google [h] denied",
	} {
		if got := provider.MaskCredentials(in, "[h]"); got != want {
			t.Errorf("MaskCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}
