// Package schema is the neutral middle of byok's provider adapters: the OpenAI
// Chat Completions and Embeddings shapes as typed Go values, the verdicts an
// adapter gives on a provider's answers, and the Adapter interface each
// provider package implements (docs/providers.md).
//
// It imports nothing of ours, so every provider package (and the registry in
// shared/provider) can depend on it without cycles.
package schema

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Name is a provider identifier as used in routes and storage.
type Name string

// Status is a key's validation status.
type Status string

const (
	StatusValid     Status = "valid"
	StatusInvalid   Status = "invalid"
	StatusUnchecked Status = "unchecked"
)

// Reason qualifies a Status (see shared/provider for the full list).
type Reason string

const (
	ReasonNone               Reason = ""
	ReasonUnauthorized       Reason = "unauthorized"
	ReasonNoBilling          Reason = "no_billing"
	ReasonQuotaExceeded      Reason = "quota_exceeded"
	ReasonForbidden          Reason = "forbidden"
	ReasonDeploymentNotFound Reason = "deployment_not_found"
	ReasonUnavailable        Reason = "provider_unavailable"
	ReasonRateLimited        Reason = "rate_limited"
	ReasonRequestError       Reason = "request_error"
	ReasonUnexpected         Reason = "unexpected_status"
)

// Class is a failure class of a BYOK call; the values equal
// shared/routing.FailureClass so callers convert with a plain conversion.
type Class string

const (
	ClassNone        Class = ""
	ClassAuth        Class = "auth"        // fallback class
	ClassBilling     Class = "billing"     // fallback class (quota, no credit)
	ClassUnavailable Class = "unavailable" // fallback class
	ClassRateLimit   Class = "rate_limit"  // never falls back; Retry-After relayed
	ClassRequest     Class = "request"     // never falls back; returned as it is
)

// Verdict is how an adapter reads a provider's answer: the key's status and
// reason, the failure class of a call, and the provider's own words (rebuilt
// from its error body, never the body itself).
type Verdict struct {
	Status Status
	Reason Reason
	Class  Class
	// RetryAfter is the provider's advice in seconds ("" when none).
	RetryAfter string
	// Type, Code and Message are the provider's error vocabulary as parsed.
	Type, Code, Message string
	// Detail explains a forbidden/not-found verdict in the provider's words.
	Detail string
}

// Credential is what one upstream call needs: the key and where to send it.
type Credential struct {
	Key string
	// BaseURL is the provider's base URL (from Endpoints), or for Azure the
	// user's resource endpoint.
	BaseURL string
	// APIVersion is Azure's api-version.
	APIVersion string
	// Deployments maps model names to Azure deployment names (optional).
	Deployments map[string]string
}

// Adapter is one provider. Implementations are stateless and safe for
// concurrent use; the HTTP client that sends their requests is the caller's.
type Adapter interface {
	Name() Name
	// CheckFormat checks a key's shape; a non-nil error is a *FormatError.
	CheckFormat(key string) error
	// PriceModel is the name the price table knows the model by.
	PriceModel(model string) string

	// ValidationRequest is the cheap live check of a key.
	ValidationRequest(ctx context.Context, cred Credential) (*http.Request, error)
	// ClassifyValidation reads the answer to ValidationRequest (body: at most
	// the first 64 KiB).
	ClassifyValidation(status int, header http.Header, body []byte) Verdict
	// Classify reads a failed call (status outside 2xx) for routing.
	Classify(status int, header http.Header, body []byte) Verdict

	// ChatRequest builds the upstream request; req.Stream selects streaming.
	// A feature the provider lacks is a *FeatureError.
	ChatRequest(ctx context.Context, cred Credential, req *ChatRequest) (*http.Request, error)
	// DecodeChat reads a non-streamed 2xx answer into the neutral response.
	DecodeChat(body []byte, req *ChatRequest) (*ChatResponse, error)
	// NewStream returns a decoder for one streamed answer.
	NewStream(req *ChatRequest) StreamDecoder

	// EmbeddingsRequest and DecodeEmbeddings: a provider without embeddings
	// returns a *FeatureError.
	EmbeddingsRequest(ctx context.Context, cred Credential, req *EmbeddingRequest) (*http.Request, error)
	DecodeEmbeddings(body []byte, req *EmbeddingRequest) (*EmbeddingResponse, error)
}

// StreamDecoder turns one provider's SSE events into neutral chunks.
type StreamDecoder interface {
	// Event reads one SSE event (its event name, "" when none, and its data)
	// and returns the chunks it becomes; done reports the provider's end of
	// stream.
	Event(name string, data []byte) (chunks []ChatChunk, done bool, err error)
	// Usage is the usage reported so far (nil when none yet).
	Usage() *Usage
}

// FormatError is a key that fails a provider's format check.
type FormatError struct{ Msg string }

func (e *FormatError) Error() string { return e.Msg }

// FeatureError is a request feature the target provider does not have: a
// 400 naming it, never silently dropped.
type FeatureError struct {
	Provider Name
	Feature  string
}

func (e *FeatureError) Error() string {
	return string(e.Provider) + " does not support " + e.Feature + "; remove it or choose another model"
}

// Unsupported returns a *FeatureError.
func Unsupported(p Name, feature string) error { return &FeatureError{p, feature} }

// ErrBadAnswer is wrapped by decoders for an upstream 2xx they cannot read.
var ErrBadAnswer = errors.New("the provider's answer could not be read")

// Timeout is the live validation budget (docs/providers.md).
const Timeout = 10 * time.Second

// NewJSONRequest builds a POST with a JSON body and the usual headers.
func NewJSONRequest(ctx context.Context, url string, body any) (*http.Request, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// BaseURL is cred's base URL without a trailing slash, or def when unset.
func BaseURL(cred Credential, def string) string {
	if cred.BaseURL == "" {
		return def
	}
	return strings.TrimRight(cred.BaseURL, "/")
}

// Auth sets an adapter's credential headers on a request it built.
type Auth func(req *http.Request, key string)

// NewCall is NewJSONRequest for one upstream call: key set by auth, and
// text/event-stream accepted when stream.
func NewCall(ctx context.Context, url string, body any, stream bool, key string, auth Auth) (*http.Request, error) {
	req, err := NewJSONRequest(ctx, url, body)
	if err != nil {
		return nil, err
	}
	if stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	auth(req, key)
	return req, nil
}

// NewKeyedGet is NewGet with key set by auth.
func NewKeyedGet(ctx context.Context, url, key string, auth Auth) (*http.Request, error) {
	req, err := NewGet(ctx, url)
	if err != nil {
		return nil, err
	}
	auth(req, key)
	return req, nil
}

// NewGet builds a GET expecting JSON.
func NewGet(ctx context.Context, url string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// ClassByStatus is the status-only part of every provider's classification
// (docs/providers.md): 401/403 auth, 402 billing, 429 rate limit, 5xx
// unavailable, other 4xx request.
func ClassByStatus(status int) (Class, Status, Reason) {
	switch {
	case status >= 200 && status <= 299:
		return ClassNone, StatusValid, ReasonNone
	case status == http.StatusUnauthorized:
		return ClassAuth, StatusInvalid, ReasonUnauthorized
	case status == http.StatusForbidden:
		return ClassAuth, StatusInvalid, ReasonForbidden
	case status == http.StatusPaymentRequired:
		return ClassBilling, StatusInvalid, ReasonNoBilling
	case status == http.StatusTooManyRequests:
		return ClassRateLimit, StatusUnchecked, ReasonRateLimited
	case status >= 500 && status <= 599:
		return ClassUnavailable, StatusUnchecked, ReasonUnavailable
	case status >= 400 && status <= 499:
		return ClassRequest, StatusUnchecked, ReasonRequestError
	}
	return ClassRequest, StatusUnchecked, ReasonUnexpected
}

// Verdict builds a Verdict from a class/status/reason triple.
func MakeVerdict(c Class, s Status, r Reason) Verdict { return Verdict{Class: c, Status: s, Reason: r} }
