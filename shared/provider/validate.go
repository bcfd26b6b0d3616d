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

	"github.com/synthstack/byok/shared/provider/azure"
	"github.com/synthstack/byok/shared/provider/cohere"
	"github.com/synthstack/byok/shared/provider/google"
	"github.com/synthstack/byok/shared/provider/mistral"
	"github.com/synthstack/byok/shared/provider/schema"
)

// Status is a key's validation status (docs/api.md §2).
type Status = schema.Status

const (
	StatusValid     = schema.StatusValid
	StatusInvalid   = schema.StatusInvalid
	StatusUnchecked = schema.StatusUnchecked
)

// Reason qualifies a Status. Invalid keys carry one of the first four (or,
// for Azure, deployment_not_found); unchecked keys carry one of the others.
type Reason = schema.Reason

const (
	ReasonNone          Reason = ""
	ReasonUnauthorized  Reason = "unauthorized"
	ReasonNoBilling     Reason = "no_billing"
	ReasonQuotaExceeded Reason = "quota_exceeded"
	ReasonForbidden     Reason = "forbidden"

	// ReasonDeploymentNotFound: an Azure key whose configured deployment
	// does not exist (status invalid: the saved configuration cannot work).
	ReasonDeploymentNotFound Reason = "deployment_not_found"

	// ReasonInvalidFormat: Validate refused a key that fails CheckFormat without
	// sending it anywhere (status invalid).
	ReasonInvalidFormat Reason = "invalid_format"

	ReasonUnavailable Reason = "provider_unavailable" // the provider answered 5xx or 529
	// ReasonUnreachable: no answer at all (DNS, refused, TLS, timeout): the
	// network failed, not the key; the cause is in Result.Detail.
	ReasonUnreachable  Reason = "provider_unreachable"
	ReasonTimeout      Reason = "timeout"           // kept for rows stored before provider_unreachable
	ReasonRateLimited  Reason = "rate_limited"      // 429 that is not a quota error
	ReasonRequestError Reason = "request_error"     // other 4xx (400, 404, 413, 422, ...): not a key problem
	ReasonUnexpected   Reason = "unexpected_status" // 1xx/3xx or other odd answers
	ReasonCanceled     Reason = "canceled"          // the caller's context was canceled
	// ReasonEndpointRefused: the Azure endpoint was refused before any
	// byte was sent (not under an allowed suffix, or resolving to an
	// address that is not public); the why is in Result.Detail.
	ReasonEndpointRefused Reason = "endpoint_refused"
	ReasonUnsupported     Reason = "unsupported_provider"
)

// Result is the outcome of one live validation. HTTPStatus is the provider's
// status code, 0 when no response was received.
type Result struct {
	Status     Status
	Reason     Reason
	HTTPStatus int
	// Detail is the provider's explanation of a forbidden (or deployment)
	// verdict, or the network cause of an unreachable provider; never the key.
	Detail string
}

// Default base URLs, following the official SDKs' conventions (docs/api.md §15).
const (
	DefaultOpenAIBaseURL    = "https://api.openai.com/v1"
	DefaultAnthropicBaseURL = "https://api.anthropic.com"
	DefaultGoogleBaseURL    = google.DefaultBaseURL
	DefaultMistralBaseURL   = mistral.DefaultBaseURL
	DefaultCohereBaseURL    = cohere.DefaultBaseURL

	AnthropicVersion = "2023-06-01"

	DefaultTimeout  = 10 * time.Second
	MaxErrorBodyLen = 64 << 10
)

// Endpoints holds the providers' base URLs (OpenAI and Mistral include /v1;
// Anthropic, Google and Cohere do not) and the host suffixes Azure endpoints
// may use.
type Endpoints struct {
	OpenAI    string
	Anthropic string
	Google    string
	Mistral   string
	Cohere    string
	// AzureSuffixes are the allowed Azure endpoint host suffixes (nil means
	// azure.DefaultSuffixes).
	AzureSuffixes []string
}

// EndpointsFromEnv reads OPENAI_BASE_URL, ANTHROPIC_BASE_URL,
// GOOGLE_BASE_URL, MISTRAL_BASE_URL, COHERE_BASE_URL and
// AZURE_OPENAI_ALLOWED_SUFFIXES through getenv (nil means none set), falling
// back to the public defaults. Trailing slashes are removed.
func EndpointsFromEnv(getenv func(string) string) Endpoints {
	var ep Endpoints
	if getenv != nil {
		ep.OpenAI = getenv("OPENAI_BASE_URL")
		ep.Anthropic = getenv("ANTHROPIC_BASE_URL")
		ep.Google = getenv("GOOGLE_BASE_URL")
		ep.Mistral = getenv("MISTRAL_BASE_URL")
		ep.Cohere = getenv("COHERE_BASE_URL")
		ep.AzureSuffixes = azure.ParseSuffixes(getenv("AZURE_OPENAI_ALLOWED_SUFFIXES"))
	}
	return ep.withDefaults()
}

func (ep Endpoints) withDefaults() Endpoints {
	for _, f := range []struct {
		v   *string
		def string
	}{
		{&ep.OpenAI, DefaultOpenAIBaseURL}, {&ep.Anthropic, DefaultAnthropicBaseURL},
		{&ep.Google, DefaultGoogleBaseURL}, {&ep.Mistral, DefaultMistralBaseURL}, {&ep.Cohere, DefaultCohereBaseURL},
	} {
		*f.v = strings.TrimRight(strings.TrimSpace(*f.v), "/")
		if *f.v == "" {
			*f.v = f.def
		}
	}
	if len(ep.AzureSuffixes) == 0 {
		ep.AzureSuffixes = azure.ParseSuffixes("")
	}
	return ep
}

// Validator checks keys live against the providers. It is safe for concurrent use.
type Validator struct {
	client  *http.Client
	azure   *http.Client // guarded: user-chosen endpoints (azure.Guard)
	reg     *Registry
	timeout time.Duration
}

// NewValidator returns a Validator. A nil client means a new default client;
// timeout 0 means DefaultTimeout. Redirects are never followed (a redirect
// could carry the key to another host); a 3xx is reported as unchecked.
// Azure endpoints are reached through an azure.Guard client built on the
// client's transport (its TLS settings kept), whatever client is given.
func NewValidator(client *http.Client, ep Endpoints, timeout time.Duration) *Validator {
	var c http.Client
	if client != nil {
		c = *client // shallow copy: shares the Transport, own redirect policy
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ep = ep.withDefaults()
	base, _ := c.Transport.(*http.Transport)
	guard := &azure.Guard{Suffixes: ep.AzureSuffixes}
	return &Validator{client: &c, azure: guard.Client(base, 0), reg: NewRegistry(ep), timeout: timeout}
}

// Validate checks apiKey with provider p (OpenAI GET {base}/models,
// Anthropic GET {base}/v1/models, Google GET /v1beta/models, Mistral GET
// /models, Cohere POST /v1/check-api-key). Azure needs an endpoint: use
// ValidateCredential. It never returns or logs the key.
func (v *Validator) Validate(ctx context.Context, p Name, apiKey string) Result {
	return v.ValidateCredential(ctx, p, schema.Credential{Key: apiKey})
}

// ValidateCredential is Validate with a full credential (Azure's endpoint,
// api_version and deployments); an empty BaseURL means p's configured one.
func (v *Validator) ValidateCredential(ctx context.Context, p Name, cred schema.Credential) Result {
	a, ok := v.reg.Adapter(p)
	if !ok || !IsKnown(p) {
		return Result{Status: StatusUnchecked, Reason: ReasonUnsupported}
	}
	if CheckFormat(p, cred.Key) != nil {
		return Result{Status: StatusInvalid, Reason: ReasonInvalidFormat}
	}
	client := v.client
	if p == AzureOpenAI {
		client = v.azure
		if cred.BaseURL == "" {
			return Result{Status: StatusUnchecked, Reason: ReasonRequestError, Detail: "an Azure OpenAI key needs its endpoint"}
		}
	} else if cred.BaseURL == "" {
		cred.BaseURL = v.reg.Credential(p, "").BaseURL
	}
	tctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()

	req, err := a.ValidationRequest(tctx, cred)
	if err != nil {
		var fe *schema.FeatureError
		if errors.As(err, &fe) {
			return Result{Status: StatusUnchecked, Reason: ReasonRequestError, Detail: fe.Error()}
		}
		if errors.Is(err, azure.ErrEndpoint) {
			return Result{Status: StatusUnchecked, Reason: ReasonEndpointRefused, Detail: scrubDetail(err)}
		}
		return Result{Status: StatusUnchecked, Reason: ReasonUnavailable}
	}
	req.Header.Set("User-Agent", "byok-validator/1")

	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, azure.ErrEndpoint) {
			return Result{Status: StatusUnchecked, Reason: ReasonEndpointRefused, Detail: scrubDetail(err)}
		}
		r := transportReason(ctx, tctx, err)
		if r == ReasonCanceled {
			return Result{Status: StatusUnchecked, Reason: r}
		}
		return Result{Status: StatusUnchecked, Reason: r, Detail: "the network failed, not the key: " + networkCause(ctx, tctx, err)}
	}
	defer resp.Body.Close()

	var body []byte
	if resp.StatusCode < 200 || resp.StatusCode > 299 || p == Cohere {
		// A read error leaves a partial body; classification then falls
		// back to the status alone. (Cohere's 200 can say valid:false.)
		body, _ = io.ReadAll(io.LimitReader(resp.Body, MaxErrorBodyLen))
	} else {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxErrorBodyLen))
	}
	if p == OpenAI || p == Anthropic {
		st, reason := ClassifyHTTP(p, resp.StatusCode, body)
		return Result{Status: st, Reason: reason, HTTPStatus: resp.StatusCode, Detail: clipDetail(forbiddenDetail(a, resp, body, reason), cred.Key)}
	}
	vd := a.ClassifyValidation(resp.StatusCode, resp.Header, body)
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		vd.Status, vd.Reason = StatusUnchecked, ReasonUnexpected
	}
	return Result{Status: vd.Status, Reason: vd.Reason, HTTPStatus: resp.StatusCode, Detail: clipDetail(vd.Detail, cred.Key)}
}

func forbiddenDetail(a Adapter, resp *http.Response, body []byte, r Reason) string {
	if r != ReasonForbidden {
		return ""
	}
	return a.Classify(resp.StatusCode, resp.Header, body).Detail
}

// clipDetail bounds a provider's explanation and removes the key, and
// anything else that looks like a credential, from it.
func clipDetail(d, key string) string {
	hint := "[key]"
	if key != "" {
		hint = Hint(key)
	}
	if key != "" {
		d = strings.ReplaceAll(d, key, hint) // first: also keys no pattern knows (Azure's, Cohere's)
	}
	d = MaskCredentials(d, hint)
	if len(d) > 500 {
		d = d[:500] + "..."
	}
	return d
}

// networkCause names a transport failure's kind without its text (which
// can carry host names or addresses we need not echo).
func networkCause(parent, tctx context.Context, err error) string {
	var dns *net.DNSError
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &dns):
		return "DNS lookup failed"
	case errors.Is(err, context.DeadlineExceeded) || tctx.Err() != nil || parent.Err() != nil || errors.As(err, &ne) && ne.Timeout():
		return "timeout (no answer in time)"
	case strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:"):
		return "TLS handshake failed"
	case errors.As(err, &op) && op.Op == "dial":
		return "connection refused"
	}
	return "connection failed"
}

func scrubDetail(err error) string {
	s := err.Error()
	if i := strings.Index(s, azure.ErrEndpoint.Error()); i >= 0 {
		s = s[i:]
	}
	return s
}

// transportReason: a canceled caller is canceled; every other failure to
// get an answer (timeout included) is provider_unreachable (docs/api.md §7).
func transportReason(parent, _ context.Context, _ error) Reason {
	if parent.Err() != nil && !errors.Is(parent.Err(), context.DeadlineExceeded) {
		return ReasonCanceled
	}
	return ReasonUnreachable
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
