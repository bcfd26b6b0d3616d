// Package translate converts between the OpenAI Chat Completions and the
// Anthropic Messages wire formats (docs/api.md §11): requests, responses, streaming
// events and error bodies, in both directions.
//
// Every function is pure (no I/O, no package-level mutable state), except that
// MessagesToChatResponse reads the clock for "created"; MessagesToChatResponseAt
// takes it as a parameter. The stream
// translators hold the state of one stream and are not safe for concurrent use.
//
// Errors returned for a client's request carry a client-safe message (the
// caller maps them to 400 invalid_request); they name fields and indexes, never
// message content.
package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// StreamError is an error reported by the upstream inside a stream (an
// Anthropic "error" event, or an OpenAI chunk with an "error" member).
type StreamError struct {
	Type    string // the upstream's error type, e.g. "overloaded_error"
	Message string // the upstream's message
}

func (e *StreamError) Error() string {
	return "upstream stream error: " + e.Type + ": " + e.Message
}

// OpenAIBody returns the error as an OpenAI error object, the payload an
// OpenAI-format stream carries as `data: {"error": ...}`.
func (e *StreamError) OpenAIBody() []byte {
	t, code := openAITypeFor(e.Type, e.Message, 0)
	return mustMarshal(openAIErrorBody{Error: openAIError{Message: e.Message, Type: t, Code: code}})
}

// AnthropicBody returns the error as the data of an Anthropic "error" event.
func (e *StreamError) AnthropicBody() []byte {
	return mustMarshal(anthropicErrorBody{Type: "error", Error: anthropicError{Type: e.Type, Message: e.Message}})
}

// marshal encodes v without HTML escaping and without a trailing newline.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return b[:len(b)-1], nil
}

// mustMarshal is marshal for values built entirely by this package (valid by
// construction: strings, numbers and RawMessages that were already parsed).
func mustMarshal(v any) []byte {
	b, err := marshal(v)
	if err != nil {
		panic("translate: marshal of internal value: " + err.Error())
	}
	return b
}

// decodeError turns a json decoding error into a client-safe error: it names
// the field from our own struct tags, never a value from the body.
func decodeError(what string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Errorf("invalid %s: field %q has the wrong type", what, te.Field)
		}
		return fmt.Errorf("invalid %s: expected a JSON object", what)
	}
	return fmt.Errorf("invalid %s: not valid JSON", what)
}

// isNull reports whether a raw value is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// firstByte returns the first non-space byte of raw, or 0.
func firstByte(raw json.RawMessage) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// emptySchema is the input schema of a tool declared without parameters.
func emptySchema() json.RawMessage { return json.RawMessage(`{"type":"object","properties":{}}`) }

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD; U+2028 and U+2029 are escaped; HTML characters are not.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, `\u202`...)
			b = append(b, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// estimateTokens is the output-token estimate for a stream cut before the
// upstream reported its final usage: about four bytes of text per token.
func estimateTokens(deliveredBytes int64) int64 { return (deliveredBytes + 3) / 4 }

// finishReasonFor maps an Anthropic stop_reason to an OpenAI finish_reason.
func finishReasonFor(stopReason string) string {
	switch stopReason {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	default: // end_turn, stop_sequence, pause_turn, unknown, absent
		return "stop"
	}
}

// stopReasonFor maps an OpenAI finish_reason to an Anthropic stop_reason.
func stopReasonFor(finishReason string) string {
	switch finishReason {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	default: // stop, unknown, absent
		return "end_turn"
	}
}

// isIdent reports whether s is a short lower-case identifier, safe to echo.
func isIdent(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func quoteIdent(s string) string {
	if isIdent(s) {
		return strconv.Quote(s)
	}
	return "(unrecognised)"
}
