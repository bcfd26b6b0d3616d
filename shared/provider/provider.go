// Package provider knows byok's upstream AI providers: their names, the format
// of their API keys, and how to validate a key live (docs/api.md §7, §8, §11).
//
// Nothing in this package ever puts an API key into an error, a log line or a
// Result; only Hint may reveal its last seven characters.
package provider

import (
	"errors"
	"strings"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/provider/schema"
)

// Name is a provider identifier as used in routes and storage.
type Name = schema.Name

// Provider names of docs/api.md §2.
const (
	OpenAI      Name = "openai"
	Anthropic   Name = "anthropic"
	Google      Name = "google"
	Mistral     Name = "mistral"
	Cohere      Name = "cohere"
	AzureOpenAI Name = "azure_openai"
)

// Key length bounds accepted by CheckFormat (bytes).
const (
	MinKeyLen = 20
	MaxKeyLen = 512
)

const (
	hintTail   = 7
	maxEchoLen = 40
)

// Supported returns the providers keys can be stored for, in display order.
// It returns a fresh slice on every call.
func Supported() []Name { return []Name{OpenAI, Anthropic, Google, Mistral, Cohere, AzureOpenAI} }

// All returns every provider with an adapter.
func All() []Name { return []Name{OpenAI, Anthropic, Google, Mistral, Cohere, AzureOpenAI} }

// IsKnown reports whether p has an adapter.
func IsKnown(p Name) bool {
	switch p {
	case OpenAI, Anthropic, Google, Mistral, Cohere, AzureOpenAI:
		return true
	}
	return false
}

// IsSupported reports whether keys can be stored for p.
func IsSupported(p Name) bool { return IsKnown(p) }

func supportedList() string {
	s := Supported()
	parts := make([]string, len(s))
	for i, n := range s {
		parts[i] = string(n)
	}
	return strings.Join(parts, ", ")
}

// Parse returns s as a supported provider name (exact, lower-case match), or an
// *apperr.Error with code UnsupportedProvider naming the supported providers.
func Parse(s string) (Name, error) {
	n := Name(s)
	if IsSupported(n) {
		return n, nil
	}
	if len(s) > 0 && len(s) <= maxEchoLen && printableASCII(s) {
		return "", apperr.New(apperr.UnsupportedProvider,
			"provider %q is not supported; supported providers: %s", s, supportedList())
	}
	return "", apperr.New(apperr.UnsupportedProvider,
		"unsupported provider; supported providers: %s", supportedList())
}

// CheckFormat checks apiKey's shape for provider p without contacting it. It
// returns an *apperr.Error with code InvalidKeyFormat (UnsupportedProvider for
// an unsupported p). The message never contains the key.
func CheckFormat(p Name, apiKey string) error {
	if !IsSupported(p) && !IsKnown(p) {
		_, err := Parse(string(p))
		return err
	}
	if apiKey == "" {
		return apperr.New(apperr.InvalidKeyFormat, "api_key is required")
	}
	if !printableASCII(apiKey) {
		return apperr.New(apperr.InvalidKeyFormat,
			"api_key must not contain whitespace, control or non-ASCII characters")
	}
	if len(apiKey) < MinKeyLen {
		return apperr.New(apperr.InvalidKeyFormat, "api_key is too short to be a %s key", p)
	}
	if len(apiKey) > MaxKeyLen {
		return apperr.New(apperr.InvalidKeyFormat, "api_key is longer than %d characters", MaxKeyLen)
	}
	if a, ok := NewRegistry(Endpoints{}).Adapter(p); ok {
		var fe *schema.FormatError
		if err := a.CheckFormat(apiKey); errors.As(err, &fe) {
			return apperr.New(apperr.InvalidKeyFormat, "%s", fe.Msg)
		} else if err != nil {
			return apperr.New(apperr.InvalidKeyFormat, "api_key has the wrong format for %s", p)
		}
	}
	return nil
}

// Hint returns the displayable form of a key: "sk-..." plus its last 7
// characters. For a value that would not pass CheckFormat's length and
// character rules it returns just "sk-...", so it never reveals more.
func Hint(apiKey string) string {
	if len(apiKey) < MinKeyLen || len(apiKey) > MaxKeyLen || !printableASCII(apiKey) {
		return "sk-..."
	}
	return "sk-..." + apiKey[len(apiKey)-hintTail:]
}

// printableASCII reports whether s holds only visible ASCII (0x21..0x7e).
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}
