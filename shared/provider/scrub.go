package provider

import "regexp"

// credentialLike matches text that looks like a provider credential: OpenAI
// and Anthropic keys (masked ones too), Google keys, bearer tokens.
// Each starts at a word boundary and a bearer value must look like a token,
// so ordinary words ("task-based", "the Bearer scheme") stay as they are.
var credentialLike = regexp.MustCompile(`(?i:\bbearer)\s+[A-Za-z0-9._~+/=*\-]{12,}|\bsk-[A-Za-z0-9_\-*.]{4,}|\bAIza[0-9A-Za-z_\-]{4,}`)

// MaskCredentials replaces everything in text that looks like a provider
// credential by hint. Callers replace the keys they know first (exact
// matches); this catches echoes of other or partly masked keys.
func MaskCredentials(text, hint string) string { return credentialLike.ReplaceAllString(text, hint) }
