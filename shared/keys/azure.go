package keys

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/provider/azure"
	"github.com/synthstack/byok/shared/provider/schema"
	"github.com/synthstack/byok/shared/store"
)

// MaxDeployments bounds an Azure key's deployments map.
const MaxDeployments = 50

// AzureConfig is what an Azure OpenAI key needs besides the key
// (docs/providers.md, Azure endpoints). Zero for other providers.
type AzureConfig struct {
	Endpoint    string
	APIVersion  string
	Deployments map[string]string
}

func (c AzureConfig) set() (string, bool) {
	switch {
	case c.Endpoint != "":
		return "endpoint", true
	case c.APIVersion != "":
		return "api_version", true
	case c.Deployments != nil:
		return "deployments", true
	}
	return "", false
}

// ParseDeployments reads the "deployments" field: an object mapping model
// names to deployment names, or a list of deployment names (each serving
// the model of its own name). Absent or null is nil.
func ParseDeployments(raw json.RawMessage) (map[string]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	bad := apperr.New(apperr.InvalidRequest, "field \"deployments\" must be an object of model name to deployment name, or a list of deployment names")
	out := map[string]string{}
	switch raw[0] {
	case '{':
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, bad
		}
	case '[':
		var names []string
		if err := json.Unmarshal(raw, &names); err != nil {
			return nil, bad
		}
		for _, n := range names {
			if _, dup := out[n]; dup {
				return nil, apperr.New(apperr.InvalidRequest, "field \"deployments\" lists %q twice", clipName(n))
			}
			out[n] = n
		}
	default:
		return nil, bad
	}
	return out, nil
}

func clipName(s string) string {
	if len(s) > MaxModelLen {
		return s[:MaxModelLen] + "..."
	}
	return s
}

// checkAzure validates and normalises an Azure key's configuration without
// any network call: the endpoint through the guard (https, allowed suffix),
// the api_version's shape (default azure.DefaultAPIVersion) and the
// deployment names.
func (s *Service) checkAzure(c AzureConfig) (AzureConfig, error) {
	if c.Endpoint == "" {
		return c, apperr.New(apperr.InvalidRequest, "field \"endpoint\" is required for azure_openai keys: your resource's https://<resource>.openai.azure.com")
	}
	ep, err := s.guard().CheckEndpoint(c.Endpoint)
	if err != nil {
		return c, apperr.New(apperr.InvalidRequest, "field \"endpoint\" was refused: %s", endpointWhy(err))
	}
	c.Endpoint = ep
	if c.APIVersion == "" {
		c.APIVersion = azure.DefaultAPIVersion
	}
	if azure.CheckAPIVersion(c.APIVersion) != nil {
		return c, apperr.New(apperr.InvalidRequest, "field \"api_version\" must look like 2024-10-21 or 2025-04-01-preview")
	}
	if err := checkDeployments(c.Deployments); err != nil {
		return c, err
	}
	if len(c.Deployments) == 0 {
		c.Deployments = nil
	}
	return c, nil
}

// checkDeployments checks a deployments map: at most MaxDeployments, model
// names as in a model filter but without '*', Azure deployment names.
func checkDeployments(ds map[string]string) error {
	if len(ds) > MaxDeployments {
		return apperr.New(apperr.InvalidRequest, "field \"deployments\" may name at most %d deployments", MaxDeployments)
	}
	for model, d := range ds {
		if err := CheckModels([]string{model}); err != nil || model[len(model)-1] == '*' {
			return apperr.New(apperr.InvalidRequest, "field \"deployments\": model names are 1..%d printable characters without '*'", MaxModelLen)
		}
		if azure.CheckDeployment(d) != nil {
			return apperr.New(apperr.InvalidRequest, "field \"deployments\": %q is not a deployment name (1..64 letters, digits, '-', '_' or '.')", clipName(d))
		}
	}
	return nil
}

// checkAzurePatch checks a PATCH's api_version and deployments: Azure keys
// only, and the same rules as on save.
func checkAzurePatch(p provider.Name, patch store.KeyPatch) error {
	if patch.APIVersion == nil && patch.Deployments == nil {
		return nil
	}
	if p != provider.AzureOpenAI {
		f := "api_version"
		if patch.Deployments != nil {
			f = "deployments"
		}
		return apperr.New(apperr.InvalidRequest, "field %q is only for azure_openai keys", f)
	}
	if patch.APIVersion != nil && azure.CheckAPIVersion(*patch.APIVersion) != nil {
		return apperr.New(apperr.InvalidRequest, "field \"api_version\" must look like 2024-10-21 or 2025-04-01-preview")
	}
	if patch.Deployments != nil {
		return checkDeployments(*patch.Deployments)
	}
	return nil
}

// endpointWhy is the guard's reason without the sentinel's prefix.
func endpointWhy(err error) string {
	s := err.Error()
	if p := azure.ErrEndpoint.Error() + ": "; len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	if errors.Is(err, azure.ErrEndpoint) {
		return "not an allowed Azure endpoint"
	}
	return s
}

func (s *Service) guard() *azure.Guard {
	if s.AzureGuard != nil {
		return s.AzureGuard
	}
	return &azure.Guard{Suffixes: azure.DefaultSuffixes}
}

// Credential is what an adapter needs to call k's provider with the opened
// key: for Azure, the row's endpoint, api_version and deployments (the
// endpoint is bound into the ciphertext, so it is the one the key was saved
// with). Other providers' base URLs come from the registry.
func Credential(k store.KeyRecord, key string) schema.Credential {
	c := schema.Credential{Key: key}
	if k.Provider == string(provider.AzureOpenAI) {
		c.BaseURL, c.APIVersion, c.Deployments = k.Endpoint, k.APIVersion, k.Deployments
	}
	return c
}
