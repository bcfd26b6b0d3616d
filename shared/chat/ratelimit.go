package chat

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/synthstack/byok/shared/provider"
)

// rateLimitPairs are the (limit, remaining) headers each provider sends on
// an answer: OpenAI x-ratelimit-*, Anthropic anthropic-ratelimit-*.
var rateLimitPairs = map[provider.Name][][3]string{
	provider.OpenAI: {
		{"x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "requests"},
		{"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "tokens"},
	},
	provider.Anthropic: {
		{"anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining", "requests"},
		{"anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-tokens-remaining", "tokens"},
		{"anthropic-ratelimit-input-tokens-limit", "anthropic-ratelimit-input-tokens-remaining", "input tokens"},
		{"anthropic-ratelimit-output-tokens-limit", "anthropic-ratelimit-output-tokens-remaining", "output tokens"},
	},
}

// RateLimitLowPrefix starts the reason of a byok.quota_warning raised by a
// provider's rate-limit headers (events.Describe words it accordingly).
const RateLimitLowPrefix = "rate limit nearly reached: "

// lowRateLimit returns a reason when the provider's own headers show less
// than 10% of a limit left, or "". Headers that are missing or not whole
// numbers are ignored: they come from upstream.
func lowRateLimit(p provider.Name, h http.Header) string {
	for _, pair := range rateLimitPairs[p] {
		limit, err1 := strconv.ParseInt(h.Get(pair[0]), 10, 64)
		left, err2 := strconv.ParseInt(h.Get(pair[1]), 10, 64)
		if err1 != nil || err2 != nil || limit <= 0 || left < 0 || left > limit {
			continue
		}
		if left*10 < limit {
			return fmt.Sprintf("%s%d of %d %s left in the current window", RateLimitLowPrefix, left, limit, pair[2])
		}
	}
	return ""
}
