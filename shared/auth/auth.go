// Package auth verifies byok's bearer JWTs (SPEC §4) and carries the verified
// Principal in the request context.
//
// One Verifier serves every route. It runs in exactly one mode: HS256 with a
// shared secret (AUTH_JWT_SECRET), or RS256/ES256 with keys from a JWKS URL
// (AUTH_JWKS_URL). The parser only accepts the algorithms of its mode, so
// "alg: none", HS/RS key confusion and any other algorithm are refused.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/httpx"
)

// Limits and defaults.
const (
	// MinSecretLen is the minimum HS256 secret length in bytes.
	MinSecretLen = 32
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat when
	// Config.Leeway is zero.
	DefaultLeeway = 30 * time.Second
	// MaxSubjectLen is the longest accepted `sub` claim.
	MaxSubjectLen = 256
	// MaxTokenLen bounds the token size we are willing to parse.
	MaxTokenLen = 8 << 10

	jwksHTTPTimeout = 10 * time.Second
)

// Principal is the verified caller.
type Principal struct {
	UserID string
	Admin  bool
}

// Config configures a Verifier. Exactly one of HS256Secret and JWKSURL must be
// set. Issuer and Audience are checked only when non-empty. Leeway is the
// allowed clock skew: 0 means DefaultLeeway, a negative value means none.
type Config struct {
	HS256Secret      []byte
	JWKSURL          string
	Issuer, Audience string
	Leeway           time.Duration
}

// ConfigFromEnv reads AUTH_JWT_SECRET, AUTH_JWKS_URL, AUTH_ISSUER and
// AUTH_AUDIENCE through getenv (e.g. os.Getenv). Surrounding whitespace is
// trimmed from every value.
func ConfigFromEnv(getenv func(string) string) Config {
	var cfg Config
	if s := strings.TrimSpace(getenv("AUTH_JWT_SECRET")); s != "" {
		cfg.HS256Secret = []byte(s)
	}
	cfg.JWKSURL = strings.TrimSpace(getenv("AUTH_JWKS_URL"))
	cfg.Issuer = strings.TrimSpace(getenv("AUTH_ISSUER"))
	cfg.Audience = strings.TrimSpace(getenv("AUTH_AUDIENCE"))
	return cfg
}

// Verifier verifies tokens. It is immutable after NewVerifier and safe for
// concurrent use.
type Verifier struct {
	parser *jwt.Parser
	secret []byte          // HS256 mode
	jwks   keyfunc.Keyfunc // JWKS mode
	stop   context.CancelFunc
}

// claims are the claims byok reads. role and roles are decoded loosely so a
// token with an unexpected shape there is simply not admin.
type claims struct {
	jwt.RegisteredClaims
	Role  any `json:"role,omitempty"`
	Roles any `json:"roles,omitempty"`
}

// NewVerifier builds a Verifier from cfg. In JWKS mode it fetches the key set
// once (failing with a clear error if that is impossible or the set is empty)
// and keeps it refreshed in a goroutine that ends when ctx is done or Close is
// called. The JWKS URL must be https (plain http only for a loopback host).
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	hasSecret, hasJWKS := len(cfg.HS256Secret) > 0, cfg.JWKSURL != ""
	switch {
	case !hasSecret && !hasJWKS:
		return nil, errors.New("auth: no token verification configured: set AUTH_JWT_SECRET (HS256) or AUTH_JWKS_URL (RS256/ES256)")
	case hasSecret && hasJWKS:
		return nil, errors.New("auth: AUTH_JWT_SECRET and AUTH_JWKS_URL are both set; set only one")
	case hasSecret && len(cfg.HS256Secret) < MinSecretLen:
		return nil, fmt.Errorf("auth: AUTH_JWT_SECRET is %d bytes; HS256 needs at least %d", len(cfg.HS256Secret), MinSecretLen)
	}

	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	} else if leeway < 0 {
		leeway = 0
	}
	methods := []string{jwt.SigningMethodHS256.Alg()}
	if hasJWKS {
		methods = []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg()}
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v := &Verifier{parser: jwt.NewParser(opts...)}

	if hasSecret {
		v.secret = append([]byte(nil), cfg.HS256Secret...)
		return v, nil
	}

	if err := checkJWKSURL(cfg.JWKSURL); err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(ctx)
	noErrFirst := false
	kf, err := keyfunc.NewDefaultOverrideCtx(kctx, []string{cfg.JWKSURL}, keyfunc.Override{
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &noErrFirst,
		RateLimitWaitMax:          time.Second, // never hold a request waiting for the unknown-kid refresh limiter
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("auth: cannot load JWKS from AUTH_JWKS_URL: %w", err)
	}
	keys, err := kf.Storage().KeyReadAll(ctx)
	if err != nil || len(keys) == 0 {
		cancel()
		return nil, fmt.Errorf("auth: the JWKS at AUTH_JWKS_URL holds no usable keys (%v)", err)
	}
	v.jwks, v.stop = kf, cancel
	return v, nil
}

func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("auth: AUTH_JWKS_URL is not a valid absolute URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return errors.New("auth: AUTH_JWKS_URL must use https (http is allowed only for localhost)")
}

// Close stops the JWKS refresh goroutine (a no-op in HS256 mode).
func (v *Verifier) Close() {
	if v.stop != nil {
		v.stop()
	}
}

func unauthorized(cause error, msg string) *apperr.Error {
	return apperr.Wrap(cause, apperr.Unauthorized, "%s", msg)
}

// Verify checks token and returns its Principal. Every failure is an
// *apperr.Error with code Unauthorized and a short message that never
// contains the token.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, apperr.New(apperr.Unauthorized, "missing token")
	}
	if len(token) > MaxTokenLen {
		return Principal{}, apperr.New(apperr.Unauthorized, "token is too large")
	}
	var kf jwt.Keyfunc
	if v.jwks != nil {
		kf = v.jwks.KeyfuncCtx(ctx)
	} else {
		kf = v.hsKey
	}
	var c claims
	if _, err := v.parser.ParseWithClaims(token, &c, kf); err != nil {
		return Principal{}, mapError(err)
	}
	sub := c.Subject
	if sub == "" {
		return Principal{}, apperr.New(apperr.Unauthorized, "token has no subject (sub)")
	}
	if !validSubject(sub) {
		return Principal{}, apperr.New(apperr.Unauthorized, "token subject (sub) is invalid")
	}
	return Principal{UserID: sub, Admin: isAdmin(c.Role, c.Roles)}, nil
}

func (v *Verifier) hsKey(t *jwt.Token) (any, error) {
	if t.Method != jwt.SigningMethodHS256 {
		return nil, jwt.ErrTokenSignatureInvalid
	}
	return v.secret, nil
}

func mapError(err error) *apperr.Error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return unauthorized(err, "token is malformed")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return unauthorized(err, "token signature is invalid")
	case errors.Is(err, jwt.ErrTokenExpired):
		return unauthorized(err, "token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return unauthorized(err, "token is not valid yet")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return unauthorized(err, "token is issued in the future")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return unauthorized(err, "token issuer is not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return unauthorized(err, "token audience is not accepted")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return unauthorized(err, "token is missing a required claim (exp, iss or aud)")
	default:
		return unauthorized(err, "token is invalid")
	}
}

func validSubject(s string) bool {
	if len(s) > MaxSubjectLen || !utf8.ValidString(s) || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// isAdmin: only the claim `role: "admin"` (SPEC §4) makes an admin. A
// `roles` claim is ignored: tokens from a shared identity provider meant for
// other apps often carry one.
func isAdmin(role, _ any) bool {
	r, ok := role.(string)
	return ok && r == "admin"
}

type ctxKey struct{}

// WithPrincipal returns a copy of ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the Principal stored by Middleware or WithPrincipal.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// MessagesPath is the one path where the token is also accepted as x-api-key.
const MessagesPath = "/v1/messages"

// tokenFrom picks the token: Authorization: Bearer (scheme case-insensitive),
// else x-api-key on /v1/messages, else api-key.
func tokenFrom(r *http.Request) (token string, badScheme bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
		if strings.EqualFold(scheme, "Bearer") {
			if t := strings.TrimSpace(rest); t != "" {
				return t, false
			}
		}
		badScheme = true
	}
	if r.URL.Path == MessagesPath {
		if t := strings.TrimSpace(r.Header.Get("X-Api-Key")); t != "" {
			return t, false
		}
	}
	if t := strings.TrimSpace(r.Header.Get("Api-Key")); t != "" {
		return t, false
	}
	return "", badScheme
}

func writeUnauthorized(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("WWW-Authenticate", "Bearer")
	httpx.WriteError(w, r, err)
}

// Middleware verifies the request's token, stores the Principal in the
// context and removes Authorization, x-api-key and api-key from the request
// passed to next. A missing or invalid token gets a 401 envelope with
// WWW-Authenticate: Bearer.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, badScheme := tokenFrom(r)
		if token == "" {
			msg := "missing credential: send Authorization: Bearer <token>"
			if badScheme {
				msg = "Authorization header must use the Bearer scheme"
			}
			writeUnauthorized(w, r, apperr.New(apperr.Unauthorized, "%s", msg))
			return
		}
		p, err := v.Verify(r.Context(), token)
		if err != nil {
			writeUnauthorized(w, r, err)
			return
		}
		r2 := r.WithContext(WithPrincipal(r.Context(), p))
		r2.Header = r.Header.Clone()
		for _, h := range [...]string{"Authorization", "X-Api-Key", "Api-Key"} { // our credential, never forwarded
			r2.Header.Del(h)
		}
		next.ServeHTTP(w, r2)
	})
}

// RequireAdmin lets only admin principals through: 401 without a principal,
// 403 (code forbidden) for a non-admin one.
func RequireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := FromContext(r.Context())
		if !ok {
			writeUnauthorized(w, r, apperr.New(apperr.Unauthorized, "missing credential: send Authorization: Bearer <token>"))
			return
		}
		if !p.Admin {
			httpx.WriteError(w, r, apperr.New(apperr.Forbidden, "admin role required"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Mint returns an HS256 token for sub that expires after ttl, with the claim
// role when role is non-empty and iss/aud when given. It is meant for the dev
// token command and tests.
func Mint(secret []byte, sub, role string, ttl time.Duration, issuer, audience string) (string, error) {
	if len(secret) < MinSecretLen {
		return "", fmt.Errorf("auth: secret is %d bytes; HS256 needs at least %d", len(secret), MinSecretLen)
	}
	if sub == "" || !validSubject(sub) {
		return "", fmt.Errorf("auth: subject must be 1..%d printable characters", MaxSubjectLen)
	}
	if ttl <= 0 {
		return "", errors.New("auth: ttl must be positive")
	}
	now := time.Now()
	c := claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		Issuer:    issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	if audience != "" {
		c.Audience = jwt.ClaimStrings{audience}
	}
	if role != "" {
		c.Role = role
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}
