package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/awsclient"
	"github.com/synthstack/byok/shared/chat"
	"github.com/synthstack/byok/shared/chat/memfakes"
	"github.com/synthstack/byok/shared/credits"
	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/h1"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/jsondec"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

type storageKind int

const (
	storageMemory storageKind = iota
	storageMoto
	storageDelayed // in memory, every call delayed (the storage latency model)
)

func (s storageKind) String() string {
	switch s {
	case storageMoto:
		return "moto storage"
	case storageDelayed:
		return "in-memory storage, " + storageDelay.String() + " per call"
	}
	return "in-memory storage"
}

// storageDelay is the storage latency model's delay per call: about one
// DynamoDB round trip from Lambda in the same region.
const storageDelay = 4 * time.Millisecond

// Gateway is the gateway under test on loopback, with the fake upstream it
// calls. Direct calls go to the fake with the user's key; calls via the
// gateway carry the user's JWT.
type Gateway struct {
	Storage storageKind
	URL     string // gateway base URL
	Token   string // the user's bearer JWT
	Key     string // the user's provider key, as the fake knows it
	Fake    *fakeprovider.Server
	Wiring  string // how the gateway is built, for the report
	// ProxyURL is a bare httputil.ReverseProxy to the same fake (in-memory
	// gateways only): the floor any Go gateway pays for one more hop.
	ProxyURL string
	Latency  *memfakes.Latency // the storage latency model (storageDelayed only)
	idle     *idleGate         // handlers in flight
	close    []func()
	reads    func() int64
	writes   func() int64
	ops      *opCounter // AWS API calls of the gateway (moto storage only)
}

// opCounter counts the AWS API calls made through an SDK HTTP client, by
// X-Amz-Target operation (as shared/app/warm_test.go does).
type opCounter struct {
	mu   sync.Mutex
	ops  map[string]int
	next aws.HTTPClient
}

func (c *opCounter) Do(r *http.Request) (*http.Response, error) {
	op := r.Header.Get("X-Amz-Target")
	if op == "" {
		op = r.Method + " " + r.URL.Path
	}
	c.mu.Lock()
	c.ops[op]++
	c.mu.Unlock()
	return c.next.Do(r)
}

// take returns the calls counted since the last take.
func (c *opCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.ops
	c.ops = map[string]int{}
	return out
}

func (g *Gateway) Close() {
	for i := len(g.close) - 1; i >= 0; i-- {
		g.close[i]()
	}
}

func (g *Gateway) DirectURL() string  { return g.Fake.OpenAIBaseURL() + "/chat/completions" }
func (g *Gateway) ViaURL() string     { return g.URL + "/v1/chat/completions" }
func (g *Gateway) ProxiedURL() string { return g.ProxyURL + "/chat/completions" }

const benchUserKey = "sk-proj-benchmarkkey0123456789abcdef"

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ---------------------------------------------------------------- in-memory

// newMemoryGateway wires chat.Executor exactly like shared/chat's benchmark
// rig (vault with a local wrapping key and an unwrap cache, in-memory user
// row and settings, no-op ledger/limiter/recorder, counting usage writer)
// behind the same middleware as the Lambda handler (request ids, logging,
// JWT auth). With delay > 0 every storage call waits that long (the storage
// latency model). Next to it, a bare httputil.ReverseProxy to the same fake.
func newMemoryGateway(delay time.Duration) (*Gateway, error) {
	fake := fakeprovider.New()
	g := &Gateway{Storage: storageMemory, Key: benchUserKey, Fake: fake, close: []func(){fake.Close},
		Wiring: "chat.Executor wired as in shared/chat/bench_test.go (in-memory user/settings store, no-op ledger, limiter and " +
			"recorder, counting usage writer, local-key vault with unwrap cache, upstream calls through shared/h1 as in app.New) " +
			"behind httpx.Middleware + auth middleware, served by httptest on loopback"}
	if delay > 0 {
		g.Storage, g.Latency = storageDelayed, memfakes.NewLatency(delay)
		g.Wiring += fmt.Sprintf("; every storage call (user row read, settings read, usage write, ledger, limiter) "+
			"waits %s first (memfakes.Latency; the settings read is cached by chat.SettingsCache, so a warm BYOK request "+
			"makes one read and one write)", delay)
	}
	fake.SetKey(benchUserKey, fakeprovider.OK())
	w, err := vault.NewLocalWrapper(randomHex(32))
	if err != nil {
		return nil, err
	}
	v := vault.New(w, nil, vault.WithCache(100, time.Hour))
	blob, err := v.Seal(context.Background(), vault.Context{UserID: "alice", Provider: "openai", KeyID: "k1"}, []byte(benchUserKey))
	if err != nil {
		return nil, err
	}
	key := store.KeyRecord{UserID: "alice", Provider: "openai", KeyID: "k1", Ciphertext: blob, Status: "valid", Hint: "sk-...bcdef"}
	ms := &memfakes.Store{
		// Keys and Set as store.GetUser fills them: the BYOK route walks Set.
		User: store.User{Account: &store.Account{UserID: "alice", Tier: "premium"},
			Keys: map[string]store.KeyRecord{"openai": key}, Set: store.NewKeySet(key)},
		Settings: routing.DefaultSettings(routing.BYOKFirst),
		Latency:  g.Latency,
	}
	mu := &memfakes.Usage{Latency: g.Latency}
	secret := []byte(randomHex(16))
	ver, err := auth.NewVerifier(context.Background(), auth.Config{HS256Secret: secret})
	if err != nil {
		return nil, err
	}
	if g.Token, err = auth.Mint(secret, "alice", "", 24*time.Hour, "", ""); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 512
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	x := &chat.Executor{
		Users: ms, Settings: &chat.SettingsCache{Store: ms, TTL: time.Hour}, Keys: v, KeyRecorder: memfakes.Recorder{},
		Ledger: memfakes.Ledger{Latency: g.Latency}, Limiter: memfakes.Limiter{Latency: g.Latency}, Usage: mu, Prices: credits.DefaultPrices(),
		Circuit: chat.NewCircuit(time.Minute, nil), Events: events.Nop{}, HTTP: &http.Client{Transport: &h1.Transport{MaxIdleConnsPerHost: 512, Fallback: tr}},
		Decoders:  &jsondec.Pool{},
		Endpoints: provider.Endpoints{OpenAI: fake.OpenAIBaseURL(), Anthropic: fake.AnthropicBaseURL()},
		Log:       log,
	}
	mux := http.NewServeMux()
	x.Register(mux)
	g.idle = &idleGate{}
	srv := httptest.NewServer(g.idle.wrap(httpx.Middleware(log, ver.Middleware(mux))))
	g.URL = srv.URL
	g.close = append(g.close, srv.Close)
	g.reads, g.writes = ms.Reads.Load, mu.Writes.Load
	proxy, err := newBareProxy(fake.OpenAIBaseURL())
	if err != nil {
		g.Close()
		return nil, err
	}
	g.ProxyURL = proxy.URL
	g.close = append(g.close, proxy.Close)
	return g, nil
}

// idleGate counts the gateway's handlers in flight, so a load loop can
// start each request only when the previous one has finished entirely (its
// work after the answer too), as a Lambda instance takes its next
// invocation only then. Over one keep-alive connection, net/http would
// otherwise make the next request wait for the previous handler's tail,
// and the measurement could not tell a write after the answer from one
// before it.
type idleGate struct {
	mu       sync.Mutex
	inFlight int
	idle     *sync.Cond
}

func (g *idleGate) wrap(h http.Handler) http.Handler {
	g.idle = sync.NewCond(&g.mu)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.inFlight++
		g.mu.Unlock()
		defer func() {
			g.mu.Lock()
			if g.inFlight--; g.inFlight == 0 {
				g.idle.Broadcast()
			}
			g.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

// wait returns once no handler is running.
func (g *idleGate) wait() {
	g.mu.Lock()
	for g.inFlight > 0 {
		g.idle.Wait()
	}
	g.mu.Unlock()
}

// newBareProxy is the floor of docs/api.md §14's proxy row: a plain
// httputil.ReverseProxy to the fake, on net/http's own Transport (the
// gateway's fallback transport, as app.New tunes it), flushing every write (as a streaming gateway must). It does
// nothing else: no auth, no parse, no storage; the client's Authorization
// (the provider key itself) goes through as it is.
func newBareProxy(base string) (*httptest.Server, error) {
	target, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 512
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     tr,
		FlushInterval: -1,
		// Its own failures (a body copy cut short) go to stderr: the floor
		// failing is worth knowing about, not a gateway failure.
		ErrorLog: log.New(os.Stderr, "bench: bare proxy: ", 0),
	}
	return httptest.NewServer(rp), nil
}

// ---------------------------------------------------------------- moto

// newMotoGateway wires the gateway exactly as the Lambdas and the dev
// server do (app.New: DynamoDB store, usage writer, ledger, rate limiter,
// SNS events) against the emulator at endpoint, creates the tables (like
// DEV_BOOTSTRAP=1), makes alice a premium user through the admin API and
// saves her key through PUT /v1/keys/openai (validated against the fake).
func newMotoGateway(endpoint string, awsEnv []string) (*Gateway, error) {
	for _, kv := range awsEnv {
		k, v, _ := strings.Cut(kv, "=")
		os.Setenv(k, v)
	}
	fake := fakeprovider.New()
	g := &Gateway{Storage: storageMoto, Key: benchUserKey, Fake: fake, close: []func(){fake.Close},
		Wiring: "app.New with app.NewClients against the emulator at " + endpoint + " (the wiring of the Lambdas and the dev server: " +
			"DynamoDB store, usage writer, ledger, rate limiter, SNS events, vault with a KMS key created in the emulator), " +
			"tables created like DEV_BOOTSTRAP=1, " +
			"key saved through PUT /v1/keys/openai; app.Handler() served by httptest on loopback"}
	fake.SetKey(benchUserKey, fakeprovider.OK())
	secret := randomHex(16)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	awsCfg, err := awsclient.Load(ctx)
	if err != nil {
		g.Close()
		return nil, err
	}
	// Keys are wrapped with a KMS key in the emulator, as the chat function
	// does in AWS (KMS_KEY_ID), so KMS calls show in the counts.
	kout, err := kms.NewFromConfig(awsCfg).CreateKey(ctx, &kms.CreateKeyInput{})
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("create KMS key: %w", err)
	}
	vars := map[string]string{
		"TABLE_PREFIX":       fmt.Sprintf("bench%d-", time.Now().UnixNano()%1e9),
		"KMS_KEY_ID":         aws.ToString(kout.KeyMetadata.KeyId),
		"AUTH_JWT_SECRET":    secret,
		"OPENAI_BASE_URL":    fake.OpenAIBaseURL(),
		"ANTHROPIC_BASE_URL": fake.AnthropicBaseURL(),
		"SETTINGS_CACHE_TTL": "10m",
	}
	cfg := app.ConfigFromEnv(func(k string) string { return vars[k] })
	g.ops = &opCounter{ops: map[string]int{}, next: awsCfg.HTTPClient}
	awsCfg.HTTPClient = g.ops // the SDK's own client, counted
	clients := app.NewClients(awsCfg)
	arn, err := app.Bootstrap(ctx, clients, cfg.TablePrefix)
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("create tables: %w", err)
	}
	cfg.SNSTopicARN = arn
	a, err := app.New(ctx, cfg, clients, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		g.Close()
		return nil, err
	}
	g.idle = &idleGate{}
	srv := httptest.NewServer(g.idle.wrap(a.Handler()))
	g.URL = srv.URL
	g.close = append(g.close, srv.Close)
	admin, _ := auth.Mint([]byte(secret), "root", "admin", time.Hour, "", "")
	if g.Token, err = auth.Mint([]byte(secret), "alice", "", 24*time.Hour, "", ""); err != nil {
		g.Close()
		return nil, err
	}
	if st, body := doJSON("PUT", g.URL+"/v1/admin/users/alice", admin, map[string]any{"tier": "premium", "email": "alice@example.com"}); st != 200 {
		g.Close()
		return nil, fmt.Errorf("set tier: %d %s", st, body)
	}
	st, body := doJSON("PUT", g.URL+"/v1/keys/openai", g.Token, map[string]string{"api_key": benchUserKey})
	if st != 200 || !strings.Contains(body, `"valid"`) {
		g.Close()
		return nil, fmt.Errorf("save key: %d %s", st, body)
	}
	return g, nil
}

func doJSON(method, url, token string, v any) (int, string) {
	body, _ := json.Marshal(v)
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
