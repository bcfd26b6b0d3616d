package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/fakeprovider"
)

func keysByProvider(t *testing.T, r response) map[string]map[string]any {
	t.Helper()
	m := r.json(t)
	list, ok := m["keys"].([]any)
	if !ok {
		t.Fatalf("no keys array: %s", r.Body)
	}
	out := map[string]map[string]any{}
	for _, k := range list {
		km := k.(map[string]any)
		out[km["provider"].(string)] = km
	}
	return out
}

// The key round trip of issue 2 through the dev server: save keys the fake
// provider accepts, rejects and cannot answer; list; test; delete.
func TestKeyLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	alice := e.token("alice", "")

	good, bad, down := openAIKey(t), anthropicKey(t), openAIKey(t)
	e.fake.SetKey(good, fakeprovider.OK())
	e.fake.SetKey(bad, fakeprovider.Unauthorized())

	// valid
	r := e.do("PUT", "/v1/keys/openai", alice, map[string]string{"api_key": good})
	if r.Status != 200 {
		t.Fatalf("put valid: %d %s", r.Status, r.Body)
	}
	k := r.json(t)
	if k["status"] != "valid" || k["configured"] != true || k["hint"] != "sk-..."+good[len(good)-7:] || k["provider"] != "openai" {
		t.Fatalf("put valid: %s", r.Body)
	}
	if e.fake.Calls(good) != 1 {
		t.Fatalf("validation calls = %d, want 1", e.fake.Calls(good))
	}
	if rr := e.fake.LastRequest(); rr.Path != "/v1/models" || rr.Header.Get("Authorization") != "Bearer "+good {
		t.Fatalf("validation request: %s %v", rr.Path, rr.Header.Get("Authorization") != "")
	}

	// invalid with a reason
	r = e.do("PUT", "/v1/keys/anthropic", alice, map[string]string{"api_key": bad})
	if k := r.json(t); r.Status != 200 || k["status"] != "invalid" || k["reason"] != "unauthorized" {
		t.Fatalf("put invalid: %d %s", r.Status, r.Body)
	}
	if rr := e.fake.LastRequest(); rr.Header.Get("x-api-key") != bad || rr.Header.Get("anthropic-version") == "" {
		t.Fatal("anthropic validation did not send x-api-key and anthropic-version")
	}

	// unchecked: the provider answers 500 (replaces the valid openai key)
	e.fake.SetKey(down, fakeprovider.ServerError())
	r = e.do("PUT", "/v1/keys/openai", alice, map[string]string{"api_key": down})
	if k := r.json(t); r.Status != 200 || k["status"] != "unchecked" {
		t.Fatalf("put unchecked: %d %s", r.Status, r.Body)
	}

	// list: every supported provider, hints only, banner fields
	r = e.do("GET", "/v1/keys", alice, nil)
	if r.Status != 200 {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	ks := keysByProvider(t, r)
	if len(ks) != 6 || ks["openai"]["hint"] != "sk-..."+down[len(down)-7:] || ks["anthropic"]["status"] != "invalid" {
		t.Fatalf("list: %s", r.Body)
	}
	for _, f := range []string{"provider", "configured", "status", "reason", "detail", "hint", "validated_at", "updated_at"} {
		if _, ok := ks["openai"][f]; !ok {
			t.Fatalf("key lacks field %q: %s", f, r.Body)
		}
	}
	rt := r.json(t)["routing"].(map[string]any)
	if rt["mode"] != "byok_first" || rt["byok_enabled"] != true || rt["byok_eligible"] != true || rt["banner"] != "byok" {
		t.Fatalf("routing banner: %v", rt)
	}

	// test re-validates: the provider now accepts the "down" key
	e.fake.SetKey(down, fakeprovider.OK())
	r = e.do("POST", "/v1/keys/openai/test", alice, nil)
	if k := r.json(t); r.Status != 200 || k["status"] != "valid" {
		t.Fatalf("test: %d %s", r.Status, r.Body)
	}
	if e.fake.Calls(down) != 2 {
		t.Fatalf("calls with key = %d, want 2 (save + test)", e.fake.Calls(down))
	}
	// and marks a revoked key invalid
	e.fake.SetKey(down, fakeprovider.InsufficientQuota())
	r = e.do("POST", "/v1/keys/openai/test", alice, nil)
	if k := r.json(t); r.Status != 200 || k["status"] != "invalid" || k["reason"] != "quota_exceeded" {
		t.Fatalf("test quota: %d %s", r.Status, r.Body)
	}

	// delete → 204, row gone, then 404
	if r = e.do("DELETE", "/v1/keys/openai", alice, nil); r.Status != 204 || len(r.Body) != 0 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if e.keyItem("alice", "openai") != nil {
		t.Fatal("deleted key row still in DynamoDB")
	}
	if r = e.do("DELETE", "/v1/keys/openai", alice, nil); r.Status != 404 || r.errCode(t) != "not_found" {
		t.Fatalf("second delete: %d %s", r.Status, r.Body)
	}
	if r = e.do("POST", "/v1/keys/openai/test", alice, nil); r.Status != 404 {
		t.Fatalf("test after delete: %d %s", r.Status, r.Body)
	}
	ks = keysByProvider(t, e.do("GET", "/v1/keys", alice, nil))
	if ks["openai"]["configured"] != false || ks["openai"]["hint"] != nil {
		t.Fatalf("deleted key still listed: %v", ks["openai"])
	}

	// Nothing stored or logged or returned in plaintext.
	raw := e.scanAll()
	for _, key := range []string{good, bad, down} {
		pl := len("sk-proj-")
		if strings.HasPrefix(key, "sk-ant-") {
			pl = len("sk-ant-api03-")
		}
		assertNoLeak(t, "DynamoDB rows", raw, key, pl)
		assertNoLeak(t, "log lines", e.logs.String(), key, pl)
		assertNoLeak(t, "response bodies", e.transcript.String(), key, pl)
	}
	if !strings.Contains(e.logs.String(), `"request_id"`) {
		t.Fatal("log lines carry no request_id")
	}
}

// Users see, test and delete only their own keys.
func TestKeysAreIsolatedPerUser(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	e.setTier("bob", "lifetime")
	alice, bob := e.token("alice", ""), e.token("bob", "")
	key := openAIKey(t)
	e.fake.SetKey(key, fakeprovider.OK())
	if r := e.do("PUT", "/v1/keys/openai", alice, map[string]string{"api_key": key}); r.Status != 200 {
		t.Fatalf("put: %d %s", r.Status, r.Body)
	}
	ks := keysByProvider(t, e.do("GET", "/v1/keys", bob, nil))
	if ks["openai"]["configured"] != false {
		t.Fatalf("bob sees alice's key: %v", ks["openai"])
	}
	if r := e.do("POST", "/v1/keys/openai/test", bob, nil); r.Status != 404 {
		t.Fatalf("bob tests alice's key: %d", r.Status)
	}
	if r := e.do("DELETE", "/v1/keys/openai", bob, nil); r.Status != 404 {
		t.Fatalf("bob deletes alice's key: %d", r.Status)
	}
	if e.keyItem("alice", "openai") == nil {
		t.Fatal("alice's key is gone")
	}
	if e.fake.Calls(key) != 1 {
		t.Fatalf("alice's key was used %d times, want 1 (her save)", e.fake.Calls(key))
	}
	// A user id in a header or query is never trusted.
	r := e.do("GET", "/v1/keys?user_id=alice", bob, nil, "X-User-Id", "alice")
	if keysByProvider(t, r)["openai"]["configured"] != false {
		t.Fatal("a header or query parameter switched the user")
	}
}

func TestAuthAndAdminRefusals(t *testing.T) {
	e := newEnv(t, nil)
	expired, err := mintExpired(e.secret)
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{
		"missing":      "",
		"garbage":      "not-a-jwt",
		"expired":      expired,
		"wrong secret": mintWith(t, []byte(randomHex(t, 32)), "alice"),
		"alg none":     algNone("alice"),
	} {
		for _, route := range [][2]string{{"GET", "/v1/keys"}, {"PUT", "/v1/keys/openai"}, {"DELETE", "/v1/keys/openai"},
			{"POST", "/v1/keys/openai/test"}, {"GET", "/v1/admin/settings"}, {"GET", "/v1/admin/users/alice"}} {
			r := e.do(route[0], route[1], tok, nil)
			if r.Status != 401 || r.errCode(t) != "unauthorized" || r.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%s token on %s %s: %d %s", name, route[0], route[1], r.Status, r.Body)
			}
		}
	}
	user := e.token("mallory", "")
	for _, route := range [][2]string{{"GET", "/v1/admin/settings"}, {"PUT", "/v1/admin/settings"},
		{"GET", "/v1/admin/users/alice"}, {"PUT", "/v1/admin/users/mallory"}} {
		r := e.do(route[0], route[1], user, map[string]any{"tier": "lifetime", "byok_enabled": true})
		if r.Status != 403 || r.errCode(t) != "forbidden" {
			t.Fatalf("non-admin %s %s: %d %s", route[0], route[1], r.Status, r.Body)
		}
	}
	if r := e.do("GET", "/v1/admin/users/mallory", e.token("root", "admin"), nil); r.Status != 404 {
		t.Fatalf("non-admin PUT changed an account: %d %s", r.Status, r.Body)
	}
}

// Every bad input gets a clear error in the envelope, and nothing is stored
// and no provider is called.
func TestBadInputStoresNothing(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	e.setTier("fred", "free")
	e.setTier("sam", "starter")
	alice := e.token("alice", "")
	okKey := openAIKey(t)
	e.fake.SetDefault(fakeprovider.OK())

	big := `{"api_key":"` + strings.Repeat("a", 70<<10) + `"}`
	cases := []struct {
		name, method, path, token string
		body                      any
		status                    int
		code                      string
	}{
		{"malformed json", "PUT", "/v1/keys/openai", alice, `{"api_key": "sk-`, 400, "invalid_request"},
		{"not an object", "PUT", "/v1/keys/openai", alice, `["sk-x"]`, 400, "invalid_request"},
		{"wrong type", "PUT", "/v1/keys/openai", alice, `{"api_key": 12345}`, 400, "invalid_request"},
		{"empty body", "PUT", "/v1/keys/openai", alice, ``, 400, "invalid_request"},
		{"trailing data", "PUT", "/v1/keys/openai", alice, `{"api_key":"` + okKey + `"} {}`, 400, "invalid_request"},
		{"missing api_key", "PUT", "/v1/keys/openai", alice, `{}`, 400, "invalid_request"},
		{"unknown field", "PUT", "/v1/keys/openai", alice, `{"apikey":"x"}`, 400, "invalid_request"},
		{"anthropic key for openai", "PUT", "/v1/keys/openai", alice, map[string]string{"api_key": anthropicKey(t)}, 400, "invalid_key_format"},
		{"openai key for anthropic", "PUT", "/v1/keys/anthropic", alice, map[string]string{"api_key": okKey}, 400, "invalid_key_format"},
		{"no prefix", "PUT", "/v1/keys/openai", alice, map[string]string{"api_key": "pk-" + randomHex(t, 20)}, 400, "invalid_key_format"},
		{"too short", "PUT", "/v1/keys/openai", alice, map[string]string{"api_key": "sk-abc"}, 400, "invalid_key_format"},
		{"whitespace", "PUT", "/v1/keys/openai", alice, map[string]string{"api_key": "sk-" + randomHex(t, 10) + " " + randomHex(t, 10)}, 400, "invalid_key_format"},
		{"unknown provider", "PUT", "/v1/keys/acme", alice, map[string]string{"api_key": okKey}, 404, "unsupported_provider"},
		{"azure without endpoint", "PUT", "/v1/keys/azure_openai", alice, map[string]string{"api_key": randomHex(t, 16)}, 400, "invalid_request"},
		{"unknown provider test", "POST", "/v1/keys/acme/test", alice, nil, 404, "unsupported_provider"},
		{"unknown provider delete", "DELETE", "/v1/keys/acme", alice, nil, 404, "unsupported_provider"},
		{"too large", "PUT", "/v1/keys/openai", alice, big, 413, "request_too_large"},
		{"wrong content type", "PUT", "/v1/keys/openai", alice, nil, 400, "invalid_request"},
		{"free tier", "PUT", "/v1/keys/openai", e.token("fred", ""), map[string]string{"api_key": okKey}, 403, "byok_not_available"},
		{"starter tier", "PUT", "/v1/keys/openai", e.token("sam", ""), map[string]string{"api_key": okKey}, 403, "byok_not_available"},
		{"no account", "PUT", "/v1/keys/openai", e.token("nobody", ""), map[string]string{"api_key": okKey}, 403, "byok_not_available"},
		{"unknown route", "GET", "/v1/nothing", alice, nil, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r response
			if c.name == "wrong content type" {
				r = e.do(c.method, c.path, c.token, `api_key=`+okKey, "Content-Type", "application/x-www-form-urlencoded")
			} else {
				r = e.do(c.method, c.path, c.token, c.body)
			}
			if r.Status != c.status || r.errCode(t) != c.code {
				t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, c.status, c.code)
			}
		})
	}
	// BYOK disabled by the admin
	admin := e.token("root", "admin")
	if r := e.do("PUT", "/v1/admin/settings", admin, map[string]any{"byok_enabled": false}); r.Status != 200 {
		t.Fatalf("disable byok: %d %s", r.Status, r.Body)
	}
	r := e.do("PUT", "/v1/keys/openai", alice, map[string]string{"api_key": okKey})
	if r.Status != 403 || r.errCode(t) != "byok_disabled" {
		t.Fatalf("byok disabled: %d %s", r.Status, r.Body)
	}
	if rt := e.do("GET", "/v1/keys", alice, nil).json(t)["routing"].(map[string]any); rt["byok_enabled"] != false || rt["byok_eligible"] != false {
		t.Fatalf("banner with BYOK disabled: %v", rt)
	}

	if n := e.fake.TotalCalls(); n != 0 {
		t.Fatalf("bad input reached the provider %d times", n)
	}
	if raw := e.scanAll(); strings.Contains(raw, "provider_keys") {
		t.Fatalf("bad input stored a key row:\n%s", raw)
	}
	assertNoLeak(t, "responses", e.transcript.String(), okKey, len("sk-proj-"))
	assertNoLeak(t, "logs", e.logs.String(), okKey, len("sk-proj-"))
}

// With no ENCRYPTION_KEY and no KMS key, saves are refused with a clear
// message and nothing is stored; listing still works.
func TestSaveRefusedWithoutEncryptionKey(t *testing.T) {
	for name, val := range map[string]string{"missing": "", "malformed": "abc123"} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, func(v map[string]string) { v["ENCRYPTION_KEY"] = val })
			if !strings.Contains(e.logs.String(), "ENCRYPTION_KEY") {
				t.Fatalf("no clear start-up error naming ENCRYPTION_KEY in logs: %s", e.logs.String())
			}
			if val != "" && strings.Contains(e.logs.String(), val) {
				t.Fatal("start-up error echoes the malformed key")
			}
			e.setTier("alice", "premium")
			alice := e.token("alice", "")
			key := openAIKey(t)
			e.fake.SetKey(key, fakeprovider.OK())
			r := e.do("PUT", "/v1/keys/openai", alice, map[string]string{"api_key": key})
			if r.Status != 503 || r.errCode(t) != "service_unavailable" {
				t.Fatalf("save without encryption key: %d %s", r.Status, r.Body)
			}
			if msg := r.json(t)["error"].(map[string]any)["message"].(string); !strings.Contains(msg, "ENCRYPTION_KEY") {
				t.Fatalf("message does not say how to fix it: %q", msg)
			}
			if e.keyItem("alice", "openai") != nil || e.fake.TotalCalls() != 0 {
				t.Fatal("a key was stored or sent without encryption")
			}
			if r := e.do("GET", "/v1/keys", alice, nil); r.Status != 200 {
				t.Fatalf("list: %d", r.Status)
			}
		})
	}
}

// KMS envelope end to end through the emulator; a KMS key that cannot be
// used fails closed with 503 and no provider call.
func TestKeysWithKMS(t *testing.T) {
	kc := kms.NewFromConfig(awstest.Config(t))
	out, err := kc.CreateKey(context.Background(), &kms.CreateKeyInput{Description: aws.String("byok test")})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(v map[string]string) {
		v["KMS_KEY_ID"] = aws.ToString(out.KeyMetadata.KeyId)
		v["ENCRYPTION_KEY"] = ""
	})
	e.setTier("alice", "premium")
	alice := e.token("alice", "")
	key := anthropicKey(t)
	e.fake.SetKey(key, fakeprovider.OK())
	if r := e.do("PUT", "/v1/keys/anthropic", alice, map[string]string{"api_key": key}); r.Status != 200 {
		t.Fatalf("put with KMS: %d %s", r.Status, r.Body)
	}
	item := e.keyItem("alice", "anthropic")
	if w := item["wrapper_id"].(*types.AttributeValueMemberS).Value; !strings.HasPrefix(w, "kms:") {
		t.Fatalf("wrapper_id = %q, want kms:…", w)
	}
	if r := e.do("POST", "/v1/keys/anthropic/test", alice, nil); r.Status != 200 || r.json(t)["status"] != "valid" {
		t.Fatalf("test with KMS: %d %s", r.Status, r.Body)
	}
	if e.fake.Calls(key) != 2 {
		t.Fatalf("provider saw the key %d times, want 2", e.fake.Calls(key))
	}
	assertNoLeak(t, "rows", e.scanAll(), key, len("sk-ant-api03-"))

	// A KMS key id that does not exist: refused, 503, nothing sent.
	e2 := newEnv(t, func(v map[string]string) {
		v["KMS_KEY_ID"] = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
		v["ENCRYPTION_KEY"] = ""
	})
	e2.setTier("alice", "premium")
	k2 := openAIKey(t)
	e2.fake.SetKey(k2, fakeprovider.OK())
	r := e2.do("PUT", "/v1/keys/openai", e2.token("alice", ""), map[string]string{"api_key": k2})
	if r.Status != 503 || r.errCode(t) != "service_unavailable" || e2.fake.TotalCalls() != 0 || e2.keyItem("alice", "openai") != nil {
		t.Fatalf("KMS refusing: %d %s, provider calls %d", r.Status, r.Body, e2.fake.TotalCalls())
	}
	assertNoLeak(t, "logs", e2.logs.String(), k2, len("sk-proj-"))
}

// Storage down: 503, no provider call.
func TestStorageDownFailsClosed(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	alice := e.token("alice", "")
	key := openAIKey(t)
	e.fake.SetKey(key, fakeprovider.OK())
	if r := e.do("PUT", "/v1/keys/openai", alice, map[string]string{"api_key": key}); r.Status != 200 {
		t.Fatal(r.Status)
	}
	calls := e.fake.TotalCalls()
	// Point every AWS client at a port where nothing listens.
	cfg := awstest.Config(t)
	cfg.BaseEndpoint = aws.String("http://127.0.0.1:1")
	cfg.RetryMaxAttempts = 1
	e.startWith(app.NewClients(cfg))
	for _, route := range [][2]string{{"GET", "/v1/keys"}, {"PUT", "/v1/keys/openai"}, {"POST", "/v1/keys/openai/test"}, {"DELETE", "/v1/keys/openai"}} {
		r := e.do(route[0], route[1], alice, map[string]string{"api_key": key})
		if route[0] == "POST" || route[0] == "GET" || route[0] == "DELETE" {
			r = e.do(route[0], route[1], alice, nil)
		}
		if r.Status != 503 || r.errCode(t) != "service_unavailable" {
			t.Fatalf("%s %s with storage down: %d %s", route[0], route[1], r.Status, r.Body)
		}
	}
	if e.fake.TotalCalls() != calls {
		t.Fatalf("provider called %d times with storage down", e.fake.TotalCalls()-calls)
	}
	assertNoLeak(t, "logs", e.logs.String(), key, len("sk-proj-"))
	_ = time.Second
}
