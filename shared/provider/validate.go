package provider

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Status is a key's validation status (SPEC §2).
type Status string

const (
	StatusValid     Status = "valid"
	StatusInvalid   Status = "invalid"
	StatusUnchecked Status = "unchecked"
)

// Reason qualifies a Status. Invalid keys carry one of the first four; unchecked
// keys carry one of the others.
type Reason string

const (
	ReasonNone          Reason = ""
	ReasonUnauthorized  Reason = "unauthorized"
	ReasonNoBilling     Reason = "no_billing"
	ReasonQuotaExceeded Reason = "quota_exceeded"
	ReasonForbidden     Reason = "forbidden"

	// ReasonInvalidFormat: Validate refused a key that fails CheckFormat without
	// sending it anywhere (status invalid).
	ReasonInvalidFormat Reason = "invalid_format"

	ReasonUnavailable  Reason = "provider_unavailable" // 5xx, 529, connection error
	ReasonTimeout      Reason = "timeout"
	ReasonRateLimited  Reason = "rate_limited"      // 429 that is not a quota error
	ReasonRequestError Reason = "request_error"     // other 4xx (400, 404, 413, 422, ...): not a key problem
	ReasonUnexpected   Reason = "unexpected_status" // 1xx/3xx or other odd answers
	ReasonCanceled     Reason = "canceled"          // the caller's context was canceled
	ReasonUnsupported  Reason = "unsupported_provider"
)

// Result is the outcome of one live validation. HTTPStatus is the provider's
// status code, 0 when no response was received.
type Result struct {
	Status     Status
	Reason     Reason
	HTTPStatus int
}

// Default base URLs, following the official SDKs' conventions (SPEC §15).
const (
	DefaultOpenAIBaseURL    = "https://api.openai.com/v1"
	DefaultAnthropicBaseURL = "https://api.anthropic.com"

	AnthropicVersion = "2023-06-01"

	DefaultTimeout  = 10 * time.Second
	MaxErrorBodyLen = 64 << 10
)

// Endpoints holds the providers' base URLs. OpenAI includes /v1; Anthropic does not.
type Endpoints struct {
	OpenAI    string
	Anthropic string
}

// EndpointsFromEnv reads OPENAI_BASE_URL and ANTHROPIC_BASE_URL through getenv
// (nil means none set), falling back to the public defaults. Trailing slashes
// are removed.
func EndpointsFromEnv(getenv func(string) string) Endpoints {
	var ep Endpoints
	if getenv != nil {
		ep.OpenAI = getenv("OPENAI_BASE_URL")
		ep.Anthropic = getenv("ANTHROPIC_BASE_URL")
	}
	return ep.withDefaults()
}

func (ep Endpoints) withDefaults() Endpoints {
	ep.OpenAI = strings.TrimRight(strings.TrimSpace(ep.OpenAI), "/")
	ep.Anthropic = strings.TrimRight(strings.TrimSpace(ep.Anthropic), "/")
	if ep.OpenAI == "" {
		ep.OpenAI = DefaultOpenAIBaseURL
	}
	if ep.Anthropic == "" {
		ep.Anthropic = DefaultAnthropicBaseURL
	}
	return ep
}

// Validator checks keys live against the providers. It is safe for concurrent use.
type Validator struct {
	client  *http.Client
	ep      Endpoints
	timeout time.Duration
}

// NewValidator returns a Validator. A nil client means a new default client;
// timeout 0 means DefaultTimeout. Redirects are never followed (a redirect
// could carry the key to another host); a 3xx is reported as unchecked.
func NewValidator(client *http.Client, ep Endpoints, timeout time.Duration) *Validator {
	var c http.Client
	if client != nil {
		c = *client // shallow copy: shares the Transport, own redirect policy
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Validator{client: &c, ep: ep.withDefaults(), timeout: timeout}
}

// Validate checks apiKey with provider p: OpenAI GET {base}/models, Anthropic
// GET {base}/v1/models. It never returns or logs the key.
func (v *Validator) Validate(ctx context.Context, p Name, apiKey string) Result {
	if !IsSupported(p) {
		return Result{Status: StatusUnchecked, Reason: ReasonUnsupported}
	}
	if CheckFormat(p, apiKey) != nil {
		return Result{Status: StatusInvalid, Reason: ReasonInvalidFormat}
	}
	tctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()

	var url string
	switch p {
	case OpenAI:
		url = v.ep.OpenAI + "/models"
	case Anthropic:
		url = v.ep.Anthropic + "/v1/models"
	}
	req, err := http.NewRequestWithContext(tctx, http.MethodGet, url, nil)
	if err != nil {
		return Result{Status: StatusUnchecked, Reason: ReasonUnavailable}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "byok-validator/1")
	switch p {
	case OpenAI:
		req.Header.Set("Authorization", "Bearer "+apiKey)
	case Anthropic:
		req.Header.Set("x-api-key", apiKey)
		req.Header.Set("anthropic-version", AnthropicVersion)
	}

	resp, err := v.client.Do(req)
	if err != nil {
		return Result{Status: StatusUnchecked, Reason: transportReason(ctx, tctx, err)}
	}
	defer resp.Body.Close()

	var body []byte
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// A read error leaves a partial body; ClassifyHTTP then falls back to
		// the status alone.
		body, _ = io.ReadAll(io.LimitReader(resp.Body, MaxErrorBodyLen))
	} else {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxErrorBodyLen))
	}
	st, reason := ClassifyHTTP(p, resp.StatusCode, body)
	return Result{Status: st, Reason: reason, HTTPStatus: resp.StatusCode}
}

func transportReason(parent, tctx context.Context, err error) Reason {
	if parent.Err() != nil {
		if errors.Is(parent.Err(), context.DeadlineExceeded) {
			return ReasonTimeout
		}
		return ReasonCanceled
	}
	if errors.Is(err, context.DeadlineExceeded) || tctx.Err() != nil {
		return ReasonTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ReasonTimeout
	}
	return ReasonUnavailable
}

// errorBody covers both providers' error shapes:
// OpenAI    {"error":{"message","type","param","code"}}
// Anthropic {"type":"error","error":{"type","message"}}
type errorBody struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    any    `json:"code"` // string, number or null
	} `json:"error"`
}

func parseErrorBody(body []byte) (typ, code, msg string) {
	var eb errorBody
	if len(body) == 0 || json.Unmarshal(body, &eb) != nil {
		return "", "", ""
	}
	if s, ok := eb.Error.Code.(string); ok {
		code = s
	}
	return eb.Error.Type, code, eb.Error.Message
}

// ClassifyHTTP classifies a provider's HTTP answer (status and at most
// MaxErrorBodyLen of its body) for key validation and BYOK failure handling:
//
//	2xx                                   → valid
//	401                                   → invalid/unauthorized
//	403                                   → invalid/forbidden
//	402, or error type billing_error      → invalid/no_billing
//	429 with type/code insufficient_quota → invalid/quota_exceeded
//	Anthropic 400 about credit balance or billing → invalid/no_billing
//	Anthropic 400 about API usage limits  → invalid/quota_exceeded
//	other 429                             → unchecked/rate_limited
//	5xx, 529                              → unchecked/provider_unavailable
//	other 4xx                             → unchecked/request_error
//	anything else                         → unchecked/unexpected_status
func ClassifyHTTP(p Name, status int, body []byte) (Status, Reason) {
	if status >= 200 && status <= 299 {
		return StatusValid, ReasonNone
	}
	typ, code, msg := parseErrorBody(body)
	switch status {
	case http.StatusUnauthorized:
		return StatusInvalid, ReasonUnauthorized
	case http.StatusForbidden:
		return StatusInvalid, ReasonForbidden
	case http.StatusPaymentRequired:
		return StatusInvalid, ReasonNoBilling
	case http.StatusTooManyRequests:
		if typ == "insufficient_quota" || code == "insufficient_quota" {
			return StatusInvalid, ReasonQuotaExceeded
		}
		if typ == "billing_not_active" || code == "billing_not_active" {
			return StatusInvalid, ReasonNoBilling
		}
		return StatusUnchecked, ReasonRateLimited
	}
	if status >= 500 && status <= 599 {
		return StatusUnchecked, ReasonUnavailable
	}
	if status >= 400 && status <= 499 {
		if typ == "billing_error" {
			return StatusInvalid, ReasonNoBilling
		}
		if p == Anthropic && status == http.StatusBadRequest {
			m := strings.ToLower(msg)
			switch {
			case strings.Contains(m, "credit balance"), strings.Contains(m, "billing"):
				return StatusInvalid, ReasonNoBilling
			case strings.Contains(m, "usage limit"):
				return StatusInvalid, ReasonQuotaExceeded
			}
		}
		return StatusUnchecked, ReasonRequestError
	}
	return StatusUnchecked, ReasonUnexpected
}
