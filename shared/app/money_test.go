package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/awstest"
)

// A credential refused on /v1/messages is answered in the Anthropic error
// shape, so anthropic-sdk-go (and every SDK built on that shape) shows our
// message rather than a bare status.
func TestMessagesAuthErrorsAnthropicShaped(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for name, key := range map[string]string{
		"garbage token": "not-a-token",
		"another issuer's token": func() string {
			tok, _ := auth.Mint([]byte(randomHex(t, 32)), "alice", "", time.Hour, "", "")
			return tok
		}(),
	} {
		c := anthropic.NewClient(aoption.WithBaseURL(e.srv.URL), aoption.WithAPIKey(key), aoption.WithMaxRetries(0))
		_, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-3-5-haiku-20241022", MaxTokens: 10,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))}})
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != 401 {
			t.Fatalf("%s: %v", name, err)
		}
		raw := ae.RawJSON()
		if !strings.Contains(raw, `"type":"error"`) || !strings.Contains(raw, `"authentication_error"`) {
			t.Fatalf("%s: not the Anthropic shape: %s", name, raw)
		}
		var body struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.Unmarshal([]byte(raw), &body) != nil || !strings.HasPrefix(body.Error.Message, "token") || !strings.Contains(err.Error(), body.Error.Message) {
			t.Fatalf("%s: the SDK's error does not carry our message: %v", name, err)
		}
	}
	// Other routes keep the envelope.
	if r := e.do("GET", "/v1/keys", "garbage", nil); r.Status != 401 || r.errCode(t) != "unauthorized" || strings.Contains(string(r.Body), `"type":"error"`) {
		t.Fatalf("/v1/keys: %d %s", r.Status, r.Body)
	}
}

// A grant replayed with its Idempotency-Key and another amount is a
// conflict; the same grant is a replay.
func TestGrantReplayConflict(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.token("root", "admin")
	first := e.do("POST", "/v1/admin/users/gina/credits", admin, map[string]any{"amount": 100, "reason": "welcome"}, "Idempotency-Key", "g-1")
	if first.Status != 200 {
		t.Fatalf("grant: %d %s", first.Status, first.Body)
	}
	same := e.do("POST", "/v1/admin/users/gina/credits", admin, map[string]any{"amount": 100, "reason": "welcome"}, "Idempotency-Key", "g-1")
	if same.Status != 200 || same.json(t)["replayed"] != true {
		t.Fatalf("same replay: %d %s", same.Status, same.Body)
	}
	other := e.do("POST", "/v1/admin/users/gina/credits", admin, map[string]any{"amount": 5000, "reason": "welcome"}, "Idempotency-Key", "g-1")
	if other.Status != 409 || other.errCode(t) != "conflict" {
		t.Fatalf("replay with another amount: %d %s", other.Status, other.Body)
	}
	if b := e.balance("gina"); b != 100 {
		t.Fatalf("balance %d, want 100", b)
	}
}

// AUTH_JWT_SECRET_ARN: the token secret read from Secrets Manager at start
// (not a plain environment variable); with AUTH_JWT_SECRET too it is a
// clear start-up error.
func TestJWTSecretFromSecretsManager(t *testing.T) {
	cfg := awstest.Config(t)
	sm := secretsmanager.NewFromConfig(cfg)
	ctx := context.Background()
	secret := randomHex(t, 32)
	out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name: aws.String("byok-jwt-" + randomHex(t, 4)), SecretString: aws.String(secret + "\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AUTH_JWT_SECRET", "")
	t.Setenv("AUTH_JWKS_URL", "")
	t.Setenv("AUTH_JWT_SECRET_ARN", aws.ToString(out.ARN))
	t.Setenv("ENCRYPTION_KEY", randomHex(t, 32))
	t.Setenv("TABLE_PREFIX", awstest.Prefix(t))
	a, _, err := app.FromEnv(ctx, discardLog())
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	tok, err := auth.Mint([]byte(secret), "sam", "", time.Hour, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if p, err := a.Verifier.Verify(ctx, tok); err != nil || p.UserID != "sam" {
		t.Fatalf("token signed with the stored secret: %+v %v", p, err)
	}
	t.Setenv("AUTH_JWT_SECRET", secret)
	if _, _, err := app.FromEnv(ctx, discardLog()); err == nil || !strings.Contains(err.Error(), "only one") {
		t.Fatalf("both set: %v", err)
	}
	t.Setenv("AUTH_JWT_SECRET", "")
	t.Setenv("AUTH_JWT_SECRET_ARN", aws.ToString(out.ARN)+"-missing")
	if _, _, err := app.FromEnv(ctx, discardLog()); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("missing secret: %v", err)
	}
}

// No auth configuration stops start-up: a JWKS URL that cannot be fetched
// (the committed placeholder, an identity provider that is down) is retried
// in the background, requests get 503 meanwhile; the revalidator wires no
// verifier at all.
func TestStartUpSurvivesUnreachableJWKS(t *testing.T) {
	t.Setenv("AUTH_JWT_SECRET", "")
	t.Setenv("AUTH_JWT_SECRET_ARN", "")
	t.Setenv("AUTH_JWKS_URL", "http://127.0.0.1:1/.well-known/jwks.json")
	t.Setenv("ENCRYPTION_KEY", randomHex(t, 32))
	t.Setenv("TABLE_PREFIX", awstest.Prefix(t))
	ctx := context.Background()
	a, _, err := app.FromEnv(ctx, discardLog())
	if err != nil {
		t.Fatalf("FromEnv with an unreachable JWKS: %v", err)
	}
	defer a.Verifier.Close()
	rs := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"k1"}`)) + ".e30.c2ln"
	if _, err := a.Verifier.Verify(ctx, rs); !apperr.Is(err, apperr.ServiceUnavailable) || !strings.Contains(err.Error(), "not loaded yet") {
		t.Fatalf("Verify before the keys load: %v, want 503 token keys not loaded yet", err)
	}
	t.Setenv("AUTH_JWKS_URL", "")
	r, _, err := app.FromEnv(ctx, discardLog(), app.WithoutVerifier())
	if err != nil || r.Verifier != nil {
		t.Fatalf("revalidator wiring without any auth configuration: %v", err)
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }
