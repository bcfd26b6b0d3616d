package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/synthstack/byok/shared/apperr"
)

// rawHS256 signs an arbitrary header and claims JSON (what a hostile or
// careless issuer could send).
func rawHS256(t *testing.T, header, claims string) string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	signing := b64([]byte(header)) + "." + b64([]byte(claims))
	sig, err := jwt.SigningMethodHS256.Sign(signing, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + b64(sig)
}

func TestTokenRules(t *testing.T) {
	v := hsVerifier(t, Config{})
	ctx := context.Background()
	now := time.Now()
	claims := func(extra string) string {
		return `{"sub":"alice","iat":` + itoa(now.Unix()) + `,"exp":` + itoa(now.Add(time.Hour).Unix()) + extra + `}`
	}
	hdr := `{"alg":"HS256","typ":"JWT"}`
	if _, err := v.Verify(ctx, rawHS256(t, hdr, claims(""))); err != nil {
		t.Fatalf("plain token: %v", err)
	}
	cases := map[string]struct{ tok, msg string }{
		"unknown crit":  {rawHS256(t, `{"alg":"HS256","typ":"JWT","crit":["exp2"],"exp2":1}`, claims("")), "crit"},
		"empty crit":    {rawHS256(t, `{"alg":"HS256","crit":[]}`, claims("")), "crit"},
		"string exp":    {rawHS256(t, hdr, `{"sub":"alice","exp":"`+itoa(now.Add(time.Hour).Unix())+`"}`), "exp"},
		"null exp":      {rawHS256(t, hdr, `{"sub":"alice","exp":null}`), "exp"},
		"years, iat":    {rawHS256(t, hdr, `{"sub":"alice","iat":`+itoa(now.Unix())+`,"exp":`+itoa(now.Add(3*365*24*time.Hour).Unix())+`}`), "lifetime"},
		"years, no iat": {rawHS256(t, hdr, `{"sub":"alice","exp":`+itoa(now.Add(25*time.Hour).Unix())+`}`), "lifetime"},
		"old iat, long": {rawHS256(t, hdr, `{"sub":"alice","iat":`+itoa(now.Add(-30*time.Hour).Unix())+`,"exp":`+itoa(now.Add(time.Hour).Unix())+`}`), "lifetime"},
		"non-ascii sub": {rawHS256(t, hdr, `{"sub":"alïce","exp":`+itoa(now.Add(time.Hour).Unix())+`}`), "sub"},
		"sub with #":    {rawHS256(t, hdr, `{"sub":"a#KEY","exp":`+itoa(now.Add(time.Hour).Unix())+`}`), "sub"},
		"sub space":     {rawHS256(t, hdr, `{"sub":"al ice","exp":`+itoa(now.Add(time.Hour).Unix())+`}`), "sub"},
		"numeric sub":   {rawHS256(t, hdr, `{"sub":42,"exp":`+itoa(now.Add(time.Hour).Unix())+`}`), ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(ctx, tc.tok)
			wantUnauthorized(t, err, tc.tok)
			if tc.msg != "" && !strings.Contains(err.(*apperr.Error).Message, tc.msg) {
				t.Errorf("message %q lacks %q", err.(*apperr.Error).Message, tc.msg)
			}
		})
	}
	// An escaped subject is decoded like any JSON string.
	if p, err := v.Verify(ctx, rawHS256(t, hdr, `{"sub":"al\u0069ce","exp":`+itoa(now.Add(time.Hour).Unix())+`}`)); err != nil || p.UserID != "alice" {
		t.Errorf("escaped sub: %+v %v", p, err)
	}
	// A 23-hour token without iat is fine; the limit is configurable.
	if _, err := v.Verify(ctx, rawHS256(t, hdr, `{"sub":"alice","exp":`+itoa(now.Add(23*time.Hour).Unix())+`}`)); err != nil {
		t.Errorf("23 h without iat: %v", err)
	}
	week := hsVerifier(t, Config{MaxLifetime: 7 * 24 * time.Hour})
	if _, err := week.Verify(ctx, rawHS256(t, hdr, `{"sub":"alice","exp":`+itoa(now.Add(25*time.Hour).Unix())+`}`)); err != nil {
		t.Errorf("25 h under a week's limit: %v", err)
	}
	cfg := ConfigFromEnv(func(k string) string {
		return map[string]string{"AUTH_JWT_SECRET": string(testSecret), "AUTH_MAX_TOKEN_LIFETIME": "2h"}[k]
	})
	if cfg.MaxLifetime != 2*time.Hour {
		t.Errorf("AUTH_MAX_TOKEN_LIFETIME: %v", cfg.MaxLifetime)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// The one user id rule, used by auth and the admin routes alike.
func TestValidUserID(t *testing.T) {
	for _, ok := range []string{"alice", "auth0|5f2b", "user@example.com", "a", strings.Repeat("x", MaxSubjectLen)} {
		if !ValidUserID(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "al ice", "alïce", "a#b", "a\tb", " a", strings.Repeat("x", MaxSubjectLen+1), "\x7f"} {
		if ValidUserID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// A JWKS that cannot be fetched at start is not fatal: requests get 503
// "token keys not loaded yet" (not 401) while it is retried in the
// background, and are verified once it loads.
func TestJWKSLoadedInBackground(t *testing.T) {
	fx := newJWKS(t)
	var up atomic.Bool
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if !up.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		resp, err := http.Get(fx.url)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", "application/json")
		var buf strings.Builder
		b := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(b)
			buf.Write(b[:n])
			if err != nil {
				break
			}
		}
		_, _ = w.Write([]byte(buf.String()))
	}))
	t.Cleanup(srv.Close)
	v, err := NewVerifier(t.Context(), Config{JWKSURL: srv.URL + "/jwks.json", jwksRetry: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewVerifier with the JWKS down: %v, want a verifier that retries", err)
	}
	t.Cleanup(v.Close)
	tok := sign(t, jwt.SigningMethodRS256, fx.rsa, baseClaims("rsa-user"), "rsa1")
	_, err = v.Verify(context.Background(), tok)
	if !apperr.Is(err, apperr.ServiceUnavailable) || !strings.Contains(err.Error(), "token keys not loaded yet") {
		t.Fatalf("Verify before the keys load: %v, want 503 token keys not loaded yet", err)
	}
	up.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := v.Verify(context.Background(), tok)
		if err == nil {
			if p.UserID != "rsa-user" {
				t.Fatalf("principal %+v", p)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("keys never loaded (%d fetches): %v", calls.Load(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Auth errors on /v1/messages have the Anthropic error shape, like every
// other error there.
func TestMiddlewareAnthropicShapeOnMessages(t *testing.T) {
	v := hsVerifier(t, Config{})
	var s seen
	for _, hdr := range []map[string]string{nil, {"X-Api-Key": "garbage"}} {
		w := serve(v.Middleware(recordNext(&s)), "/v1/messages", hdr)
		var body struct {
			Type  string            `json:"type"`
			Error map[string]string `json:"error"`
			RID   string            `json:"request_id"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != 401 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		if body.Type != "error" || body.Error["type"] != "authentication_error" || body.Error["code"] != "unauthorized" ||
			body.Error["message"] == "" || body.RID != "req-123" || body.Error["request_id"] != "req-123" {
			t.Fatalf("not the Anthropic shape: %s", w.Body)
		}
	}
	w := serve(v.Middleware(RequireAdmin(recordNext(&s))), "/v1/messages", map[string]string{"X-Api-Key": mustMint(t, "alice", "")})
	if !strings.Contains(w.Body.String(), `"type":"error"`) || !strings.Contains(w.Body.String(), `"permission_error"`) || w.Code != 403 {
		t.Fatalf("403 on /v1/messages: %d %s", w.Code, w.Body)
	}
}
