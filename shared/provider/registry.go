package provider

import (
	"strings"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/provider/anthropic"
	"github.com/synthstack/byok/shared/provider/azure"
	"github.com/synthstack/byok/shared/provider/cohere"
	"github.com/synthstack/byok/shared/provider/google"
	"github.com/synthstack/byok/shared/provider/mistral"
	"github.com/synthstack/byok/shared/provider/openai"
	"github.com/synthstack/byok/shared/provider/schema"
)

// Adapter is one provider behind the neutral request (shared/provider/schema).
type Adapter = schema.Adapter

// entry is one registry line: a provider's adapter and where its requests go.
type entry struct {
	adapter Adapter
	baseURL string
}

// modelRoutes maps model-name prefixes to providers (docs/providers.md); the
// longest match wins. Read-only: ForModel runs on every request and must not
// allocate.
var modelRoutes = [...]struct {
	prefix string
	p      Name
}{
	{"gpt-", OpenAI}, {"o1", OpenAI}, {"o3", OpenAI}, {"o4", OpenAI}, {"chatgpt-", OpenAI}, {"ft:", OpenAI},
	{"text-embedding-", OpenAI}, {"whisper-", OpenAI},
	{"claude-", Anthropic},
	{"gemini-", Google}, {"gemini-embedding-", Google}, {"text-embedding-004", Google},
	{"mistral-", Mistral}, {"ministral-", Mistral}, {"codestral-", Mistral}, {"open-mistral", Mistral},
	{"pixtral-", Mistral}, {"magistral-", Mistral}, {"devstral-", Mistral},
	{"command", Cohere}, {"embed-english-", Cohere}, {"embed-multilingual-", Cohere}, {"embed-v4", Cohere},
	// azure_openai: only by azure/<deployment>
}

// Registry maps provider names and model names to adapters. It is
// immutable after NewRegistry and safe for concurrent use.
type Registry struct {
	byName map[Name]entry
	order  []Name
}

// NewRegistry builds the registry for ep. Adding a provider is one folder
// under shared/provider, one line here and its prefixes in modelRoutes.
func NewRegistry(ep Endpoints) *Registry {
	ep = ep.withDefaults()
	lines := []entry{
		{openai.Adapter{}, ep.OpenAI},
		{anthropic.Adapter{}, ep.Anthropic},
		{google.Adapter{}, ep.Google},
		{mistral.Adapter{}, ep.Mistral},
		{cohere.Adapter{}, ep.Cohere},
		{azure.Adapter{Guard: &azure.Guard{Suffixes: ep.AzureSuffixes}}, ""}, // the user's endpoint
	}
	r := &Registry{byName: make(map[Name]entry, len(lines))}
	for _, l := range lines {
		n := l.adapter.Name()
		r.byName[n] = l
		r.order = append(r.order, n)
	}
	return r
}

// Names lists every provider with an adapter, in display order.
func (r *Registry) Names() []Name { return append([]Name(nil), r.order...) }

// Adapter returns p's adapter.
func (r *Registry) Adapter(p Name) (Adapter, bool) {
	e, ok := r.byName[p]
	return e.adapter, ok
}

// Credential is what an adapter needs to reach p with key: the configured
// base URL (Azure's endpoint and options come from the key's record instead).
func (r *Registry) Credential(p Name, key string) schema.Credential {
	return schema.Credential{Key: key, BaseURL: r.byName[p].baseURL}
}

// ForModel resolves a requested model to its provider and the model name
// sent upstream: an explicit "provider/model" prefix wins (azure/<deployment>
// names a deployment), otherwise the longest matching model-name prefix.
func (r *Registry) ForModel(model string) (Name, string, error) { return ForModel(model) }

// ForModel is Registry.ForModel without a registry (it needs none).
func ForModel(model string) (Name, string, error) {
	if i := strings.IndexByte(model, '/'); i > 0 {
		name, rest := Name(model[:i]), model[i+1:]
		if name == "azure" {
			name = AzureOpenAI
		}
		if IsKnown(name) {
			if rest == "" {
				return "", "", apperr.New(apperr.InvalidRequest, "model %q names a provider but no model", clipModel(model))
			}
			return name, rest, nil
		}
	}
	best, bestLen := Name(""), 0
	for _, mr := range modelRoutes {
		if len(mr.prefix) > bestLen && strings.HasPrefix(model, mr.prefix) {
			best, bestLen = mr.p, len(mr.prefix)
		}
	}
	if best == "" {
		return "", "", apperr.New(apperr.NotFound, "unknown model %q: use a known model name or a provider/model prefix", clipModel(model))
	}
	return best, model, nil
}

func clipModel(m string) string {
	if len(m) > maxEchoLen || !printableASCII(m) {
		return "(model name not shown)"
	}
	return m
}
