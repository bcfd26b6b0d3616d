package provider

import "regexp"

// credentialLike matches text that looks like a provider credential: OpenAI
// and Anthropic keys (masked ones too), Google keys, bearer tokens.
var credentialLike = regexp.MustCompile(`(?i:bearer)\s+[^\s"',;()]+|sk-[A-Za-z0-9_\-*.]{4,}|AIza[0-9A-Za-z_\-]{4,}`)

// MaskCredentials replaces everything in text that looks like a provider
// credential by hint. Callers replace the keys they know first (exact
// matches); this catches echoes of other or partly masked keys.
func MaskCredentials(text, hint string) string { return credentialLike.ReplaceAllString(text, hint) }
