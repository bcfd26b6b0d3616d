// Package chat serves the AI routes (chat completions, copilot chat) and
// routes each request to the user's own key or to platform credits by the
// admin's routing mode (docs/api.md §8–10).
package chat

import (
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/provider"
)

// ProviderForModel resolves a requested model to its provider and the model
// name sent upstream (shared/provider's registry: an explicit
// "provider/model" prefix wins, else the longest model-name prefix).
func ProviderForModel(model string) (provider.Name, string, error) {
	if model == "" {
		return "", "", apperr.New(apperr.InvalidRequest, "field \"model\" is required")
	}
	if len(model) > 256 {
		return "", "", apperr.New(apperr.InvalidRequest, "field \"model\" is too long")
	}
	return provider.ForModel(model)
}

// servedProvider refuses providers whose routes are not built yet.
func servedProvider(p provider.Name) error {
	if provider.IsSupported(p) {
		return nil
	}
	return apperr.New(apperr.UnsupportedProvider, "provider %s is not supported yet; supported: openai, anthropic, google, mistral, cohere, azure_openai", p)
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
