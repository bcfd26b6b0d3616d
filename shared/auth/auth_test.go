package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/httpx"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes

func hsVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	if cfg.HS256Secret == nil {
		cfg.HS256Secret = testSecret
	}
	v, err := NewVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func baseClaims(sub string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

func mustMint(t testing.TB, sub, role string) string {
	t.Helper()
	tok, err := Mint(testSecret, sub, role, time.Hour, "", "")
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return tok
}

func wantUnauthorized(t *testing.T, err error, token string) {
	t.Helper()
	if err == nil {
		t.Fatal("Verify succeeded, want error")
	}
	var ae *apperr.Error
	if !errors.As(err, &ae) || ae.Code != apperr.Unauthorized {
		t.Fatalf("err = %v, want *apperr.Error code unauthorized", err)
	}
	if len(token) > 10 && strings.Contains(ae.Message, token) {
		t.Fatalf("message echoes the token: %q", ae.Message)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestNewVerifierConfigErrors(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]Config{
		"none":       {},
		"short":      {HS256Secret: []byte("too-short")},
		"both":       {HS256Secret: testSecret, JWKSURL: "https://example.com/jwks"},
		"plain http": {JWKSURL: "http://example.com/jwks"},
		"relative":   {JWKSURL: "/jwks"},
	} {
		if _, err := NewVerifier(ctx, cfg); err == nil {
			t.Errorf("%s: NewVerifier succeeded, want error", name)
		}
	}
	_, err := NewVerifier(ctx, Config{HS256Secret: []byte("short")})
	if err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("short secret error = %v", err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{"AUTH_JWT_SECRET": " s3cret \n", "AUTH_JWKS_URL": "https://x/jwks",
		"AUTH_ISSUER": "iss", "AUTH_AUDIENCE": "aud"}
	cfg := ConfigFromEnv(func(k string) string { return env[k] })
	if string(cfg.HS256Secret) != "s3cret" || cfg.JWKSURL != "https://x/jwks" || cfg.Issuer != "iss" || cfg.Audience != "aud" {
		t.Fatalf("cfg = %+v", cfg)
	}
	if cfg := ConfigFromEnv(func(string) string { return "" }); cfg.HS256Secret != nil {
		t.Fatalf("empty env gave secret %q", cfg.HS256Secret)
	}
}

func TestVerifyHS256(t *testing.T) {
	v := hsVerifier(t, Config{})
	ctx := context.Background()

	p, err := v.Verify(ctx, mustMint(t, "alice", ""))
	if err != nil || p != (Principal{UserID: "alice"}) {
		t.Fatalf("valid: p=%+v err=%v", p, err)
	}
	p, err = v.Verify(ctx, mustMint(t, "bob", "admin"))
	if err != nil || !p.Admin || p.UserID != "bob" {
		t.Fatalf("admin role: p=%+v err=%v", p, err)
	}
	c := baseClaims("carol")
	c["roles"] = []string{"user", "admin"}
	if p, err = v.Verify(ctx, sign(t, jwt.SigningMethodHS256, testSecret, c, "")); err != nil || p.Admin {
		t.Fatalf("a roles claim must not make an admin (docs/api.md §4: role == admin): p=%+v err=%v", p, err)
	}
	c = baseClaims("dave")
	c["role"] = "Admin"
	c["roles"] = map[string]any{"admin": true}
	if p, err = v.Verify(ctx, sign(t, jwt.SigningMethodHS256, testSecret, c, "")); err != nil || p.Admin {
		t.Fatalf("non-admin shapes: p=%+v err=%v", p, err)
	}
}

func TestVerifyHS256Rejects(t *testing.T) {
	v := hsVerifier(t, Config{})
	ctx := context.Background()
	now := time.Now()
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret, c, "") }
	with := func(k string, val any) jwt.MapClaims { c := baseClaims("alice"); c[k] = val; return c }
	without := func(k string) jwt.MapClaims { c := baseClaims("alice"); delete(c, k); return c }

	b64 := base64.RawURLEncoding.EncodeToString
	claimsJSON, _ := json.Marshal(baseClaims("alice"))
	algNone := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64(claimsJSON) + "."
	algNoneSig := algNone + b64([]byte("sig"))
	hs384 := sign(t, jwt.SigningMethodHS384, testSecret, baseClaims("alice"), "")
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rs256 := sign(t, jwt.SigningMethodRS256, rsaKey, baseClaims("alice"), "")

	cases := map[string]struct {
		tok string
		msg string
	}{
		"expired":       {hs(with("exp", now.Add(-time.Hour).Unix())), "expired"},
		"no exp":        {hs(without("exp")), "required claim"},
		"nbf future":    {hs(with("nbf", now.Add(time.Hour).Unix())), "not valid yet"},
		"iat future":    {hs(with("iat", now.Add(time.Hour).Unix())), "future"},
		"wrong secret":  {sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-!!"), baseClaims("alice"), ""), "signature"},
		"alg none":      {algNone, ""},
		"alg none sig":  {algNoneSig, ""},
		"hs384":         {hs384, "signature"},
		"rs256":         {rs256, "signature"},
		"missing sub":   {hs(without("sub")), "sub"},
		"empty sub":     {hs(with("sub", "")), "sub"},
		"long sub":      {hs(with("sub", strings.Repeat("a", MaxSubjectLen+1))), "sub"},
		"control sub":   {hs(with("sub", "al\nice")), "sub"},
		"garbage":       {"not-a-jwt", "malformed"},
		"garbage parts": {"a.b.c", "malformed"},
		"empty":         {"", "missing"},
		"huge":          {strings.Repeat("a", MaxTokenLen+1), "too large"},
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

	// Within leeway is fine.
	if _, err := v.Verify(ctx, hs(with("nbf", now.Add(5*time.Second).Unix()))); err != nil {
		t.Errorf("nbf within leeway: %v", err)
	}
	if _, err := v.Verify(ctx, hs(with("sub", strings.Repeat("a", MaxSubjectLen)))); err != nil {
		t.Errorf("sub of max length: %v", err)
	}
}

func TestVerifyIssuerAudience(t *testing.T) {
	v := hsVerifier(t, Config{Issuer: "byok", Audience: "byok-api"})
	ctx := context.Background()
	mint := func(iss, aud string) string {
		tok, err := Mint(testSecret, "alice", "", time.Hour, iss, aud)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if _, err := v.Verify(ctx, mint("byok", "byok-api")); err != nil {
		t.Fatalf("matching iss/aud: %v", err)
	}
	for name, tok := range map[string]string{
		"wrong iss":   mint("evil", "byok-api"),
		"wrong aud":   mint("byok", "other"),
		"missing iss": mint("", "byok-api"),
		"missing aud": mint("byok", ""),
	} {
		_, err := v.Verify(ctx, tok)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		wantUnauthorized(t, err, tok)
	}
	// Not configured → not checked.
	if _, err := hsVerifier(t, Config{}).Verify(ctx, mint("anything", "whatever")); err != nil {
		t.Errorf("unconfigured iss/aud: %v", err)
	}
}

// --- JWKS mode -------------------------------------------------------------

type jwksFixture struct {
	url    string
	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	rsaPEM []byte // the RSA public key as PEM, for the HS/RS confusion test
}

func newJWKS(t *testing.T) *jwksFixture {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := ek.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	set := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rsa1", "alg": "RS256", "use": "sig",
			"n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
		{"kty": "EC", "kid": "ec1", "alg": "ES256", "use": "sig", "crv": "P-256",
			"x": b64(pt[1:33]), "y": b64(pt[33:])},
	}}
	body, _ := json.Marshal(set)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	der, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	return &jwksFixture{url: srv.URL + "/jwks.json", rsa: rk, ec: ek,
		rsaPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})}
}

func TestVerifyJWKS(t *testing.T) {
	fx := newJWKS(t)
	v, err := NewVerifier(t.Context(), Config{JWKSURL: fx.url, Issuer: "idp"})
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	ctx := context.Background()
	claims := func(sub string) jwt.MapClaims { c := baseClaims(sub); c["iss"] = "idp"; return c }

	rs := sign(t, jwt.SigningMethodRS256, fx.rsa, claims("rsa-user"), "rsa1")
	if p, err := v.Verify(ctx, rs); err != nil || p.UserID != "rsa-user" {
		t.Fatalf("RS256: p=%+v err=%v", p, err)
	}
	c := claims("ec-user")
	c["role"] = "admin"
	es := sign(t, jwt.SigningMethodES256, fx.ec, c, "ec1")
	if p, err := v.Verify(ctx, es); err != nil || p != (Principal{UserID: "ec-user", Admin: true}) {
		t.Fatalf("ES256: p=%+v err=%v", p, err)
	}

	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	rs384 := sign(t, jwt.SigningMethodRS384, fx.rsa, claims("x"), "rsa1")
	bad := map[string]string{
		"unknown kid":        sign(t, jwt.SigningMethodRS256, fx.rsa, claims("x"), "nope"),
		"unknown kid again":  sign(t, jwt.SigningMethodRS256, fx.rsa, claims("x"), "nope2"),
		"wrong key for kid":  sign(t, jwt.SigningMethodRS256, otherRSA, claims("x"), "rsa1"),
		"kid of other type":  sign(t, jwt.SigningMethodES256, fx.ec, claims("x"), "rsa1"),
		"HS256 with RSA pem": sign(t, jwt.SigningMethodHS256, fx.rsaPEM, claims("x"), "rsa1"),
		"HS256 pem no kid":   sign(t, jwt.SigningMethodHS256, fx.rsaPEM, claims("x"), ""),
		"HS256 dev secret":   sign(t, jwt.SigningMethodHS256, testSecret, claims("x"), ""),
		"RS384":              rs384,
		"wrong issuer":       sign(t, jwt.SigningMethodRS256, fx.rsa, baseClaims("x"), "rsa1"),
	}
	for name, tok := range bad {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := v.Verify(ctx, tok)
			wantUnauthorized(t, err, tok)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("rejection took %v", d)
			}
		})
	}
}

// An unreachable or empty JWKS at start is not fatal (it is retried in the
// background): tokens get 503 meanwhile, never 401 nor a crash.
func TestNewVerifierJWKSUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[]}`))
	}))
	defer empty.Close()
	fx := newJWKS(t)
	tok := sign(t, jwt.SigningMethodRS256, fx.rsa, baseClaims("x"), "rsa1")
	for _, u := range []string{srv.URL + "/jwks", empty.URL} {
		v, err := NewVerifier(t.Context(), Config{JWKSURL: u, Log: discardLogger()})
		if err != nil {
			t.Fatalf("NewVerifier(%s): %v", u, err)
		}
		if _, err := v.Verify(context.Background(), tok); !apperr.Is(err, apperr.ServiceUnavailable) {
			t.Errorf("%s: Verify = %v, want ServiceUnavailable", u, err)
		}
		v.Close()
	}
}

// --- HTTP ------------------------------------------------------------------

type seen struct {
	called  bool
	p       Principal
	headers http.Header
}

func recordNext(s *seen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.called = true
		s.p, _ = FromContext(r.Context())
		s.headers = r.Header.Clone()
		w.WriteHeader(http.StatusNoContent)
	})
}

func serve(h http.Handler, path string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	r = r.WithContext(httpx.WithRequestID(r.Context(), discardLogger(), "req-123"))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestMiddleware(t *testing.T) {
	v := hsVerifier(t, Config{})
	tok := mustMint(t, "alice", "")
	cred := map[string]string{"Authorization": "Bearer " + tok, "X-Api-Key": tok, "Api-Key": tok}

	cases := []struct {
		name string
		path string
		hdr  map[string]string
		ok   bool
	}{
		{"bearer", "/v1/chat/completions", map[string]string{"Authorization": "Bearer " + tok}, true},
		{"bearer lower-case scheme", "/v1/keys", map[string]string{"Authorization": "bearer " + tok}, true},
		{"bearer upper-case scheme", "/v1/keys", map[string]string{"Authorization": "BEARER " + tok}, true},
		{"x-api-key on messages", "/v1/messages", map[string]string{"X-Api-Key": tok}, true},
		{"x-api-key elsewhere", "/v1/chat/completions", map[string]string{"X-Api-Key": tok}, false},
		{"x-api-key on messages subpath", "/v1/messages/count_tokens", map[string]string{"X-Api-Key": tok}, false},
		{"api-key", "/openai/deployments/x/chat/completions", map[string]string{"Api-Key": tok}, true},
		{"all three, stripped", "/v1/messages", cred, true},
		{"basic scheme", "/v1/keys", map[string]string{"Authorization": "Basic " + tok}, false},
		{"bearer empty", "/v1/keys", map[string]string{"Authorization": "Bearer "}, false},
		{"none", "/v1/keys", nil, false},
		{"invalid bearer", "/v1/keys", map[string]string{"Authorization": "Bearer garbage"}, false},
		{"invalid bearer, valid api-key", "/v1/keys", map[string]string{"Authorization": "Bearer garbage", "Api-Key": tok}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s seen
			w := serve(v.Middleware(recordNext(&s)), tc.path, tc.hdr)
			if !tc.ok {
				if s.called || w.Code != http.StatusUnauthorized {
					t.Fatalf("called=%v code=%d, want 401", s.called, w.Code)
				}
				checkEnvelope(t, w, "unauthorized", "authentication_error")
				if got := w.Header().Get("WWW-Authenticate"); got != "Bearer" {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				if strings.Contains(w.Body.String(), tok) {
					t.Error("401 body echoes the token")
				}
				return
			}
			if !s.called || w.Code != http.StatusNoContent {
				t.Fatalf("called=%v code=%d body=%s", s.called, w.Code, w.Body)
			}
			if s.p.UserID != "alice" {
				t.Errorf("principal = %+v", s.p)
			}
			for _, h := range []string{"Authorization", "X-Api-Key", "Api-Key"} {
				if s.headers.Get(h) != "" {
					t.Errorf("%s forwarded to next", h)
				}
			}
		})
	}

	// The caller's request headers are not mutated (the middleware clones them).
	r := httptest.NewRequest(http.MethodGet, "/v1/keys", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	r.Header.Set("X-Other", "kept")
	var s seen
	v.Middleware(recordNext(&s)).ServeHTTP(httptest.NewRecorder(), r)
	if r.Header.Get("Authorization") == "" || s.headers.Get("X-Other") != "kept" {
		t.Errorf("original headers mutated or other header lost: %v / %v", r.Header, s.headers)
	}
}

func checkEnvelope(t *testing.T, w *httptest.ResponseRecorder, code, typ string) {
	t.Helper()
	var body map[string]map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	e, ok := body["error"]
	if !ok || len(body) != 1 {
		t.Fatalf("envelope = %s", w.Body)
	}
	for _, k := range []string{"type", "code", "message", "request_id"} {
		if _, ok := e[k].(string); !ok {
			t.Errorf("error.%s missing or not a string: %s", k, w.Body)
		}
	}
	if e["code"] != code || e["type"] != typ || e["request_id"] != "req-123" || e["message"] == "" {
		t.Errorf("envelope = %s", w.Body)
	}
}

func TestRequireAdmin(t *testing.T) {
	v := hsVerifier(t, Config{})
	var s seen
	h := v.Middleware(RequireAdmin(recordNext(&s)))

	w := serve(h, "/admin/x", map[string]string{"Authorization": "Bearer " + mustMint(t, "alice", "")})
	if s.called || w.Code != http.StatusForbidden {
		t.Fatalf("non-admin: called=%v code=%d", s.called, w.Code)
	}
	checkEnvelope(t, w, "forbidden", "permission_error")

	w = serve(h, "/admin/x", map[string]string{"Authorization": "Bearer " + mustMint(t, "root", "admin")})
	if !s.called || w.Code != http.StatusNoContent || !s.p.Admin {
		t.Fatalf("admin: called=%v code=%d p=%+v", s.called, w.Code, s.p)
	}

	s = seen{}
	w = serve(RequireAdmin(recordNext(&s)), "/admin/x", nil)
	if s.called || w.Code != http.StatusUnauthorized {
		t.Fatalf("no principal: called=%v code=%d", s.called, w.Code)
	}
	checkEnvelope(t, w, "unauthorized", "authentication_error")
}

func TestContext(t *testing.T) {
	if _, ok := FromContext(context.Background()); ok {
		t.Fatal("empty context has a principal")
	}
	want := Principal{UserID: "u", Admin: true}
	if got, ok := FromContext(WithPrincipal(context.Background(), want)); !ok || got != want {
		t.Fatalf("got %+v %v", got, ok)
	}
}

func TestMint(t *testing.T) {
	if _, err := Mint([]byte("short"), "a", "", time.Hour, "", ""); err == nil {
		t.Error("short secret accepted")
	}
	if _, err := Mint(testSecret, "", "", time.Hour, "", ""); err == nil {
		t.Error("empty sub accepted")
	}
	if _, err := Mint(testSecret, "a", "", 0, "", ""); err == nil {
		t.Error("zero ttl accepted")
	}
	tok := mustMint(t, "alice", "admin")
	parts := strings.Split(tok, ".")
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if !strings.Contains(string(hdr), `"HS256"`) {
		t.Errorf("header = %s", hdr)
	}
}

func BenchmarkVerifyHS256(b *testing.B) {
	v := hsVerifier(b, Config{Issuer: "byok", Audience: "byok-api"})
	tok, err := Mint(testSecret, "alice", "admin", time.Hour, "byok", "byok-api")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
