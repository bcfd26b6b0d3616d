package chat

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
	"github.com/tidwall/gjson"
)

// anthropicVersion is sent on every Anthropic call unless the client chose one.
const anthropicVersion = "2023-06-01"

// maxErrorBody bounds how much of an upstream error body is read.
const maxErrorBody = 64 << 10

// upstreamRequest builds the HTTP request to a provider. Only headers we set
// reach the provider: client credentials and other client headers are never
// forwarded.
func upstreamRequest(ctx context.Context, ep provider.Endpoints, p provider.Name, path, apiKey string, body []byte, extra http.Header) (*http.Request, error) {
	var url string
	switch p {
	case provider.OpenAI:
		url = strings.TrimRight(ep.OpenAI, "/") + path // OPENAI_BASE_URL includes /v1
	case provider.Anthropic:
		url = strings.TrimRight(ep.Anthropic, "/") + "/v1" + path
	default:
		return nil, errors.New("unsupported provider")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range extra {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	switch p {
	case provider.OpenAI:
		req.Header.Set("Authorization", "Bearer "+apiKey)
	case provider.Anthropic:
		req.Header.Set("x-api-key", apiKey)
		if req.Header.Get("anthropic-version") == "" {
			req.Header.Set("anthropic-version", anthropicVersion)
		}
	}
	return req, nil
}

// classify maps an upstream failure to its docs/api.md §8 class.
func classify(p provider.Name, status int, body []byte) routing.FailureClass {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return routing.FailAuth
	case status == http.StatusPaymentRequired:
		return routing.FailBilling
	case status == http.StatusTooManyRequests:
		if isQuotaError(body) {
			return routing.FailBilling
		}
		return routing.FailRateLimit
	case status >= 500: // includes Anthropic 529 overloaded
		return routing.FailUnavailable
	case p == provider.Anthropic && status == http.StatusBadRequest && isAnthropicBilling(body):
		return routing.FailBilling
	default:
		return routing.FailRequest
	}
}

func isQuotaError(body []byte) bool {
	r := gjson.GetManyBytes(body, "error.code", "error.type")
	return r[0].String() == "insufficient_quota" || r[1].String() == "insufficient_quota"
}

func isAnthropicBilling(body []byte) bool {
	r := gjson.GetManyBytes(body, "error.type", "error.message")
	if r[0].String() == "billing_error" {
		return true
	}
	m := strings.ToLower(r[1].String())
	return strings.Contains(m, "credit balance") || strings.Contains(m, "billing")
}

// reasonOf names a failure for X-Byok-Fallback and the usage row.
func reasonOf(c routing.FailureClass, status int, timedOut bool) string {
	switch c {
	case routing.FailAuth:
		if status == http.StatusForbidden {
			return "forbidden"
		}
		return "unauthorized"
	case routing.FailBilling:
		return "quota_exceeded"
	case routing.FailUnavailable:
		if timedOut {
			return "timeout"
		}
		if status == 0 {
			return "connection_error"
		}
		return "provider_unavailable"
	case routing.FailRateLimit:
		return "rate_limited"
	}
	return string(c)
}

// keyReason is the provider.Reason recorded on a key that failed auth or
// billing on use.
func keyReason(c routing.FailureClass, status int) provider.Reason {
	switch {
	case c == routing.FailAuth && status == http.StatusForbidden:
		return provider.ReasonForbidden
	case c == routing.FailAuth:
		return provider.ReasonUnauthorized
	case status == http.StatusPaymentRequired:
		return provider.ReasonNoBilling
	default:
		return provider.ReasonQuotaExceeded
	}
}

// headerTimer cancels an upstream attempt that has not answered with
// response headers within d; once headers arrive it is stopped.
type headerTimer struct {
	t        *time.Timer
	timedOut chan struct{}
}

func startHeaderTimer(d time.Duration, cancel context.CancelFunc) *headerTimer {
	ht := &headerTimer{timedOut: make(chan struct{})}
	ht.t = time.AfterFunc(d, func() {
		close(ht.timedOut)
		cancel()
	})
	return ht
}

func (h *headerTimer) stop() { h.t.Stop() }

func (h *headerTimer) fired() bool {
	select {
	case <-h.timedOut:
		return true
	default:
		return false
	}
}

func readBounded(r io.Reader, n int64) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, n))
}
