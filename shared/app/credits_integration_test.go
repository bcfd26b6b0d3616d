package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/credits"
	"github.com/synthstack/byok/shared/fakeprovider"
)

func (e *testEnv) serialiseAWS() {
	cfg := awstest.Config(e.t)
	cfg.HTTPClient = awstest.SerialHTTPClient() // moto is not atomic across concurrent transactions
	e.startWith(app.NewClients(cfg))
	// Serialised, 200 requests' ledger writes queue for far longer than a
	// real store's worst case: give the detached writes room.
	e.app.Chat.DetachedTimeout = 5 * time.Minute
}

func chatBody(model string, maxTokens int, prompt string) []byte {
	b, _ := json.Marshal(map[string]any{"model": model, "max_tokens": maxTokens,
		"messages": []map[string]string{{"role": "user", "content": prompt}}})
	return b
}

// 200 concurrent credit requests against a balance that covers exactly N:
// exactly N succeed, the balance never goes below zero and equals the
// ledger's sum; replaying a request id charges once.
func TestConcurrentCreditRequests(t *testing.T) {
	e := newEnv(t, nil)
	e.serialiseAWS()
	admin := e.token("root", "admin")
	if r := e.do("PUT", "/v1/admin/settings", admin, map[string]any{"tier_limits": map[string]any{
		"free": map[string]any{"requests_per_minute": 100000, "tokens_per_day": 1000000000, "concurrent_requests": 1000}}}); r.Status != 200 {
		t.Fatalf("limits: %d %s", r.Status, r.Body)
	}
	e.setTier("rich", "free")
	body := chatBody("gpt-4o-mini", 100, "hello")
	estIn, estOut := credits.EstimateTokens(len(body), 100)
	prices := credits.DefaultPrices()
	per := prices.Credits("gpt-4o-mini", estIn, estOut)
	// The upstream reports exactly the estimate, so each request costs what it reserved.
	e.fake.SetKey(internalOpenAIKey, fakeprovider.Behavior{Usage: &fakeprovider.Usage{Input: int(estIn), Output: int(estOut)}})
	const N = 37
	if bal := e.grant("rich", N*per); bal != N*per {
		t.Fatalf("balance %d", bal)
	}
	tok := e.token("rich", "")
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", e.srv.URL+"/v1/chat/completions", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Idempotency-Key", fmt.Sprintf("req-%d", i))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[200] != N || codes[402] != 200-N {
		t.Fatalf("status counts %v, want %d×200 and %d×402", codes, N, 200-N)
	}
	if e.fake.Calls(internalOpenAIKey) != N {
		t.Fatalf("upstream calls %d, want %d", e.fake.Calls(internalOpenAIKey), N)
	}
	ctx := context.Background()
	bal, err := e.app.Ledger.Balance(ctx, "rich")
	if err != nil || bal != 0 {
		t.Fatalf("balance %d (%v), want 0", bal, err)
	}
	if sum, err := e.app.Ledger.Sum(ctx, "rich"); err != nil || sum != bal {
		t.Fatalf("ledger sum %d (%v) != balance %d", sum, err, bal)
	}

	// Replay: the same Idempotency-Key is charged once.
	e.grant("rich", 10*per)
	calls := e.fake.Calls(internalOpenAIKey)
	r1 := e.do("POST", "/v1/chat/completions", tok, string(body), "Idempotency-Key", "same-key")
	r2 := e.do("POST", "/v1/chat/completions", tok, string(body), "Idempotency-Key", "same-key")
	if r1.Status != 200 || r2.Status != 409 || r2.errCode(t) != "conflict" {
		t.Fatalf("replay: %d then %d %s", r1.Status, r2.Status, r2.Body)
	}
	if e.fake.Calls(internalOpenAIKey) != calls+1 {
		t.Fatal("a replayed request reached the provider")
	}
	if bal := e.balance("rich"); bal != 9*per {
		t.Fatalf("balance after replay %d, want %d", bal, 9*per)
	}
	if sum, _ := e.app.Ledger.Sum(ctx, "rich"); sum != 9*per {
		t.Fatalf("ledger sum %d after replay, want %d", sum, 9*per)
	}
	// GET /v1/credits shows the ledger, newest first, paginated.
	r := e.do("GET", "/v1/credits?limit=2", tok, nil)
	m := r.json(t)
	if len(m["transactions"].([]any)) != 2 || m["next_cursor"] == nil {
		t.Fatalf("credits page: %s", r.Body)
	}
	if r := e.do("GET", "/v1/credits?cursor=garbage", tok, nil); r.Status != 400 {
		t.Fatalf("bad cursor: %d", r.Status)
	}
	if r := e.do("GET", "/v1/credits?limit=0", tok, nil); r.Status != 400 {
		t.Fatalf("bad limit: %d", r.Status)
	}
}

// 3×L concurrent credit requests against L requests per minute admit
// exactly L; the rest get 429 rate_limited with Retry-After naming the limit.
// The BYOK route has no such limit.
func TestTierRateLimits(t *testing.T) {
	e := newEnv(t, nil)
	e.serialiseAWS()
	const L = 5
	admin := e.token("root", "admin")
	if r := e.do("PUT", "/v1/admin/settings", admin, map[string]any{"tier_limits": map[string]any{
		"free": map[string]any{"requests_per_minute": L, "concurrent_requests": 100}}}); r.Status != 200 {
		t.Fatal(r.Status)
	}
	e.setTier("fred", "free")
	e.grant("fred", 100_000_000)
	e.setTier("pat", "premium")
	e.saveKey("pat", "openai", openAIKey(t))
	// Keep clear of a minute boundary: the window is the UTC minute.
	if s := time.Now().UTC().Second(); s > 55 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	run := func(user string, n int) map[int]int {
		tok := e.token(user, "")
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := e.do("POST", "/v1/chat/completions", tok, string(chatBody("gpt-4o-mini", 50, "x")))
				mu.Lock()
				defer mu.Unlock()
				codes[r.Status]++
				if r.Status == 429 {
					if r.errCode(t) != "rate_limited" || r.Header.Get("Retry-After") == "" ||
						!strings.Contains(r.json(t)["error"].(map[string]any)["message"].(string), "per minute") {
						t.Errorf("429: %v %s", r.Header, r.Body)
					}
				}
			}()
		}
		wg.Wait()
		return codes
	}
	if codes := run("fred", 3*L); codes[200] != L || codes[429] != 2*L {
		t.Fatalf("credits route: %v, want %d×200 and %d×429", codes, L, 2*L)
	}
	if codes := run("pat", 3*L); codes[200] != 3*L {
		t.Fatalf("BYOK route was limited: %v", codes)
	}
}

// Storage unreachable or KMS refusing: 503, no upstream call, no charge.
func TestChatFailsClosed(t *testing.T) {
	kc := kms.NewFromConfig(awstest.Config(t))
	kout, err := kc.CreateKey(context.Background(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(v map[string]string) {
		v["KMS_KEY_ID"], v["ENCRYPTION_KEY"] = aws.ToString(kout.KeyMetadata.KeyId), ""
	})
	e.setTier("alice", "premium")
	e.grant("alice", 1_000_000)
	key := openAIKey(t)
	e.saveKey("alice", "openai", key)
	tok := e.token("alice", "")
	body := string(chatBody("gpt-4o-mini", 20, "x"))

	// KMS unreachable on a cold instance (no cached data keys): no upstream
	// call at all, no charge, even with credits to fall back on.
	bad := awstest.Config(t)
	bad.BaseEndpoint = aws.String("http://127.0.0.1:1")
	bad.RetryMaxAttempts = 1
	clients := e.clients
	clients.KMS = kms.NewFromConfig(bad)
	e.startWith(clients)
	before := e.fake.TotalCalls()
	r := e.do("POST", "/v1/chat/completions", tok, body)
	if r.Status != 503 || r.errCode(t) != "service_unavailable" {
		t.Fatalf("KMS refusing: %d %s", r.Status, r.Body)
	}
	if e.fake.TotalCalls() != before {
		t.Fatal("upstream called while KMS refused")
	}
	if bal := e.balance("alice"); bal != 1_000_000 {
		t.Fatalf("charged %d while KMS refused", 1_000_000-bal)
	}

	// Storage unreachable.
	cfg := awstest.Config(t)
	cfg.BaseEndpoint = aws.String("http://127.0.0.1:1")
	cfg.RetryMaxAttempts = 1
	e.startWith(app.NewClients(cfg))
	for _, stream := range []bool{false, true} {
		r := e.do("POST", "/v1/chat/completions", tok, map[string]any{"model": "gpt-4o-mini", "stream": stream,
			"messages": []map[string]string{{"role": "user", "content": "x"}}})
		if r.Status != 503 || r.errCode(t) != "service_unavailable" {
			t.Fatalf("storage down (stream %v): %d %s", stream, r.Status, r.Body)
		}
	}
	if e.fake.TotalCalls() != before {
		t.Fatal("upstream called with storage down")
	}
}

// No prompt or response text in any log line or stored row.
func TestNoContentLoggedOrStored(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	e.setTier("carol", "free")
	e.grant("carol", 10_000_000)
	e.saveKey("alice", "openai", openAIKey(t))
	e.saveKey("alice", "anthropic", anthropicKey(t))
	prompt := "PROMPT-" + randomHex(t, 12)
	var replies []string
	for _, user := range []string{"alice", "carol"} {
		for _, model := range []string{"gpt-4o-mini", "claude-3-5-haiku-20241022"} {
			for _, stream := range []bool{false, true} {
				body := map[string]any{"model": model, "stream": stream, "messages": []map[string]string{
					{"role": "system", "content": prompt + "-system"}, {"role": "user", "content": prompt}}}
				r := e.do("POST", "/v1/chat/completions", e.token(user, ""), body)
				if r.Status != 200 {
					t.Fatalf("%s %s: %d %s", user, model, r.Status, r.Body)
				}
				last := e.fake.LastRequest()
				replies = append(replies, fakeprovider.ExpectedReply(last.Body, fakeprovider.OK()))
			}
		}
	}
	r := e.do("POST", "/v1/copilot/chat", e.token("alice", ""), map[string]any{"message": prompt + "-copilot"})
	if r.Status != 200 || r.Header.Get("X-Byok-Route") != "byok" {
		t.Fatalf("copilot: %d %s", r.Status, r.Body)
	}
	var stored strings.Builder
	for _, table := range []string{"byok", "credit_transactions", "api_key_usage"} {
		p := dynamodb.NewScanPaginator(e.db, &dynamodb.ScanInput{TableName: aws.String(e.vars["TABLE_PREFIX"] + table)})
		for p.HasMorePages() {
			out, err := p.NextPage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range out.Items {
				raw, _ := json.Marshal(flatten(it))
				stored.Write(raw)
			}
		}
	}
	if !strings.Contains(stored.String(), "api_key_usage") || !strings.Contains(stored.String(), "settle") {
		t.Fatalf("expected usage rows and settle rows to exist:\n%s", stored.String())
	}
	for what, text := range map[string]string{"stored rows": stored.String(), "log lines": e.logs.String()} {
		if strings.Contains(text, "PROMPT-") {
			t.Fatalf("prompt text found in %s", what)
		}
		for _, rep := range replies {
			if strings.Contains(text, rep) {
				t.Fatalf("response text found in %s", what)
			}
		}
	}
}

func flatten(it map[string]types.AttributeValue) map[string]any {
	out := map[string]any{}
	for k, v := range it {
		switch x := v.(type) {
		case *types.AttributeValueMemberS:
			out[k] = x.Value
		case *types.AttributeValueMemberN:
			out[k] = x.Value
		case *types.AttributeValueMemberM:
			out[k] = flatten(x.Value)
		default:
			out[k] = fmt.Sprintf("%v", x)
		}
	}
	return out
}
