package webhooks

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// DeliveryTimeout bounds one delivery, connect to last byte.
const DeliveryTimeout = 10 * time.Second

// maxResponseRead is how much of an endpoint's answer is read (and thrown
// away) so the connection can be reused; nothing of it is kept.
const maxResponseRead = 4 << 10

// Sender signs and posts one payload to one endpoint.
type Sender struct {
	Client *http.Client
	// Now stamps webhook-timestamp (time.Now when nil): wall time, since
	// receivers check it against theirs.
	Now func() time.Time
}

// NewSender returns a Sender over the guard's client.
func NewSender(g *Guard) *Sender { return &Sender{Client: g.Client(DeliveryTimeout)} }

// Result is the outcome of one delivery.
type Result struct {
	OK         bool
	HTTPStatus int
	// Error classifies a failure (never an error's text: it may hold the
	// URL, and a URL may hold the owner's token).
	Error   string
	Latency time.Duration
}

// Send posts payload to url signed with secret under webhook-id msgID. A
// cancelled ctx is returned as an error: that is our failure, not the
// endpoint's.
func (s *Sender) Send(ctx context.Context, url, secret, msgID string, payload []byte) (Result, error) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return Result{}, err
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	ts := now()
	sig, err := wh.Sign(msgID, ts, payload)
	if err != nil {
		return Result{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return Result{Error: "invalid_url"}, nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "byok-webhooks/1")
	req.Header.Set(standardwebhooks.HeaderWebhookID, msgID)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	start := time.Now()
	resp, err := s.Client.Do(req)
	lat := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		return Result{Error: classify(err), Latency: lat}, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseRead))
	resp.Body.Close()
	r := Result{HTTPStatus: resp.StatusCode, Latency: lat, OK: resp.StatusCode >= 200 && resp.StatusCode < 300}
	if !r.OK {
		r.Error = "http_status"
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			r.Error = "redirect_not_followed"
		}
	}
	return r, nil
}

func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, ErrBlocked):
		return "blocked_address"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "dns"
	}
	return "connection"
}
