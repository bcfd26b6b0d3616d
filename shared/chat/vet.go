package chat

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/translate"
	"github.com/tidwall/gjson"
)

// platformKeyHint stands for the platform's own key in anything we relay.
const platformKeyHint = "[platform key]"

// scrubber replaces every key used for a request, and anything that looks
// like a credential, by the key's hint.
type scrubber struct {
	keys []string // plaintext keys used for this request
	hint string   // the hint of the key used for the attempt being vetted
}

func (s scrubber) scrub(text string) string {
	for _, k := range s.keys {
		if k != "" {
			text = strings.ReplaceAll(text, k, s.hint)
		}
	}
	return provider.MaskCredentials(text, s.hint)
}

// scrubberFor returns the scrubber for an attempt with apiKey: it knows
// every key this request used so far and the platform's keys.
func (c *call) scrubberFor(apiKey string) scrubber {
	s := scrubber{keys: append(c.usedKeys, apiKey), hint: platformKeyHint}
	for _, k := range c.x.InternalKeys {
		s.keys = append(s.keys, k)
	}
	if c.key != nil && apiKey != c.x.InternalKeys[c.prov] {
		s.hint = c.key.Hint
	}
	return s
}

// vetError rebuilds an upstream error body for the caller's protocol from
// its type, code and message only, scrubbed.
func (c *call) vetError(status int, body []byte, apiKey string) translate.VettedError {
	return translate.VetError(status, body, c.prov == provider.Anthropic, c.req.Op.anthropicCaller(), c.scrubberFor(apiKey).scrub)
}

// upstreamError is a provider's error answer, rebuilt (never relayed as it
// came).
type upstreamError struct {
	status int
	err    translate.VettedError
}

func (e *upstreamError) Error() string { return "upstream error " + strconv.Itoa(e.status) }

// codeFor names a provider status in our codes when the provider gave none.
func codeFor(status int) string {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "provider_unauthorized"
	case status == http.StatusRequestEntityTooLarge:
		return string(apperr.RequestTooLarge)
	case status == http.StatusTooManyRequests:
		return string(apperr.ProviderRateLimited)
	case status >= 500:
		return string(apperr.ProviderError)
	case status == http.StatusNotFound:
		return string(apperr.NotFound)
	}
	return string(apperr.InvalidRequest)
}

// writeUpstreamError writes a rebuilt provider error in the caller's shape
// (the provider error shapes of docs/openapi.yaml; the request id is in
// X-Request-Id).
func writeUpstreamError(w http.ResponseWriter, op operation, ue *upstreamError) {
	code := ue.err.Code
	if code == "" {
		code = codeFor(ue.status)
	}
	detail := map[string]any{"type": ue.err.Type, "code": code, "message": ue.err.Message}
	body := map[string]any{"error": detail}
	if op.anthropicCaller() {
		body["type"] = "error"
	}
	httpx.WriteJSON(w, ue.status, body)
}

// streamErrorEvent reports whether ev is an upstream error event (Anthropic
// "event: error"; an OpenAI chunk with an "error" member).
func (c *call) streamErrorEvent(typ, data string) bool {
	if c.prov == provider.Anthropic {
		return typ == "error"
	}
	e := gjson.Get(data, "error")
	return e.Exists() && e.Type != gjson.Null
}

// streamErrorData is the caller-protocol error event for a vetted error.
func (c *call) streamErrorData(v translate.VettedError) (event string, data []byte) {
	code := v.Code
	if code == "" {
		code = string(apperr.ProviderError)
	}
	if c.req.Op.anthropicCaller() {
		return "error", mustJSON(map[string]any{"type": "error", "error": map[string]string{"type": v.Type, "message": v.Message}})
	}
	return "", mustJSON(map[string]any{"error": map[string]any{"type": v.Type, "code": code, "message": v.Message}})
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings: cannot fail
	}
	return b
}
