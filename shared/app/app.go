// Package app wires byok's configuration, AWS clients and domain services
// into HTTP handlers. Function mains and the dev server call it; it holds no
// domain logic of its own.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/synthstack/byok/shared/admin"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/audio"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/awsclient"
	"github.com/synthstack/byok/shared/chat"
	"github.com/synthstack/byok/shared/credits"
	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/h1"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/jsondec"
	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/page"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/provider/azure"
	"github.com/synthstack/byok/shared/ratelimit"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/usage"
	"github.com/synthstack/byok/shared/vault"
	"github.com/synthstack/byok/shared/webhooks"
)

// Config is byok's environment configuration.
type Config struct {
	TablePrefix string
	SNSTopicARN string
	DefaultMode routing.Mode
	KMSKeyID    string
	// InternalKeys are the platform's own provider keys (the credits route).
	InternalKeys map[provider.Name]string
	// SettingsTTL is how long a function instance caches admin settings.
	SettingsTTL time.Duration
	// UpstreamHeaderTimeout bounds the wait for a provider's first answer.
	UpstreamHeaderTimeout time.Duration
	// UpstreamIdleTimeout bounds silence within an answer (streams too).
	UpstreamIdleTimeout time.Duration
	// UpstreamTimeout bounds a whole non-streamed answer.
	UpstreamTimeout time.Duration
	// UpstreamMaxResponseBytes is the relay limit of an upstream answer.
	UpstreamMaxResponseBytes int64
	// BodyLimits bound the AI routes' request bodies (Lambda's 6 MB there).
	BodyLimits   chat.Limits
	CopilotModel string
	// AudioBucket holds large audio uploads (AUDIO_BUCKET); empty = none.
	AudioBucket string
	Auth        auth.Config
	Endpoints   provider.Endpoints
	Getenv      func(string) string
	// NoVerifier wires no token verifier: for functions that serve no
	// request (the revalidator), so auth configuration cannot stop them.
	NoVerifier bool
}

// ConfigFromEnv reads Config from getenv.
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{
		TablePrefix: getenv("TABLE_PREFIX"),
		SNSTopicARN: getenv("SNS_TOPIC_ARN"),
		DefaultMode: routing.Mode(getenv("DEFAULT_ROUTING_MODE")),
		KMSKeyID:    getenv("KMS_KEY_ID"),
		InternalKeys: map[provider.Name]string{
			provider.OpenAI:    getenv("INTERNAL_OPENAI_API_KEY"),
			provider.Anthropic: getenv("INTERNAL_ANTHROPIC_API_KEY"),
			provider.Google:    getenv("INTERNAL_GOOGLE_API_KEY"),
			provider.Mistral:   getenv("INTERNAL_MISTRAL_API_KEY"),
			provider.Cohere:    getenv("INTERNAL_COHERE_API_KEY"),
		},
		SettingsTTL:              durationEnv(getenv, "SETTINGS_CACHE_TTL", 5*time.Second),
		UpstreamHeaderTimeout:    durationEnv(getenv, "UPSTREAM_HEADER_TIMEOUT", 60*time.Second),
		UpstreamIdleTimeout:      durationEnv(getenv, "UPSTREAM_IDLE_TIMEOUT", 2*time.Minute),
		UpstreamTimeout:          durationEnv(getenv, "UPSTREAM_TIMEOUT", 10*time.Minute),
		UpstreamMaxResponseBytes: intEnv(getenv, "UPSTREAM_MAX_RESPONSE_BYTES", 32<<20),
		BodyLimits:               chat.LimitsFor(getenv),
		CopilotModel:             getenv("COPILOT_DEFAULT_MODEL"),
		AudioBucket:              getenv("AUDIO_BUCKET"),
		Auth:                     auth.ConfigFromEnv(getenv),
		Endpoints:                provider.EndpointsFromEnv(getenv),
		Getenv:                   getenv,
	}
}

func intEnv(getenv func(string) string, name string, def int64) int64 {
	if n, err := strconv.ParseInt(getenv(name), 10, 64); err == nil && n > 0 {
		return n
	}
	return def
}

func durationEnv(getenv func(string) string, name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// Clients are the AWS clients byok uses.
type Clients struct {
	DynamoDB *dynamodb.Client
	KMS      *kms.Client
	SNS      *sns.Client
	SQS      *sqs.Client
	S3       *s3.Client
	// Upstream, when set, is the base transport of provider calls (tests
	// put a TLS fake's trust in it); nil means http.DefaultTransport.
	Upstream *http.Transport
}

// NewClients builds the AWS clients from an SDK config. S3 uses path-style
// addresses when AWS_ENDPOINT_URL points at an emulator (which has no
// per-bucket host names).
func NewClients(cfg aws.Config) Clients {
	pathStyle := Getenv("AWS_ENDPOINT_URL") != ""
	return Clients{DynamoDB: dynamodb.NewFromConfig(cfg), KMS: kms.NewFromConfig(cfg), SNS: sns.NewFromConfig(cfg),
		SQS: sqs.NewFromConfig(cfg),
		S3:  s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = pathStyle })}
}

// NewLogger returns the JSON slog logger writing to stdout.
func NewLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// App holds the wired services.
type App struct {
	Log      *slog.Logger
	Verifier *auth.Verifier
	Store    *store.Store
	Vault    *vault.Vault
	Keys     *keys.Service
	Admin    *admin.Service
	Chat     *chat.Executor
	Ledger   *credits.Ledger
	Credits  *usage.CreditsService
	Usage    *usage.Service
	Webhooks *webhooks.Service
	// Events publishes notifications (events.Nop without a topic).
	Events events.Publisher
	// Audio holds large audio uploads (POST /v1/audio/uploads).
	Audio *audio.Store
	// VaultErr is why the vault is disabled (nil when configured).
	VaultErr error
	// InternalKeys, when set, refreshes the chat routes' platform keys from
	// their secret (INTERNAL_KEYS_SECRET_ARN, INTERNAL_KEYS_TTL).
	InternalKeys *InternalKeys
}

// New wires an App. A missing or malformed ENCRYPTION_KEY (with no KMS key)
// is logged as a clear start-up error and leaves a vault that refuses every
// save with that message; auth misconfiguration is fatal.
func New(ctx context.Context, cfg Config, c Clients, log *slog.Logger) (*App, error) {
	var ver *auth.Verifier
	if !cfg.NoVerifier {
		acfg := cfg.Auth
		if acfg.Log == nil {
			acfg.Log = log
		}
		var err error
		if ver, err = auth.NewVerifier(ctx, acfg); err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
	}
	v, verr := NewVault(cfg, c)
	if verr != nil {
		v = vault.Disabled(verr) // Handler reports it for the functions that use keys
	}
	var pub events.Publisher = events.Nop{}
	if cfg.SNSTopicARN != "" && c.SNS != nil {
		pub = events.NewSNS(c.SNS, cfg.SNSTopicARN, log)
	}
	st := store.New(c.DynamoDB, cfg.TablePrefix)
	base := http.DefaultTransport.(*http.Transport)
	if c.Upstream != nil {
		base = c.Upstream
	}
	httpClient := &http.Client{Transport: base.Clone()}
	upstream := base.Clone()
	upstream.MaxIdleConns, upstream.MaxIdleConnsPerHost = 256, 128
	// Never follow a provider's redirect: Go keeps x-api-key on cross-host
	// redirects and would send a key elsewhere.
	// Provider calls carry their I/O on the request's own goroutine: fewer
	// hand-offs on the answer's path (docs/performance.md).
	direct := &h1.Transport{DialContext: upstream.DialContext, TLSClientConfig: upstream.TLSClientConfig.Clone(),
		Proxy: upstream.Proxy, MaxIdleConnsPerHost: upstream.MaxIdleConnsPerHost, Fallback: upstream}
	upstreamClient := &http.Client{Transport: direct, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// Azure endpoints are the user's: their calls go only through the guard
	// (allowed suffixes, public addresses checked when dialling, no proxy,
	// no redirects; docs/providers.md).
	azureGuard := &azure.Guard{Suffixes: cfg.Endpoints.AzureSuffixes}
	azureClient := azureGuard.Client(upstream, 0)
	ledger := credits.NewLedger(c.DynamoDB, cfg.TablePrefix, nil)
	ledger.Log = log
	keySvc := &keys.Service{
		Store: st, Sealer: v, Validator: provider.NewValidator(httpClient, cfg.Endpoints, 10*time.Second),
		AzureGuard: azureGuard, Events: pub, DefaultMode: cfg.DefaultMode, Log: log,
	}
	var audioStore *audio.Store
	if c.S3 != nil {
		audioStore = audio.New(c.S3, cfg.AudioBucket, log)
	} else {
		audioStore = &audio.Store{Log: log} // answers 503: no bucket
	}
	return &App{
		Audio:    audioStore,
		Log:      log,
		Verifier: ver,
		Store:    st,
		Vault:    v,
		VaultErr: verr,
		Keys:     keySvc,
		Admin:    &admin.Service{Store: st, Ledger: ledger, DefaultMode: cfg.DefaultMode, Log: log},
		Ledger:   ledger,
		Credits:  &usage.CreditsService{Ledger: ledger},
		Usage:    &usage.Service{DB: c.DynamoDB, TablePrefix: cfg.TablePrefix},
		Webhooks: newWebhookService(cfg, c, v, log),
		Events:   pub,
		Chat: &chat.Executor{
			Decoders:            &jsondec.Pool{},
			Users:               st,
			Orgs:                st,
			Settings:            &chat.SettingsCache{Store: st, DefaultMode: cfg.DefaultMode, TTL: cfg.SettingsTTL},
			Keys:                v,
			KeyRecorder:         keySvc,
			Ledger:              ledger,
			Limiter:             ratelimit.New(c.DynamoDB, cfg.TablePrefix, nil, 0),
			Usage:               usage.NewWriter(c.DynamoDB, cfg.TablePrefix, 0),
			Prices:              credits.DefaultPrices(),
			Circuit:             chat.NewCircuit(60*time.Second, nil),
			Events:              pub,
			Once:                st,
			HTTP:                upstreamClient,
			AzureHTTP:           azureClient,
			Endpoints:           cfg.Endpoints,
			Providers:           provider.NewRegistry(cfg.Endpoints),
			InternalKeys:        cfg.InternalKeys,
			Audio:               audioStore,
			HeaderTimeout:       cfg.UpstreamHeaderTimeout,
			IdleTimeout:         cfg.UpstreamIdleTimeout,
			UpstreamTimeout:     cfg.UpstreamTimeout,
			MaxResponseBytes:    cfg.UpstreamMaxResponseBytes,
			Limits:              cfg.BodyLimits,
			DefaultCopilotModel: cfg.CopilotModel,
			Log:                 log,
		},
	}, nil
}

// NewVault builds the vault from KMS_KEY_ID / ENCRYPTION_KEY /
// ENCRYPTION_KEY_PREVIOUS, with a bounded cache of unwrapped data keys.
func NewVault(cfg Config, c Clients) (*vault.Vault, error) {
	var kmsAPI vault.KMSAPI
	if cfg.KMSKeyID != "" && c.KMS != nil {
		kmsAPI = c.KMS
	}
	return vault.FromEnv(cfg.Getenv, kmsAPI, vault.WithCache(10_000, 15*time.Minute))
}

// Function names, as in template.yaml and functions/<name>.
const (
	FnKeys     = "keys"
	FnValidate = "validate"
	FnAdmin    = "admin"
	FnChat     = "chat"
	FnUsage    = "usage"
	// FnExport streams GET /v1/usage/export from its own Function URL: the
	// HTTP API in front of usage buffers answers (6 MB, 30 s).
	FnExport = "export"
)

// exportRoute is the usage route served by FnExport instead of FnUsage.
const exportRoute = "GET /v1/usage/export"

// Functions lists every HTTP-serving function.
func Functions() []string { return []string{FnKeys, FnValidate, FnAdmin, FnChat, FnUsage, FnExport} }

// routeFilter registers only the patterns keep accepts, so one service's
// routes can be split across two functions.
type routeFilter struct {
	httpx.Router
	keep func(pattern string) bool
}

func (f routeFilter) Handle(p string, h http.Handler) {
	if f.keep(p) {
		f.Router.Handle(p, h)
	}
}

func (f routeFilter) HandleFunc(p string, h func(http.ResponseWriter, *http.Request)) {
	if f.keep(p) {
		f.Router.HandleFunc(p, h)
	}
}

// register adds the routes of the named functions (all when names is empty);
// public gets the routes served without a token (the settings page's files).
func (a *App) register(mux, public httpx.Router, names ...string) {
	has := func(n string) bool { return len(names) == 0 || slices.Contains(names, n) }
	if has(FnKeys) {
		page.Must().Register(public)
		a.Keys.RegisterKeys(mux)
		a.Webhooks.Register(mux)
	}
	if has(FnValidate) {
		a.Keys.RegisterValidate(mux)
	}
	if has(FnAdmin) {
		a.Admin.Register(mux)
	}
	if has(FnChat) {
		a.Audio.Register(mux)
		if a.InternalKeys != nil {
			a.Chat.Register(routeAll{mux, newKeyedChat(a.Chat, a.InternalKeys)})
		} else {
			a.Chat.Register(mux)
		}
	}
	if has(FnUsage) {
		a.Credits.Register(mux)
		a.Usage.Register(routeFilter{mux, func(p string) bool { return p != exportRoute }})
	}
	if has(FnExport) {
		a.Usage.Register(routeFilter{mux, func(p string) bool { return p == exportRoute }})
	}
}

// Routes returns the route patterns ("METHOD /path") each function serves,
// as the code registers them.
func Routes() map[string][]string {
	a := &App{Keys: &keys.Service{}, Admin: &admin.Service{}, Chat: &chat.Executor{}, Credits: &usage.CreditsService{}, Usage: &usage.Service{},
		Webhooks: &webhooks.Service{}, Audio: &audio.Store{}}
	out := map[string][]string{}
	for _, fn := range Functions() {
		rec := &httpx.RouteRecorder{}
		a.register(rec, rec, fn)
		out[fn] = rec.Patterns
	}
	return out
}

// Handler returns the HTTP handler serving the routes of the named functions
// (all of them when names is empty), behind request ids, logging and auth.
func (a *App) Handler(names ...string) http.Handler {
	if a.VaultErr != nil && (len(names) == 0 || slices.ContainsFunc(names, func(n string) bool {
		return n == FnKeys || n == FnValidate || n == FnChat
	})) {
		a.Log.Error("key encryption is not configured; saving and using keys is refused until it is", "err", a.VaultErr.Error())
	}
	mux := http.NewServeMux()
	public := http.NewServeMux() // the page carries no data; its API calls are authenticated
	a.register(mux, public, names...)
	mux.Handle("/", httpx.NoRouteHandler(mux))
	if a.Verifier == nil { // wired with NoVerifier: serve nothing rather than unverified requests
		return httpx.Middleware(a.Log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			httpx.WriteError(w, r, apperr.New(apperr.ServiceUnavailable, "this function has no token verifier configured"))
		}))
	}
	public.Handle("/", chat.Unrouted(a.Verifier.Middleware(mux)))
	return httpx.Middleware(a.Log, public)
}

// Getenv returns os.Getenv with s trimmed; a convenience for mains.
func Getenv(k string) string { return strings.TrimSpace(os.Getenv(k)) }

// Option changes the Config FromEnv wires.
type Option func(*Config)

// WithoutVerifier wires no token verifier (the revalidator serves no
// request): AUTH_* settings, right or wrong, never stop it.
func WithoutVerifier() Option { return func(c *Config) { c.NoVerifier = true } }

// FromEnv loads the AWS SDK config and clients and wires an App from the
// process environment: what every function main and the dev server do first.
// AUTH_JWT_SECRET_ARN, when set, names a Secrets Manager secret holding the
// HS256 secret, read here (so the secret is not a plain Lambda environment
// variable); it excludes AUTH_JWT_SECRET.
func FromEnv(ctx context.Context, log *slog.Logger, opts ...Option) (*App, Clients, error) {
	awsCfg, err := awsclient.Load(ctx)
	if err != nil {
		return nil, Clients{}, err
	}
	c := NewClients(awsCfg)
	cfg := ConfigFromEnv(Getenv)
	for _, o := range opts {
		o(&cfg)
	}
	if arn := Getenv("AUTH_JWT_SECRET_ARN"); arn != "" && !cfg.NoVerifier {
		if len(cfg.Auth.HS256Secret) > 0 {
			return nil, c, fmt.Errorf("auth: AUTH_JWT_SECRET and AUTH_JWT_SECRET_ARN are both set; set only one")
		}
		secret, err := LoadJWTSecret(ctx, secretsmanager.NewFromConfig(awsCfg), arn)
		if err != nil {
			return nil, c, err
		}
		cfg.Auth.HS256Secret = secret
	}
	var ik *InternalKeys
	if arn := Getenv("INTERNAL_KEYS_SECRET_ARN"); arn != "" {
		ik = &InternalKeys{SM: secretsmanager.NewFromConfig(awsCfg), ARN: arn, Base: cfg.InternalKeys,
			TTL: durationEnv(Getenv, "INTERNAL_KEYS_TTL", DefaultInternalKeysTTL), Log: log}
		if err := ik.Load(ctx); err != nil {
			return nil, c, err
		}
		cfg.InternalKeys = ik.Current(ctx)
	}
	a, err := New(ctx, cfg, c, log)
	if a != nil {
		a.InternalKeys = ik
	}
	return a, c, err
}

// MustHandler wires the named function from the process environment and
// returns its handler; a start-up failure is logged and exits the process
// (Lambda then reports the init error).
func MustHandler(fn string) http.Handler {
	log := NewLogger()
	a, _, err := FromEnv(context.Background(), log)
	if err != nil {
		log.Error("start-up failed", "function", fn, "err", err.Error())
		os.Exit(1)
	}
	return a.Handler(fn)
}
