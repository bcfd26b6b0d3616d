package chat

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/credits"
	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/jsondec"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/ratelimit"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/usage"
	"github.com/synthstack/byok/shared/vault"
)

// UserStore reads a user's account and keys with one query.
type UserStore interface {
	GetUser(ctx context.Context, userID string) (store.User, error)
}

// KeyOpener decrypts a stored key.
type KeyOpener interface {
	Open(ctx context.Context, ec vault.Context, blob []byte) ([]byte, error)
}

// KeyRecorder records a validation outcome observed on use (keys.Service).
type KeyRecorder interface {
	Record(ctx context.Context, acc *store.Account, k store.KeyRecord, res provider.Result, detectedBy string) (store.KeyRecord, error)
}

// Ledger moves credits (credits.Ledger).
type Ledger interface {
	Reserve(ctx context.Context, userID, requestID string, amount int64) error
	Settle(ctx context.Context, userID, requestID string, reserved, actual int64, meta map[string]any) (int64, error)
	Release(ctx context.Context, userID, requestID string, reserved int64, meta map[string]any) error
	// MarkDelivered records that the answer started reaching the client, so
	// a reservation its request never finishes is charged, not refunded.
	MarkDelivered(ctx context.Context, userID, requestID string) error
}

// Limiter enforces the credits route's tier limits (ratelimit.Limiter).
type Limiter interface {
	Admit(ctx context.Context, userID string, lim routing.TierLimit, estTokens int64) (*ratelimit.Ticket, error)
	AddTokens(ctx context.Context, userID string, tokens int64) error
}

// UsageWriter stores BYOK usage rows.
type UsageWriter interface {
	Put(ctx context.Context, r usage.Record) error
}

// Onceer throttles notifications across instances (store.Store.Once).
type Onceer interface {
	Once(ctx context.Context, key string, window time.Duration, now time.Time) (bool, error)
}

// AudioUploads reads and removes large-audio uploads (*audio.Store): Read
// answers 404 for an unknown or another user's id, 503 when storage fails.
type AudioUploads interface {
	Read(ctx context.Context, userID, id string) ([]byte, error)
	Delete(ctx context.Context, userID, id string)
}

// Executor routes and performs AI requests.
type Executor struct {
	Users       UserStore
	Orgs        OrgStore // nil: org and project keys are never used
	Settings    *SettingsCache
	Keys        KeyOpener
	KeyRecorder KeyRecorder
	Ledger      Ledger
	Limiter     Limiter
	Usage       UsageWriter
	Prices      credits.PriceTable
	Circuit     *Circuit
	Events      events.Publisher
	Once        Onceer
	HTTP        *http.Client
	// AzureHTTP sends Azure OpenAI requests (azure.Guard's client: the
	// endpoint is the user's). Nil: Azure requests are refused, never sent
	// through HTTP.
	AzureHTTP *http.Client
	Endpoints provider.Endpoints
	// Providers is the adapter registry (nil: built from Endpoints).
	Providers    *provider.Registry
	InternalKeys map[provider.Name]string
	// Audio holds large audio named by upload_id (nil: uploads refused).
	Audio AudioUploads
	// HeaderTimeout bounds the wait for an upstream's response headers
	// (a stalled provider is an `unavailable` failure).
	HeaderTimeout time.Duration
	// IdleTimeout bounds the silence between two parts of an answer once
	// the headers came (default 2 minutes).
	IdleTimeout time.Duration
	// UpstreamTimeout bounds a whole non-streamed answer (default 10
	// minutes): its headers come only when the answer is ready.
	UpstreamTimeout time.Duration
	// MaxResponseBytes is the relay limit: a larger non-streamed answer,
	// or a larger single stream event, is refused (default 32 MiB).
	MaxResponseBytes int64
	// Limits bounds request bodies (DefaultLimits, or LambdaLimits).
	Limits Limits
	// DetachedTimeout bounds each storage write that outlives the client's
	// connection (usage, ledger, events; default 10 s).
	DetachedTimeout time.Duration
	// DefaultCopilotModel is used by /v1/copilot/chat when none is given.
	DefaultCopilotModel string
	// Decoders lends the JSON decoders of the request parse (nil: a fresh
	// one per parse, which allocates twice as much).
	Decoders *jsondec.Pool
	Log      *slog.Logger
	Now      func() time.Time
}

func (x *Executor) now() time.Time {
	if x.Now != nil {
		return x.Now()
	}
	return time.Now()
}

func (x *Executor) idleTimeout() time.Duration {
	if x.IdleTimeout > 0 {
		return x.IdleTimeout
	}
	return 2 * time.Minute
}

// detached returns a context that survives the client going away (a
// reservation or a delivered answer must still be settled and recorded)
// but not DetachedTimeout, so a stalled store cannot hold the function.
func (x *Executor) detached(ctx context.Context) (context.Context, context.CancelFunc) {
	d := x.DetachedTimeout
	if d <= 0 {
		d = 10 * time.Second
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

func (x *Executor) upstreamTimeout() time.Duration {
	if x.UpstreamTimeout > 0 {
		return x.UpstreamTimeout
	}
	return 10 * time.Minute
}

func (x *Executor) maxResponseBytes() int64 {
	if x.MaxResponseBytes > 0 {
		return x.MaxResponseBytes
	}
	return 32 << 20
}

func (x *Executor) headerTimeout() time.Duration {
	if x.HeaderTimeout > 0 {
		return x.HeaderTimeout
	}
	return 60 * time.Second
}

// errBYOKFailed is a 402 naming the BYOK failure (byok_first with nothing
// to fall back to).
func errBYOKFailed(p provider.Name, reason string) error {
	return apperr.New(apperr.PaymentRequired, "your %s API key failed (%s) and you have no platform credits to fall back on: fix the key or add credits", p, reason)
}

var errNoCredits = apperr.New(apperr.PaymentRequired, "no platform credits left: add credits or configure your own API key")

func refusal(code string, p provider.Name) error {
	if code == routing.RefuseBYOKRequired {
		return apperr.New(apperr.BYOKRequired, "this platform requires your own %s API key: add a valid key under Settings → API Keys", p)
	}
	return errNoCredits
}

// isDuplicate reports a replayed request id on the credits route.
func isDuplicate(err error) bool { return errors.Is(err, credits.ErrDuplicate) }

// Limits are the request body limits of the AI routes.
type Limits struct {
	JSON   int64 // chat, messages, embeddings
	Upload int64 // transcription (multipart)
}

// DefaultLimits are the limits where the platform allows them: 10 MiB and
// 25 MiB.
func DefaultLimits() Limits { return Limits{JSON: 10 << 20, Upload: 25 << 20} }

// LambdaLimits fit AWS Lambda's 6 MB request payload (Function URL and HTTP
// API alike), keeping 200 KB for the event around the body; binary uploads
// arrive base64-encoded, so they get three quarters of that.
func LambdaLimits() Limits { return Limits{JSON: 5_800_000, Upload: 4_350_000} }

// LimitsFor picks the limits for the runtime: Lambda's when
// AWS_LAMBDA_FUNCTION_NAME is set.
func LimitsFor(getenv func(string) string) Limits {
	if getenv("AWS_LAMBDA_FUNCTION_NAME") != "" {
		return LambdaLimits()
	}
	return DefaultLimits()
}

func (x *Executor) limits() Limits {
	l := x.Limits
	d := DefaultLimits()
	if l.JSON <= 0 {
		l.JSON = d.JSON
	}
	if l.Upload <= 0 {
		l.Upload = d.Upload
	}
	return l
}
