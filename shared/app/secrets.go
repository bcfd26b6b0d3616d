package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/synthstack/byok/shared/chat"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/provider"
)

// SecretsAPI is the subset of *secretsmanager.Client used for the platform
// keys.
type SecretsAPI interface {
	GetSecretValue(context.Context, *secretsmanager.GetSecretValueInput, ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// DefaultInternalKeysTTL is how long the platform keys read from the secret
// are used before it is read again (INTERNAL_KEYS_TTL), so put-secret-value
// reaches warm instances.
const DefaultInternalKeysTTL = 5 * time.Minute

// internalKeysRetry bounds how soon a failed refresh is tried again.
const internalKeysRetry = 30 * time.Second

// LoadInternalKeys reads the platform's provider keys from the secret arn,
// a JSON object {"openai": "...", "anthropic": "...", "google": "...",
// "mistral": "...", "cohere": "..."}; keys set in the
// environment are kept when the secret leaves them empty. Errors never
// include the secret's content.
func LoadInternalKeys(ctx context.Context, sm SecretsAPI, arn string, into map[provider.Name]string) error {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return fmt.Errorf("read internal provider keys secret: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &m); err != nil {
		return fmt.Errorf("internal provider keys secret must be a JSON object of strings like {\"openai\":\"sk-...\",\"anthropic\":\"sk-ant-...\"}")
	}
	// Azure OpenAI has no platform key: its endpoints are the users' own.
	for _, p := range []provider.Name{provider.OpenAI, provider.Anthropic, provider.Google, provider.Mistral, provider.Cohere} {
		if v := m[string(p)]; v != "" {
			into[p] = v
		}
	}
	return nil
}

// LoadJWTSecret reads the HS256 token secret from the secret arn: its
// SecretString, the secret itself (surrounding whitespace trimmed). Errors
// never include the secret's content.
func LoadJWTSecret(ctx context.Context, sm SecretsAPI, arn string) ([]byte, error) {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return nil, fmt.Errorf("auth: read the token secret AUTH_JWT_SECRET_ARN: %w", err)
	}
	s := strings.TrimSpace(aws.ToString(out.SecretString))
	if s == "" {
		return nil, fmt.Errorf("auth: the secret named by AUTH_JWT_SECRET_ARN is empty (it needs a SecretString of at least 32 bytes)")
	}
	return []byte(s), nil
}

// InternalKeys are the platform's provider keys: the environment's, overlaid
// with the secret's (when an ARN is set), re-read after TTL. A failed re-read
// keeps the last good keys and is logged; it is tried again within
// internalKeysRetry. Safe for concurrent use; a returned map is never
// modified.
type InternalKeys struct {
	SM  SecretsAPI
	ARN string
	// Base are the keys from the environment.
	Base map[provider.Name]string
	TTL  time.Duration
	Now  func() time.Time
	Log  *slog.Logger

	cur     atomic.Pointer[map[provider.Name]string]
	version atomic.Uint64 // bumped when the keys change
	mu      sync.Mutex    // one refresh at a time
	next    atomic.Int64
}

func (k *InternalKeys) store(m map[provider.Name]string) {
	if old := k.cur.Load(); old == nil || !maps.Equal(*old, m) {
		k.cur.Store(&m)
		k.version.Add(1)
	}
	k.next.Store(k.now().Add(k.ttl()).UnixNano())
}

func (k *InternalKeys) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

func (k *InternalKeys) ttl() time.Duration {
	if k.TTL > 0 {
		return k.TTL
	}
	return DefaultInternalKeysTTL
}

func (k *InternalKeys) fetch(ctx context.Context) (map[provider.Name]string, error) {
	m := maps.Clone(k.Base)
	if m == nil {
		m = map[provider.Name]string{}
	}
	if k.ARN == "" || k.SM == nil {
		return m, nil
	}
	if err := LoadInternalKeys(ctx, k.SM, k.ARN, m); err != nil {
		return nil, err
	}
	return m, nil
}

// Load reads the keys now; a failure is returned (start-up refuses to run
// with a secret it cannot read).
func (k *InternalKeys) Load(ctx context.Context) error {
	m, err := k.fetch(ctx)
	if err != nil {
		return err
	}
	k.store(m)
	return nil
}

// Current returns the keys, re-reading the secret first when they are older
// than TTL. Only one caller re-reads; the others use the keys they have.
func (k *InternalKeys) Current(ctx context.Context) map[provider.Name]string {
	cur := k.cur.Load()
	if cur != nil && k.now().UnixNano() < k.next.Load() {
		return *cur
	}
	if cur != nil && !k.mu.TryLock() {
		return *cur
	}
	if cur == nil {
		k.mu.Lock()
	}
	defer k.mu.Unlock()
	if c := k.cur.Load(); c != nil && k.now().UnixNano() < k.next.Load() {
		return *c // refreshed meanwhile
	}
	// Bounded, and apart from the caller's cancellation: a client that went
	// away must not count as a failed refresh.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	m, err := k.fetch(rctx)
	if err != nil {
		k.next.Store(k.now().Add(min(k.ttl(), internalKeysRetry)).UnixNano())
		if k.Log != nil {
			httpx.Logger(ctx, k.Log).Error("refreshing the internal provider keys failed; using the last good ones",
				"err", err.Error(), "retry_in", min(k.ttl(), internalKeysRetry).String())
		}
		if cur == nil {
			empty := maps.Clone(k.Base)
			return empty
		}
		return *cur
	}
	k.store(m)
	return *k.cur.Load()
}

// keyedChat serves the chat routes with an executor whose platform keys are
// keys.Current(): when they change, a copy of the executor with the new keys
// takes over (the copy shares every client, cache and circuit).
type keyedChat struct {
	base *chat.Executor
	keys *InternalKeys

	mu      sync.Mutex
	version atomic.Uint64 // of the keys mux serves with
	mux     atomic.Pointer[http.ServeMux]
}

func newKeyedChat(base *chat.Executor, keys *InternalKeys) *keyedChat {
	c := &keyedChat{base: base, keys: keys}
	c.swap(base.InternalKeys, 0)
	return c
}

func (c *keyedChat) swap(keys map[provider.Name]string, version uint64) {
	x := *c.base
	x.InternalKeys = keys
	mux := http.NewServeMux()
	x.Register(mux)
	c.mux.Store(mux)
	c.version.Store(version)
}

func (c *keyedChat) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	keys := c.keys.Current(r.Context())
	if v := c.keys.version.Load(); v != c.version.Load() {
		c.mu.Lock()
		if v != c.version.Load() {
			c.swap(keys, v)
		}
		c.mu.Unlock()
	}
	c.mux.Load().ServeHTTP(w, r)
}

// routeAll registers every pattern it is given on mux, all served by h.
type routeAll struct {
	mux httpx.Router
	h   http.Handler
}

func (r routeAll) Handle(p string, _ http.Handler) { r.mux.Handle(p, r.h) }
func (r routeAll) HandleFunc(p string, _ func(http.ResponseWriter, *http.Request)) {
	r.mux.Handle(p, r.h)
}
