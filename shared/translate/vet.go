package translate

import (
	"encoding/json"
)

// VettedError is an upstream error reduced to what may reach a client:
// its type, code and message, scrubbed, in the caller's protocol's terms.
// Nothing else of the upstream body survives (param, detail, extra fields).
type VettedError struct {
	Type    string
	Code    string // "" when the upstream gave none
	Message string
}

// VetError reads an upstream error body (either protocol's shape, received
// with status; 0 inside a stream) and rebuilds it for a caller speaking
// toAnthropic or OpenAI. scrub is applied to every string kept.
func VetError(status int, body []byte, fromAnthropic, toAnthropic bool, scrub func(string) string) VettedError {
	var in errorIn
	var typ, code, msg string
	if json.Unmarshal(body, &in) == nil && in.Error != nil {
		typ, msg = in.Error.Type, truncate(in.Error.Message)
		if firstByte(in.Error.Code) == '"' {
			_ = json.Unmarshal(in.Error.Code, &code)
		}
	}
	if !safeToken(typ) {
		typ = ""
	}
	if !safeToken(code) {
		code = ""
	}
	if msg == "" {
		msg = genericMessage(status)
	}
	var v VettedError
	switch {
	case toAnthropic && fromAnthropic:
		v = VettedError{Type: typ, Message: msg}
		if v.Type == "" {
			v.Type = anthropicTypeForStatus(status)
		}
	case toAnthropic:
		var parsed anthropicErrorBody
		_ = json.Unmarshal(OpenAIErrorToAnthropic(status, mustMarshal(openAIErrorBody{Error: openAIError{Type: typ, Code: strPtr(code), Message: msg}})), &parsed)
		v = VettedError{Type: parsed.Error.Type, Code: code, Message: msg}
	case fromAnthropic:
		if typ == "" {
			typ = anthropicTypeForStatus(status)
		}
		oType, oCode := openAITypeFor(typ, msg, status)
		v = VettedError{Type: oType, Message: msg}
		if oCode != nil {
			v.Code = *oCode
		}
	default:
		v = VettedError{Type: typ, Code: code, Message: msg}
		if v.Type == "" {
			v.Type, _ = openAITypeFor(anthropicTypeForStatus(status), msg, status)
		}
	}
	if scrub != nil {
		v.Type, v.Code, v.Message = scrub(v.Type), scrub(v.Code), scrub(v.Message)
	}
	return v
}

// safeToken reports whether s looks like an error type or code (short,
// lower-case identifier characters); anything else is not relayed.
func safeToken(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}
