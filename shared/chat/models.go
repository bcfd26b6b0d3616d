// Package chat serves the AI routes (chat completions, copilot chat) and
// routes each request to the user's own key or to platform credits by the
// admin's routing mode (SPEC §8–10).
package chat

import (
	"strings"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/provider"
)

// modelPrefixes maps model-name prefixes to providers (SPEC §11).
var modelPrefixes = []struct {
	prefix string
	p      provider.Name
}{
	{"gpt-", provider.OpenAI}, {"o1", provider.OpenAI}, {"o3", provider.OpenAI}, {"o4", provider.OpenAI},
	{"chatgpt-", provider.OpenAI}, {"ft:", provider.OpenAI}, {"text-embedding-", provider.OpenAI}, {"whisper-", provider.OpenAI},
	{"claude-", provider.Anthropic},
	{"gemini-", provider.Google},
	{"mistral-", provider.Mistral}, {"ministral-", provider.Mistral}, {"codestral-", provider.Mistral}, {"open-mistral", provider.Mistral},
	{"command", provider.Cohere},
}

// ProviderForModel resolves a requested model to its provider and the model
// name sent upstream. An explicit "provider/model" prefix wins.
func ProviderForModel(model string) (provider.Name, string, error) {
	if model == "" {
		return "", "", apperr.New(apperr.InvalidRequest, "field \"model\" is required")
	}
	if len(model) > 256 {
		return "", "", apperr.New(apperr.InvalidRequest, "field \"model\" is too long")
	}
	if i := strings.IndexByte(model, '/'); i > 0 {
		name, rest := provider.Name(model[:i]), model[i+1:]
		switch name {
		case provider.OpenAI, provider.Anthropic, provider.Google, provider.Mistral, provider.Cohere:
			if rest == "" {
				return "", "", apperr.New(apperr.InvalidRequest, "model %q names a provider but no model", model)
			}
			return name, rest, nil
		case "azure":
			return provider.AzureOpenAI, rest, nil
		}
	}
	for _, mp := range modelPrefixes {
		if strings.HasPrefix(model, mp.prefix) {
			return mp.p, model, nil
		}
	}
	return "", "", apperr.New(apperr.NotFound, "unknown model %q: use a known model name or a provider/model prefix", clip(model))
}

// servedProvider refuses providers whose routes are not built yet.
func servedProvider(p provider.Name) error {
	if p == provider.OpenAI || p == provider.Anthropic {
		return nil
	}
	return apperr.New(apperr.UnsupportedProvider, "provider %s is not supported yet; supported: openai, anthropic", p)
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
