package translate

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

type anthropicError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

type anthropicErrorBody struct {
	Type  string         `json:"type"`
	Error anthropicError `json:"error"`
}

type openAIError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

type openAIErrorBody struct {
	Error openAIError `json:"error"`
}

// errorIn reads either error shape: both put "type" and "message" under
// "error"; OpenAI adds "code", which may be a string or a number.
type errorIn struct {
	Error *struct {
		Type    string          `json:"type"`
		Message string          `json:"message"`
		Code    json.RawMessage `json:"code"`
	} `json:"error"`
}

const maxErrorMessage = 4096

// AnthropicErrorToOpenAI translates an Anthropic error body (received with
// HTTP status) into an OpenAI error body {"error":{"message","type","param",
// "code"}}. The Anthropic error type picks the OpenAI type and code
// (authentication_error → invalid_api_key, rate_limit_error →
// rate_limit_exceeded, billing_error → insufficient_quota, a too-long prompt
// → context_length_exceeded, …). A body that is not an error object gets a
// generic message naming the status, never the body.
func AnthropicErrorToOpenAI(status int, body []byte) []byte {
	typ, msg := readError(body)
	if typ == "" {
		typ = anthropicTypeForStatus(status)
	}
	if msg == "" {
		msg = genericMessage(status)
	}
	oType, code := openAITypeFor(typ, msg, status)
	return mustMarshal(openAIErrorBody{Error: openAIError{Message: msg, Type: oType, Code: code}})
}

// OpenAIErrorToAnthropic translates an OpenAI error body (received with HTTP
// status) into an Anthropic error body {"type":"error","error":{"type",
// "message"}}. The type comes from the OpenAI code where it is telling
// (invalid_api_key, insufficient_quota, rate_limit_exceeded), else from status.
func OpenAIErrorToAnthropic(status int, body []byte) []byte {
	var in errorIn
	var typ, code, msg string
	if json.Unmarshal(body, &in) == nil && in.Error != nil {
		typ, msg = in.Error.Type, truncate(in.Error.Message)
		if firstByte(in.Error.Code) == '"' {
			_ = json.Unmarshal(in.Error.Code, &code)
		}
	}
	var aType string
	switch {
	case code == "invalid_api_key":
		aType = "authentication_error"
	case code == "insufficient_quota" || typ == "insufficient_quota":
		aType = "billing_error"
	case code == "rate_limit_exceeded":
		aType = "rate_limit_error"
	case code == "context_length_exceeded":
		aType = "invalid_request_error"
	case status == 0: // inside a stream: no status, go by the type
		switch typ {
		case "invalid_request_error":
			aType = "invalid_request_error"
		case "requests", "tokens", "rate_limit_error":
			aType = "rate_limit_error"
		default:
			aType = "api_error"
		}
	default:
		aType = anthropicTypeForStatus(status)
	}
	if msg == "" {
		msg = genericMessage(status)
	}
	return mustMarshal(anthropicErrorBody{Type: "error", Error: anthropicError{Type: aType, Message: msg}})
}

func readError(body []byte) (typ, msg string) {
	var in errorIn
	if json.Unmarshal(body, &in) != nil || in.Error == nil {
		return "", ""
	}
	return in.Error.Type, truncate(in.Error.Message)
}

func truncate(s string) string {
	if len(s) <= maxErrorMessage {
		return s
	}
	cut := maxErrorMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func genericMessage(status int) string {
	if status <= 0 {
		return "upstream provider error"
	}
	return fmt.Sprintf("upstream provider error (HTTP %d)", status)
}

func anthropicTypeForStatus(status int) string {
	switch status {
	case 400:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 402:
		return "billing_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 503, 529:
		return "overloaded_error"
	case 504:
		return "timeout_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

func strPtr(s string) *string { return &s }

// openAITypeFor maps an Anthropic error type to an OpenAI error type and code.
func openAITypeFor(anthType, msg string, status int) (string, *string) {
	switch anthType {
	case "invalid_request_error":
		if strings.Contains(msg, "prompt is too long") {
			return "invalid_request_error", strPtr("context_length_exceeded")
		}
		return "invalid_request_error", nil
	case "authentication_error":
		return "invalid_request_error", strPtr("invalid_api_key")
	case "permission_error":
		return "invalid_request_error", strPtr("permission_denied")
	case "not_found_error":
		return "invalid_request_error", strPtr("not_found")
	case "request_too_large":
		return "invalid_request_error", strPtr("request_too_large")
	case "rate_limit_error":
		return "rate_limit_error", strPtr("rate_limit_exceeded")
	case "billing_error":
		return "insufficient_quota", strPtr("insufficient_quota")
	case "overloaded_error":
		return "server_error", strPtr("overloaded")
	case "timeout_error":
		return "server_error", strPtr("timeout")
	case "api_error":
		return "server_error", nil
	}
	if status >= 500 || status == 0 {
		return "server_error", nil
	}
	return "invalid_request_error", nil
}
