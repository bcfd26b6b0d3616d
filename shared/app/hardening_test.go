package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/chat"
	"github.com/synthstack/byok/shared/credits"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/usage"
)

// A duplicated key is refused before anything is billed or sent: the
// provider would read the last "model", we billed the first.
func TestDuplicateKeysNeverReachUpstream(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("bob", "free")
	e.grant("bob", 1_000_000)
	tok := e.token("bob", "")
	before := e.fake.TotalCalls()
	for path, body := range map[string]string{
		"/v1/chat/completions": `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"model":"o1-pro"}`,
		"/v1/messages":         `{"model":"claude-3-5-haiku-20241022","max_tokens":5,"stream":false,"messages":[{"role":"user","content":"x"}],"stream":true}`,
		"/v1/embeddings":       `{"model":"text-embedding-3-small","input":"x","input":["a","b"]}`,
	} {
		r := e.do("POST", path, tok, body)
		if r.Status != 400 || !strings.Contains(string(r.Body), "duplicate key") || r.Header.Get("X-Byok-Route") != "none" {
			t.Fatalf("%s: %d %s route=%q", path, r.Status, r.Body, r.Header.Get("X-Byok-Route"))
		}
	}
	if e.fake.TotalCalls() != before {
		t.Fatal("a request with a duplicated key reached the upstream")
	}
	if bal := e.balance("bob"); bal != 1_000_000 {
		t.Fatalf("charged %d", 1_000_000-bal)
	}
}

// Every upstream error (all statuses, both routes, both caller protocols,
// both upstream protocols) is rebuilt: no key it echoed, no extra field.
func TestUpstreamErrorsRebuiltAndScrubbed(t *testing.T) {
	e := newEnv(t, nil)
	e.setMode("byok_only")
	e.setTier("alice", "premium")
	okey, akey := openAIKey(t), anthropicKey(t)
	e.saveKey("alice", "openai", okey)
	e.saveKey("alice", "anthropic", akey)
	e.setTier("carol", "free")
	e.grant("carol", 1_000_000)
	models := map[string]string{"gpt-4o-mini": okey, "claude-3-5-haiku-20241022": akey}
	for _, status := range []int{400, 401, 403, 404, 413, 422, 429, 500, 529} {
		for model, key := range models {
			internal := internalOpenAIKey
			if strings.HasPrefix(model, "claude") {
				internal = internalAnthropicKey
			}
			e.fake.SetKey(key, fakeprovider.Behavior{Status: status, EchoKey: true})
			e.fake.SetKey(internal, fakeprovider.Behavior{Status: status, EchoKey: true})
			for _, user := range []string{"alice", "carol"} {
				for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
					r := e.do("POST", path, e.token(user, ""), chatBody(model, 10, "hi"))
					name := user + " " + model + " " + path + " " + itoa(status)
					if r.Status < 400 {
						t.Fatalf("%s: %d %s", name, r.Status, r.Body)
					}
					checkRebuilt(t, name, r.Body, path == "/v1/messages", okey, akey, internal)
				}
			}
		}
	}
	// Streams' error events too, relayed and translated (the 401s above
	// marked the keys invalid: save them again).
	e.saveKey("alice", "openai", okey)
	e.saveKey("alice", "anthropic", akey)
	for model, key := range models {
		e.fake.SetKey(key, fakeprovider.Behavior{StreamError: true, EchoKey: true, Chunks: 3})
		for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
			r := e.do("POST", path, e.token("alice", ""), map[string]any{"model": model, "max_tokens": 10, "stream": true,
				"messages": []map[string]string{{"role": "user", "content": "x"}}})
			name := "stream " + model + " " + path
			if r.Status != 200 {
				t.Fatalf("%s: %d %s", name, r.Status, r.Body)
			}
			var errData string
			for _, line := range strings.Split(string(r.Body), "\n") {
				if d, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(d, `"error"`) {
					errData = d
				}
			}
			if errData == "" {
				t.Fatalf("%s: no error event in %s", name, r.Body)
			}
			checkRebuilt(t, name, []byte(errData), path == "/v1/messages", okey, akey, "")
		}
	}
}

// checkRebuilt: the error has the caller's shape and nothing but type, code,
// message (and request_id, param null); no key in any of it.
func checkRebuilt(t *testing.T, name string, body []byte, anthropic bool, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if k != "" && leakedPiece(string(body), k) != "" {
			t.Fatalf("%s: a key reached the client: %s", name, body)
		}
	}
	if strings.Contains(string(body), "Bearer") {
		t.Fatalf("%s: a bearer credential reached the client: %s", name, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("%s: not JSON: %s", name, body)
	}
	for k := range m {
		if k != "error" && k != "type" && k != "request_id" {
			t.Fatalf("%s: upstream field %q relayed: %s", name, k, body)
		}
	}
	ev, _ := m["error"].(map[string]any)
	if ev == nil || ev["message"] == "" || ev["type"] == "" {
		t.Fatalf("%s: no error envelope: %s", name, body)
	}
	if anthropic != (m["type"] == "error") {
		t.Fatalf("%s: wrong protocol shape: %s", name, body)
	}
	for k, v := range ev {
		switch k {
		case "type", "code", "message", "request_id":
		case "param":
			if v != nil {
				t.Fatalf("%s: param relayed: %s", name, body)
			}
		default:
			t.Fatalf("%s: upstream field error.%s relayed: %s", name, k, body)
		}
	}
}

// n × max_tokens is reserved: a balance that covers one answer but not
// fifty is refused with 402 before any upstream call (credit_first with a
// BYOK key: BYOK instead).
func TestReservationCoversChoices(t *testing.T) {
	e := newEnv(t, nil)
	body := []byte(`{"model":"gpt-4o-mini","n":50,"max_tokens":1000,"messages":[{"role":"user","content":"hello"}]}`)
	prices := credits.DefaultPrices()
	in, _ := credits.EstimateTokens(len(body), 1000)
	one, fifty := prices.Credits("gpt-4o-mini", in, 1000), prices.Credits("gpt-4o-mini", in, 50_000)
	if one >= fifty {
		t.Fatalf("prices: %d %d", one, fifty)
	}
	e.setTier("dan", "free")
	e.grant("dan", one+1)
	before := e.fake.Calls(internalOpenAIKey)
	r := e.do("POST", "/v1/chat/completions", e.token("dan", ""), body)
	if r.Status != 402 || r.errCode(t) != "payment_required" {
		t.Fatalf("n=50 on a balance for one: %d %s", r.Status, r.Body)
	}
	if e.fake.Calls(internalOpenAIKey) != before {
		t.Fatal("upstream called for a request the balance cannot cover")
	}
	if bal := e.balance("dan"); bal != one+1 {
		t.Fatalf("balance %d", bal)
	}
	// credit_first: the user's own key serves it instead.
	e.setMode("credit_first")
	e.setTier("erin", "premium")
	e.grant("erin", one+1)
	key := openAIKey(t)
	e.saveKey("erin", "openai", key)
	r = e.do("POST", "/v1/chat/completions", e.token("erin", ""), body)
	if r.Status != 200 || r.Header.Get("X-Byok-Route") != "byok" || e.fake.Calls(internalOpenAIKey) != before {
		t.Fatalf("credit_first: %d route %q %s", r.Status, r.Header.Get("X-Byok-Route"), r.Body)
	}
}

// An answer over UPSTREAM_MAX_RESPONSE_BYTES is a 502, never a truncated
// 200; a stream event over it ends the stream with an error event.
func TestRelayLimitFailsClosed(t *testing.T) {
	e := newEnv(t, func(v map[string]string) { v["UPSTREAM_MAX_RESPONSE_BYTES"] = "4096" })
	e.setTier("alice", "premium")
	key := openAIKey(t)
	e.saveKey("alice", "openai", key)
	tok := e.token("alice", "")
	big := `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"` + strings.Repeat("a", 5000) + `"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`
	e.fake.SetKey(key, fakeprovider.Behavior{Body: big})
	r := e.do("POST", "/v1/chat/completions", tok, chatBody("gpt-4o-mini", 10, "x"))
	if r.Status != 502 || r.errCode(t) != "provider_error" {
		t.Fatalf("oversize answer: %d %.200s", r.Status, r.Body)
	}
	e.fake.SetKey(key, fakeprovider.Behavior{Reply: strings.Repeat("b", 5000), Chunks: 1})
	r = e.do("POST", "/v1/chat/completions", tok, map[string]any{"model": "gpt-4o-mini", "stream": true,
		"messages": []map[string]string{{"role": "user", "content": "x"}}})
	if r.Status != 200 || strings.Contains(string(r.Body), strings.Repeat("b", 100)) || !strings.Contains(string(r.Body), `"error"`) ||
		strings.Contains(string(r.Body), "[DONE]") {
		t.Fatalf("oversize event: %d %.300s", r.Status, r.Body)
	}
	e.fake.SetKey(key, fakeprovider.OK())
	if r := e.do("POST", "/v1/chat/completions", tok, chatBody("gpt-4o-mini", 10, "x")); r.Status != 200 {
		t.Fatalf("small answer: %d", r.Status)
	}
}

// Multi-line data from upstream is re-framed: one data: line per line.
func TestSSEReframed(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	okey, akey := openAIKey(t), anthropicKey(t)
	e.saveKey("alice", "openai", okey)
	e.saveKey("alice", "anthropic", akey)
	e.fake.SetKey(okey, fakeprovider.Behavior{MultilineData: true, Chunks: 3})
	e.fake.SetKey(akey, fakeprovider.Behavior{MultilineData: true, Chunks: 3})
	for _, c := range []struct{ path, model string }{
		{"/v1/chat/completions", "gpt-4o-mini"}, {"/v1/messages", "claude-3-5-haiku-20241022"},
		{"/v1/chat/completions", "claude-3-5-haiku-20241022"}, {"/v1/messages", "gpt-4o-mini"},
	} {
		r := e.do("POST", c.path, e.token("alice", ""), map[string]any{"model": c.model, "max_tokens": 10, "stream": true,
			"messages": []map[string]string{{"role": "user", "content": "x"}}})
		if r.Status != 200 {
			t.Fatalf("%s %s: %d %s", c.path, c.model, r.Status, r.Body)
		}
		events := 0
		var data []string
		for _, line := range strings.Split(string(r.Body), "\n") {
			switch {
			case line == "":
				if len(data) > 0 {
					events++
					if d := strings.Join(data, "\n"); d != "[DONE]" && !json.Valid([]byte(d)) {
						t.Fatalf("%s %s: event data is not JSON: %q", c.path, c.model, d)
					}
				}
				data = nil
			case strings.HasPrefix(line, "data: "):
				data = append(data, strings.TrimPrefix(line, "data: "))
			case strings.HasPrefix(line, "event: "):
			default:
				t.Fatalf("%s %s: a raw line inside an event: %q", c.path, c.model, line)
			}
		}
		if events < 4 {
			t.Fatalf("%s %s: %d events", c.path, c.model, events)
		}
	}
}

// deadlineUsage and deadlineLedger record whether the detached writes had
// a deadline.
type deadlineUsage struct {
	chat.UsageWriter
	mu       sync.Mutex
	deadline []bool
}

func (d *deadlineUsage) Put(ctx context.Context, r usage.Record) error {
	_, ok := ctx.Deadline()
	d.mu.Lock()
	d.deadline = append(d.deadline, ok)
	d.mu.Unlock()
	return d.UsageWriter.Put(ctx, r)
}

type deadlineLedger struct {
	chat.Ledger
	mu       sync.Mutex
	deadline []bool
}

func (d *deadlineLedger) Settle(ctx context.Context, userID, requestID string, reserved, actual int64, meta map[string]any) (int64, error) {
	_, ok := ctx.Deadline()
	d.mu.Lock()
	d.deadline = append(d.deadline, ok)
	d.mu.Unlock()
	return d.Ledger.Settle(ctx, userID, requestID, reserved, actual, meta)
}

// Usage and ledger writes outlive the client but not a deadline.
func TestDetachedWritesHaveDeadline(t *testing.T) {
	e := newEnv(t, nil)
	du := &deadlineUsage{UsageWriter: e.app.Chat.Usage}
	dl := &deadlineLedger{Ledger: e.app.Chat.Ledger}
	e.app.Chat.Usage, e.app.Chat.Ledger = du, dl
	e.setTier("alice", "premium")
	e.saveKey("alice", "openai", openAIKey(t))
	e.setTier("carol", "free")
	e.grant("carol", 1_000_000)
	for _, u := range []string{"alice", "carol"} {
		if r := e.do("POST", "/v1/chat/completions", e.token(u, ""), chatBody("gpt-4o-mini", 10, "x")); r.Status != 200 {
			t.Fatalf("%s: %d %s", u, r.Status, r.Body)
		}
	}
	// The writes follow the answer (the client may have it first).
	waitFor(t, "the usage write and the settle", func() bool {
		du.mu.Lock()
		defer du.mu.Unlock()
		dl.mu.Lock()
		defer dl.mu.Unlock()
		return len(du.deadline) == 1 && len(dl.deadline) == 1
	})
	if !du.deadline[0] || !dl.deadline[0] {
		t.Fatalf("detached writes without a deadline: usage %v, settle %v", du.deadline, dl.deadline)
	}
}

// blockingUsers holds GetUser until the client goes away.
type blockingUsers struct {
	entered chan struct{}
	once    sync.Once
}

func (b *blockingUsers) GetUser(ctx context.Context, _ string) (store.User, error) {
	b.once.Do(func() { close(b.entered) })
	<-ctx.Done()
	return store.User{}, ctx.Err()
}

// A client that disconnects during a storage call is logged as 499, never
// as an internal error.
func TestClientGoneDuringStorageIs499(t *testing.T) {
	e := newEnv(t, nil)
	bu := &blockingUsers{entered: make(chan struct{})}
	e.app.Chat.Users = bu
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/v1/chat/completions", bytes.NewReader(chatBody("gpt-4o-mini", 5, "x")))
	req.Header.Set("Authorization", "Bearer "+e.token("alice", ""))
	go func() { <-bu.entered; cancel() }()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	waitFor(t, "the access log line", func() bool { return strings.Contains(e.logs.String(), `"path":"/v1/chat/completions"`) })
	logs := e.logs.String()
	if !strings.Contains(logs, `"status":499`) || strings.Contains(logs, `"status":500`) || strings.Contains(logs, `"level":"ERROR"`) {
		t.Fatalf("client gone not logged as 499:\n%s", logs)
	}
}

// The header timeout applies to streams only; a non-streamed answer slower
// than it is served, within UPSTREAM_TIMEOUT; UPSTREAM_IDLE_TIMEOUT reaches
// the executor.
func TestUpstreamTimeouts(t *testing.T) {
	e := newEnv(t, func(v map[string]string) {
		v["UPSTREAM_HEADER_TIMEOUT"], v["UPSTREAM_TIMEOUT"], v["UPSTREAM_IDLE_TIMEOUT"] = "100ms", "2s", "300ms"
	})
	if e.app.Chat.IdleTimeout != 300*time.Millisecond || e.app.Chat.UpstreamTimeout != 2*time.Second {
		t.Fatalf("timeouts not wired: idle %v, whole answer %v", e.app.Chat.IdleTimeout, e.app.Chat.UpstreamTimeout)
	}
	e.setTier("alice", "premium")
	e.grant("alice", 1_000_000)
	key := openAIKey(t)
	e.saveKey("alice", "openai", key)
	tok := e.token("alice", "")
	e.fake.SetKey(key, fakeprovider.Behavior{Delay: 400 * time.Millisecond})
	r := e.do("POST", "/v1/chat/completions", tok, chatBody("gpt-4o-mini", 5, "x"))
	if r.Status != 200 || r.Header.Get("X-Byok-Route") != "byok" || r.Header.Get("X-Byok-Fallback") != "" {
		t.Fatalf("slow non-streamed answer: %d route %q fallback %q", r.Status, r.Header.Get("X-Byok-Route"), r.Header.Get("X-Byok-Fallback"))
	}
	// A stream whose headers are late is unavailable: credits serve it.
	r = e.do("POST", "/v1/chat/completions", tok, map[string]any{"model": "gpt-4o-mini", "stream": true,
		"messages": []map[string]string{{"role": "user", "content": "x"}}})
	if r.Status != 200 || r.Header.Get("X-Byok-Fallback") != "timeout" {
		t.Fatalf("slow stream headers: %d fallback %q", r.Status, r.Header.Get("X-Byok-Fallback"))
	}
	// Past the whole-answer timeout: a timeout.
	e.fake.SetKey(key, fakeprovider.Behavior{Stall: true})
	e.fake.SetKey(internalOpenAIKey, fakeprovider.Behavior{Stall: true})
	r = e.do("POST", "/v1/chat/completions", tok, chatBody("gpt-4o-mini", 5, "x"))
	if r.Status != 502 { // the circuit opened by the stream above sends it to credits, which stall too
		t.Fatalf("stalled non-streamed answer: %d %s", r.Status, r.Body)
	}
}

// Failures before a route is chosen say X-Byok-Route: none.
func TestRouteNoneBeforeRouting(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token("alice", "")
	for name, body := range map[string]string{
		"bad JSON":      `{"model":`,
		"unknown model": `{"model":"llama-3","messages":[{"role":"user","content":"x"}]}`,
		"wrong type":    `{"model":"gpt-4o","messages":[{}],"n":"2"}`,
	} {
		r := e.do("POST", "/v1/chat/completions", tok, body)
		if r.Status < 400 || r.Header.Get("X-Byok-Route") != "none" {
			t.Fatalf("%s: %d route %q", name, r.Status, r.Header.Get("X-Byok-Route"))
		}
	}
	// Refused by the token check, before the chat handler runs; other routes
	// carry no route header.
	for _, path := range []string{"/v1/chat/completions", "/v1/messages", "/v1/embeddings", "/v1/models"} {
		method := "POST"
		if path == "/v1/models" {
			method = "GET"
		}
		for _, bad := range []string{"", "not-a-token"} {
			r := e.do(method, path, bad, chatBody("gpt-4o-mini", 5, "x"))
			if r.Status != 401 || r.Header.Get("X-Byok-Route") != "none" {
				t.Errorf("%s %s with token %q: %d route %q", method, path, bad, r.Status, r.Header.Get("X-Byok-Route"))
			}
		}
	}
	if r := e.do("GET", "/v1/keys", "", nil); r.Status != 401 || r.Header.Get("X-Byok-Route") != "" {
		t.Errorf("GET /v1/keys without a token: %d route %q", r.Status, r.Header.Get("X-Byok-Route"))
	}
	cfg := awstest.Config(t)
	cfg.BaseEndpoint = aws.String("http://127.0.0.1:1")
	cfg.RetryMaxAttempts = 1
	e.startWith(app.NewClients(cfg))
	calls := e.fake.TotalCalls()
	r := e.do("POST", "/v1/chat/completions", tok, chatBody("gpt-4o-mini", 5, "x"))
	if r.Status != 503 || r.Header.Get("X-Byok-Route") != "none" {
		t.Fatalf("storage down: %d route %q %s", r.Status, r.Header.Get("X-Byok-Route"), r.Body)
	}
	if n := e.fake.TotalCalls() - calls; n != 0 {
		t.Fatalf("storage down: %d upstream calls, want none", n)
	}
}

// Body limits: on Lambda what fits in its 6 MB payload, named in MB; audio
// is pointed at the upload route. Locally 10 MiB / 25 MiB.
func TestBodyLimits(t *testing.T) {
	for _, c := range []struct {
		lambda      bool
		json, audio int
		jsonMsg     string
	}{
		{true, 5_800_001, 4_350_001, "5.8 MB"},
		{false, 10<<20 + 1, 25<<20 + 1, "10 MiB"},
	} {
		e := newEnv(t, func(v map[string]string) {
			if c.lambda {
				v["AWS_LAMBDA_FUNCTION_NAME"] = "byok-chat"
			}
		})
		tok := e.token("alice", "")
		body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + strings.Repeat("x", c.json) + `"}]}`
		r := e.do("POST", "/v1/chat/completions", tok, body)
		if r.Status != 413 || r.errCode(t) != "request_too_large" || !strings.Contains(string(r.Body), c.jsonMsg) {
			t.Fatalf("lambda=%v json: %d %s", c.lambda, r.Status, r.Body)
		}
		ct, mp := multipartBody(t, map[string]string{"model": "whisper-1"}, bytes.Repeat([]byte{1}, c.audio))
		r = e.do("POST", "/v1/audio/transcriptions", tok, mp, "Content-Type", ct)
		if r.Status != 413 || !strings.Contains(string(r.Body), "/v1/audio/uploads") {
			t.Fatalf("lambda=%v audio: %d %s", c.lambda, r.Status, r.Body)
		}
		small := chatBody("gpt-4o-mini", 5, strings.Repeat("y", 1000))
		if r := e.do("POST", "/v1/chat/completions", tok, small); r.Status == 413 {
			t.Fatalf("lambda=%v: a small body refused", c.lambda)
		}
	}
}

// blockingUsage holds the usage write until the client has the whole
// answer (or the detached deadline passes) and records which came first.
type blockingUsage struct {
	chat.UsageWriter
	clientDone  chan struct{}
	afterClient chan bool
}

func (b *blockingUsage) Put(ctx context.Context, r usage.Record) error {
	select {
	case <-b.clientDone:
		b.afterClient <- true
	case <-ctx.Done():
		b.afterClient <- false
	}
	return b.UsageWriter.Put(ctx, r)
}

// A non-streamed answer is at the client, every byte, before the usage
// write begins: the write is off the answer's path.
func TestUsageWriteAfterClientHasAnswer(t *testing.T) {
	e := newEnv(t, nil)
	bu := &blockingUsage{UsageWriter: e.app.Chat.Usage, clientDone: make(chan struct{}), afterClient: make(chan bool, 1)}
	e.app.Chat.Usage = bu
	e.setTier("alice", "premium")
	e.saveKey("alice", "openai", openAIKey(t))
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/chat/completions", bytes.NewReader(chatBody("gpt-4o-mini", 5, "x")))
	req.Header.Set("Authorization", "Bearer "+e.token("alice", ""))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	err = json.NewDecoder(resp.Body).Decode(&m) // returns with the last byte (Content-Length)
	resp.Body.Close()
	if err != nil || resp.ContentLength <= 0 || m["object"] != "chat.completion" {
		t.Fatalf("answer: %v %d %v", err, resp.ContentLength, m)
	}
	close(bu.clientDone)
	if !<-bu.afterClient {
		t.Fatal("the usage write began before the client had the whole answer")
	}
}

// A credits request that names no output cap is reserved for the default cap,
// so that cap is what the provider is sent: the platform never delivers more
// than it reserved. A BYOK request is sent as the client wrote it.
func TestCreditsRouteSendsTheReservedCap(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("cap", "free")
	e.grant("cap", 1_000_000)
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`
	if r := e.do("POST", "/v1/chat/completions", e.token("cap", ""), body); r.Status != 200 {
		t.Fatalf("credits: %d %s", r.Status, r.Body)
	}
	var sent struct {
		MaxTokens           *int64 `json:"max_tokens"`
		MaxCompletionTokens *int64 `json:"max_completion_tokens"`
	}
	if err := json.Unmarshal(e.fake.LastRequest().Body, &sent); err != nil {
		t.Fatal(err)
	}
	if sent.MaxTokens != nil || sent.MaxCompletionTokens == nil || *sent.MaxCompletionTokens != credits.DefaultMaxOutputTokens {
		t.Fatalf("credits route sent caps %v / %v, want max_completion_tokens %d", sent.MaxTokens, sent.MaxCompletionTokens, credits.DefaultMaxOutputTokens)
	}
	// BYOK: the user's own key, the request as written.
	e.setTier("own", "premium")
	e.saveKey("own", "openai", openAIKey(t))
	if r := e.do("POST", "/v1/chat/completions", e.token("own", ""), body); r.Status != 200 || r.Header.Get("X-Byok-Route") != "byok" {
		t.Fatalf("byok: %d %s", r.Status, r.Body)
	}
	if b := e.fake.LastRequest().Body; strings.Contains(string(b), "max_completion_tokens") || strings.Contains(string(b), "max_tokens") {
		t.Fatalf("BYOK request was given a cap: %s", b)
	}
}
