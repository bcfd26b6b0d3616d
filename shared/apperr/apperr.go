// Package apperr holds byok's one application error type and the single table
// that maps its codes to HTTP statuses and OpenAI-style error types.
//
// Domain code returns *Error values (or wraps them); the HTTP layer turns any
// error into the docs/api.md §12 envelope with Write. Errors that are not *Error are
// reported as 500 "internal" with a generic message; their text is logged by
// the caller, never sent to the client.
package apperr

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a machine-readable error code, part of the public API.
type Code string

// The codes of docs/api.md §12.
const (
	InvalidRequest      Code = "invalid_request"
	InvalidKeyFormat    Code = "invalid_key_format"
	Unauthorized        Code = "unauthorized"
	PaymentRequired     Code = "payment_required"
	Forbidden           Code = "forbidden"
	BYOKNotAvailable    Code = "byok_not_available"
	BYOKRequired        Code = "byok_required"
	BYOKDisabled        Code = "byok_disabled"
	NotFound            Code = "not_found"
	UnsupportedProvider Code = "unsupported_provider"
	MethodNotAllowed    Code = "method_not_allowed"
	Conflict            Code = "conflict"
	RequestTooLarge     Code = "request_too_large"
	RateLimited         Code = "rate_limited"
	ProviderRateLimited Code = "provider_rate_limited"
	ProviderError       Code = "provider_error"
	ServiceUnavailable  Code = "service_unavailable"
	Internal            Code = "internal"
)

type codeInfo struct {
	status int
	typ    string // the OpenAI-style "type" field
}

// table is the one mapping from code to HTTP status and error type.
var table = map[Code]codeInfo{
	InvalidRequest:      {http.StatusBadRequest, "invalid_request_error"},
	InvalidKeyFormat:    {http.StatusBadRequest, "invalid_request_error"},
	Unauthorized:        {http.StatusUnauthorized, "authentication_error"},
	PaymentRequired:     {http.StatusPaymentRequired, "payment_required"},
	Forbidden:           {http.StatusForbidden, "permission_error"},
	BYOKNotAvailable:    {http.StatusForbidden, "permission_error"},
	BYOKRequired:        {http.StatusForbidden, "permission_error"},
	BYOKDisabled:        {http.StatusForbidden, "permission_error"},
	NotFound:            {http.StatusNotFound, "not_found_error"},
	UnsupportedProvider: {http.StatusNotFound, "not_found_error"},
	MethodNotAllowed:    {http.StatusMethodNotAllowed, "invalid_request_error"},
	Conflict:            {http.StatusConflict, "invalid_request_error"},
	RequestTooLarge:     {http.StatusRequestEntityTooLarge, "invalid_request_error"},
	RateLimited:         {http.StatusTooManyRequests, "rate_limit_error"},
	ProviderRateLimited: {http.StatusTooManyRequests, "rate_limit_error"},
	ProviderError:       {http.StatusBadGateway, "api_error"},
	ServiceUnavailable:  {http.StatusServiceUnavailable, "api_error"},
	Internal:            {http.StatusInternalServerError, "api_error"},
}

// Error is byok's application error. Message is safe to show to the client:
// it must never hold a plaintext key, prompt or response text.
type Error struct {
	Code    Code
	Message string
	// RetryAfter, when > 0, is sent as the Retry-After header (seconds).
	RetryAfter int
	// Err is an optional cause, logged but never sent to the client.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an *Error that keeps cause for logs only.
func Wrap(cause error, code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: cause}
}

// CodeOf returns the code of err, or Internal if err is not an *Error.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Is reports whether err carries code.
func Is(err error, code Code) bool { return err != nil && CodeOf(err) == code }

// Status returns the HTTP status for code (500 for an unknown code).
func Status(code Code) int {
	if ci, ok := table[code]; ok {
		return ci.status
	}
	return http.StatusInternalServerError
}

// Type returns the OpenAI-style error type for code.
func Type(code Code) string {
	if ci, ok := table[code]; ok {
		return ci.typ
	}
	return "api_error"
}

// Public returns the code, the client-safe message and Retry-After of err.
// Errors that are not *Error become a generic internal error.
func Public(err error) (code Code, message string, retryAfter int) {
	var e *Error
	if errors.As(err, &e) {
		if e.Code == Internal || table[e.Code].status == 0 {
			return Internal, "internal error", 0
		}
		return e.Code, e.Message, e.RetryAfter
	}
	return Internal, "internal error", 0
}
