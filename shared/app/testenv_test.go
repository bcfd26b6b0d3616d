package app_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/fakeprovider"
)

func TestMain(m *testing.M) {
	code := awstest.Main(m)
	// Every exchange made through testEnv.do must match docs/openapi.yaml.
	if openAPIMain(os.Stderr, testing.Verbose()) != 0 && code == 0 {
		code = 1
	}
	// No exchange of any test carries a key that test used, or an internal key.
	if secretScanMain(os.Stderr) != 0 && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// lockedBuffer collects log lines from concurrent handlers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testEnv is one dev-server handler (all functions' routes, the same
// handlers the Lambdas use) over a real emulator and the fake provider.
type testEnv struct {
	t          *testing.T
	srv        *httptest.Server
	fake       *fakeprovider.Server
	logs       *lockedBuffer
	transcript *lockedBuffer // every response body, for secrecy checks
	vars       map[string]string
	secret     []byte
	db         *dynamodb.Client
	clients    app.Clients
	app        *app.App
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newEnv builds an env; edit may change the environment variables (set a
// value to "" to unset it) before the app is wired.
func newEnv(t *testing.T, edit func(vars map[string]string)) *testEnv {
	t.Helper()
	fake := fakeprovider.New()
	t.Cleanup(fake.Close)
	t.Cleanup(func() { testKeys.add(t.Name(), fake.Keys()...) })
	fake.SetKey(internalOpenAIKey, fakeprovider.OK())
	fake.SetKey(internalAnthropicKey, fakeprovider.OK())
	e := &testEnv{t: t, fake: fake, logs: &lockedBuffer{}, transcript: &lockedBuffer{}}
	e.secret = []byte(randomHex(t, 32))
	e.vars = map[string]string{
		"TABLE_PREFIX":               awstest.Prefix(t),
		"ENCRYPTION_KEY":             randomHex(t, 32),
		"AUTH_JWT_SECRET":            string(e.secret),
		"OPENAI_BASE_URL":            fake.OpenAIBaseURL(),
		"ANTHROPIC_BASE_URL":         fake.AnthropicBaseURL(),
		"INTERNAL_OPENAI_API_KEY":    internalOpenAIKey,
		"INTERNAL_ANTHROPIC_API_KEY": internalAnthropicKey,
		"SETTINGS_CACHE_TTL":         "1ms",
		"UPSTREAM_HEADER_TIMEOUT":    "400ms",
		"UPSTREAM_TIMEOUT":           "1s", // a stalled non-streamed answer
	}
	if edit != nil {
		edit(e.vars)
	}
	e.start()
	return e
}

func (e *testEnv) start() {
	t := e.t
	cfgAWS := awstest.Config(t)
	clients := app.NewClients(cfgAWS)
	e.db = clients.DynamoDB
	e.clients = clients
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := app.Bootstrap(ctx, clients, e.vars["TABLE_PREFIX"]); err != nil {
		t.Fatal(err)
	}
	e.startWith(clients)
}

// restart rewires the app from e.vars (same tables, same fake provider).
func (e *testEnv) restart() { e.startWith(e.clients) }

func (e *testEnv) startWith(clients app.Clients) {
	t := e.t
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(e.logs), nil))
	a, err := app.New(context.Background(), app.ConfigFromEnv(func(k string) string { return e.vars[k] }), clients, log)
	if err != nil {
		t.Fatal(err)
	}
	e.app = a
	if e.srv != nil {
		e.srv.Close()
	}
	e.srv = httptest.NewServer(a.Handler())
	t.Cleanup(e.srv.Close)
}

func (e *testEnv) token(user, role string) string {
	e.t.Helper()
	tok, err := auth.Mint(e.secret, user, role, time.Hour, "", "")
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response is not JSON (%d): %q", r.Status, r.Body)
	}
	return m
}

// errCode returns error.code of an error envelope, checking its shape.
func (r response) errCode(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	ev, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error envelope in %q", r.Body)
	}
	for _, f := range []string{"type", "code", "message", "request_id"} {
		if s, _ := ev[f].(string); s == "" {
			t.Fatalf("error envelope lacks %q: %q", f, r.Body)
		}
	}
	if ev["request_id"] != r.Header.Get("X-Request-Id") {
		t.Fatalf("request_id %v != header %q", ev["request_id"], r.Header.Get("X-Request-Id"))
	}
	return ev["code"].(string)
}

func (e *testEnv) do(method, path, token string, body any, hdr ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	e.transcript.Write(raw)
	e.transcript.Write([]byte("\n"))
	recorded.add(exchange{Test: e.t.Name(), Method: method, Path: path, ContentType: req.Header.Get("Content-Type"),
		Status: resp.StatusCode, Header: resp.Header, Body: raw})
	return response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// setTier makes user's account with tier through the admin API.
func (e *testEnv) setTier(user, tier string) {
	e.t.Helper()
	r := e.do("PUT", "/v1/admin/users/"+user, e.token("root", "admin"), map[string]any{"tier": tier, "email": user + "@example.com"})
	if r.Status != 200 {
		e.t.Fatalf("set tier: %d %s", r.Status, r.Body)
	}
}

// keyItem reads the raw DynamoDB row of user's provider key (nil if none).
func (e *testEnv) keyItem(user, provider string) map[string]types.AttributeValue {
	e.t.Helper()
	out, err := e.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(e.vars["TABLE_PREFIX"] + "byok"),
		Key:            map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "USER#" + user}, "sk": &types.AttributeValueMemberS{Value: "KEY#" + provider}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if len(out.Item) == 0 {
		return nil
	}
	return out.Item
}

// scanAll returns every raw item of the main table, rendered as text.
func (e *testEnv) scanAll() string {
	e.t.Helper()
	var sb strings.Builder
	p := dynamodb.NewScanPaginator(e.db, &dynamodb.ScanInput{TableName: aws.String(e.vars["TABLE_PREFIX"] + "byok")})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		for _, it := range out.Items {
			for k, v := range it {
				sb.WriteString(k + "=")
				switch x := v.(type) {
				case *types.AttributeValueMemberS:
					sb.WriteString(x.Value)
				case *types.AttributeValueMemberB:
					sb.Write(x.Value)
				default:
					raw, _ := json.Marshal(x)
					sb.Write(raw)
				}
				sb.WriteString("\n")
			}
		}
	}
	return sb.String()
}

// openAIKey and anthropicKey return fresh random keys of each format.
func openAIKey(t testing.TB) string    { return "sk-proj-" + randomHex(t, 24) }
func anthropicKey(t testing.TB) string { return "sk-ant-api03-" + randomHex(t, 24) }

// assertNoLeak fails if any 8-character piece of key that includes a
// random (non-prefix) character appears in text outside the key's hint.
func assertNoLeak(t *testing.T, what, text, key string, prefixLen int) {
	t.Helper()
	hint := "sk-..." + key[len(key)-7:]
	text = strings.ReplaceAll(text, hint, "<hint>")
	start := max(prefixLen-7, 0)
	for i := start; i+8 <= len(key); i++ {
		if strings.Contains(text, key[i:i+8]) {
			t.Fatalf("%s leaks part of a plaintext key (%q at offset %d)", what, key[i:i+8], i)
		}
	}
}

// The platform's own keys in tests (the credits route).
const (
	internalOpenAIKey    = "sk-internal-openai-0123456789abcdef"
	internalAnthropicKey = "sk-ant-internal-0123456789abcdef"
)

// grant adds credits to user through the admin API.
func (e *testEnv) grant(user string, amount int64) int64 {
	e.t.Helper()
	r := e.do("POST", "/v1/admin/users/"+user+"/credits", e.token("root", "admin"),
		map[string]any{"amount": amount, "reason": "test grant"}, "Idempotency-Key", "grant-"+randomHex(e.t, 8))
	if r.Status != 200 {
		e.t.Fatalf("grant: %d %s", r.Status, r.Body)
	}
	return int64(r.json(e.t)["balance"].(float64))
}

// setMode sets the routing mode through the admin API.
func (e *testEnv) setMode(mode string) {
	e.t.Helper()
	if r := e.do("PUT", "/v1/admin/settings", e.token("root", "admin"), map[string]any{"routing_mode": mode}); r.Status != 200 {
		e.t.Fatalf("set mode: %d %s", r.Status, r.Body)
	}
}

// saveKey stores key for user (the fake accepts it at save time).
func (e *testEnv) saveKey(user, provider, key string) {
	e.t.Helper()
	e.fake.SetKey(key, fakeprovider.OK())
	if r := e.do("PUT", "/v1/keys/"+provider, e.token(user, ""), map[string]string{"api_key": key}); r.Status != 200 || r.json(e.t)["status"] != "valid" {
		e.t.Fatalf("save key: %d %s", r.Status, r.Body)
	}
}

// balance reads user's balance through GET /v1/credits.
func (e *testEnv) balance(user string) int64 {
	e.t.Helper()
	r := e.do("GET", "/v1/credits", e.token(user, ""), nil)
	if r.Status != 200 {
		e.t.Fatalf("credits: %d %s", r.Status, r.Body)
	}
	return int64(r.json(e.t)["balance"].(float64))
}
