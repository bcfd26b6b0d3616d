package chat

import (
	"net/http"
	"strings"
	"testing"

	"github.com/synthstack/byok/shared/provider"
)

func TestLowRateLimit(t *testing.T) {
	t.Parallel()
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	cases := []struct {
		p    provider.Name
		h    http.Header
		want string
	}{
		{provider.OpenAI, h("x-ratelimit-limit-requests", "10000", "x-ratelimit-remaining-requests", "999"), "999 of 10000 requests"},
		{provider.OpenAI, h("x-ratelimit-limit-requests", "10000", "x-ratelimit-remaining-requests", "1000"), ""},
		{provider.OpenAI, h("x-ratelimit-limit-tokens", "200000", "x-ratelimit-remaining-tokens", "12"), "12 of 200000 tokens"},
		{provider.Anthropic, h("anthropic-ratelimit-requests-limit", "50", "anthropic-ratelimit-requests-remaining", "4"), "4 of 50 requests"},
		{provider.Anthropic, h("anthropic-ratelimit-output-tokens-limit", "8000", "anthropic-ratelimit-output-tokens-remaining", "0"), "0 of 8000 output tokens"},
		{provider.Anthropic, h("x-ratelimit-limit-requests", "100", "x-ratelimit-remaining-requests", "1"), ""}, // not Anthropic's headers
		{provider.OpenAI, h("x-ratelimit-limit-requests", "lots", "x-ratelimit-remaining-requests", "1"), ""},
		{provider.OpenAI, h("x-ratelimit-limit-requests", "100", "x-ratelimit-remaining-requests", "-1"), ""},
		{provider.OpenAI, h("x-ratelimit-limit-requests", "100", "x-ratelimit-remaining-requests", "500"), ""},
		{provider.OpenAI, h("x-ratelimit-limit-requests", "0", "x-ratelimit-remaining-requests", "0"), ""},
		{provider.OpenAI, h(), ""},
	}
	for _, c := range cases {
		got := lowRateLimit(c.p, c.h)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) || (got != "" && !strings.HasPrefix(got, RateLimitLowPrefix)) {
			t.Errorf("%s %v: %q, want %q", c.p, c.h, got, c.want)
		}
	}
}
