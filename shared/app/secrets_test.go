package app_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/provider"
)

// put-secret-value reaches a warm instance after INTERNAL_KEYS_TTL; a
// refresh that fails keeps the last good keys and says so in the log.
func TestInternalKeysRefresh(t *testing.T) {
	ctx := context.Background()
	sm := secretsmanager.NewFromConfig(awstest.Config(t))
	sec, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:         aws.String(awstest.Prefix(t) + "internal-keys"),
		SecretString: aws.String(`{"openai":"sk-first-not-a-key","anthropic":""}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	put := func(v string) {
		t.Helper()
		if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: sec.ARN, SecretString: aws.String(v)}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var logs lockedBuffer
	k := &app.InternalKeys{
		SM: sm, ARN: aws.ToString(sec.ARN), TTL: 5 * time.Minute,
		Base: map[provider.Name]string{provider.Anthropic: "sk-ant-from-env-not-a-key"},
		Now:  func() time.Time { return now },
		Log:  slog.New(slog.NewJSONHandler(&logs, nil)),
	}
	if err := k.Load(ctx); err != nil {
		t.Fatal(err)
	}
	want := func(p provider.Name, v string) {
		t.Helper()
		if got := k.Current(ctx)[p]; got != v {
			t.Fatalf("%s key = %q, want %q", p, got, v)
		}
	}
	want(provider.OpenAI, "sk-first-not-a-key")
	want(provider.Anthropic, "sk-ant-from-env-not-a-key") // the secret leaves it empty

	put(`{"openai":"sk-second-not-a-key","anthropic":"sk-ant-second-not-a-key"}`)
	now = now.Add(4 * time.Minute)
	want(provider.OpenAI, "sk-first-not-a-key") // within the TTL
	now = now.Add(2 * time.Minute)
	want(provider.OpenAI, "sk-second-not-a-key")
	want(provider.Anthropic, "sk-ant-second-not-a-key")

	// A broken value: the last good keys stay, the failure is logged
	// without the secret's content.
	put(`{"openai": sk-broken`)
	now = now.Add(6 * time.Minute)
	want(provider.OpenAI, "sk-second-not-a-key")
	if !strings.Contains(logs.String(), "refreshing the internal provider keys failed") {
		t.Errorf("refresh failure not logged: %s", logs.String())
	}
	if strings.Contains(logs.String(), "broken") || strings.Contains(logs.String(), "not-a-key") {
		t.Errorf("log carries key material: %s", logs.String())
	}
	// Fixed: picked up at the next retry, before a whole TTL.
	put(`{"openai":"sk-third-not-a-key","anthropic":""}`)
	now = now.Add(time.Minute)
	want(provider.OpenAI, "sk-third-not-a-key")
	want(provider.Anthropic, "sk-ant-from-env-not-a-key")

	// The secret is gone (deleted): still the last good keys.
	if _, err := sm.DeleteSecret(ctx, &secretsmanager.DeleteSecretInput{SecretId: sec.ARN, ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(6 * time.Minute)
	want(provider.OpenAI, "sk-third-not-a-key")
}

// A warm chat handler picks up platform keys written with put-secret-value
// once the TTL passed: GET /v1/models lists a provider's models on the
// credits route only while a platform key exists for it.
func TestInternalKeysReachWarmChat(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(v map[string]string) { v["INTERNAL_OPENAI_API_KEY"] = "" })
	sm := secretsmanager.NewFromConfig(awstest.Config(t))
	sec, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:         aws.String(awstest.Prefix(t) + "internal-keys"),
		SecretString: aws.String(`{"openai":"","anthropic":""}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	k := &app.InternalKeys{SM: sm, ARN: aws.ToString(sec.ARN), TTL: time.Minute,
		Base: e.app.Chat.InternalKeys, Now: func() time.Time { return now }}
	if err := k.Load(ctx); err != nil {
		t.Fatal(err)
	}
	e.app.InternalKeys = k
	e.srv.Close()
	e.srv = httptestServer(t, e.app.Handler())
	tok := e.token("warm-user", "")
	if r := e.do("POST", "/v1/admin/users/warm-user/credits", e.token("admin", "admin"),
		map[string]any{"amount": 100000, "reason": "test"}, "Idempotency-Key", "warm-grant"); r.Status != 200 {
		t.Fatalf("grant: %d %s", r.Status, r.Body)
	}
	openaiModels := func() int {
		t.Helper()
		r := e.do("GET", "/v1/models", tok, nil)
		if r.Status != 200 {
			t.Fatalf("models: %d %s", r.Status, r.Body)
		}
		n := 0
		for _, m := range r.json(t)["data"].([]any) {
			if m.(map[string]any)["provider"] == "openai" {
				n++
			}
		}
		return n
	}
	if n := openaiModels(); n != 0 {
		t.Fatalf("no platform OpenAI key yet, but %d OpenAI models listed", n)
	}
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: sec.ARN,
		SecretString: aws.String(`{"openai":"` + internalOpenAIKey + `","anthropic":""}`)}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if n := openaiModels(); n == 0 {
		t.Fatal("after put-secret-value and the TTL, the warm handler still has no OpenAI platform key")
	}
}

func httptestServer(t *testing.T, h http.Handler) *httptest.Server {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}
