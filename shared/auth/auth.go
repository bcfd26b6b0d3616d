// Package auth verifies byok's bearer JWTs and carries the verified
// Principal in the request context (docs: the API guide's authentication
// section).
//
// One Verifier serves every route. It runs in exactly one mode: HS256 with a
// shared secret (AUTH_JWT_SECRET, or a Secrets Manager secret named by
// AUTH_JWT_SECRET_ARN, read by shared/app), or RS256/ES256 with keys from a
// JWKS URL (AUTH_JWKS_URL). Only the algorithms of the mode are accepted, so
// "alg: none", HS/RS key confusion and any other algorithm are refused.
//
// The token is parsed here, once, into fixed structs holding only the claims
// byok reads (no map[string]any): the signature is checked with the mode's
// key, then the rules: no `crit` header (we understand no extension, RFC
// 7515 §4.1.11), `exp` required and a JSON number, a lifetime of at most
// MaxLifetime, `nbf`/`iat` honoured, issuer and audience when configured.
package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/golang-jwt/jwt/v5"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/jsondec"
)

// Limits and defaults.
const (
	// MinSecretLen is the minimum HS256 secret length in bytes.
	MinSecretLen = 32
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat when
	// Config.Leeway is zero.
	DefaultLeeway = 30 * time.Second
	// DefaultMaxLifetime is the longest token lifetime accepted when
	// Config.MaxLifetime is zero (AUTH_MAX_TOKEN_LIFETIME).
	DefaultMaxLifetime = 24 * time.Hour
	// MaxSubjectLen is the longest accepted `sub` claim (and user id).
	MaxSubjectLen = 128
	// MaxTokenLen bounds the token size we are willing to parse.
	MaxTokenLen = 8 << 10

	jwksHTTPTimeout = 10 * time.Second
	jwksRetryMax    = 30 * time.Second
)

// Principal is the verified caller.
type Principal struct {
	UserID string
	Admin  bool
	// Org and Project name the organisation and project the token acts for
	// (claims org and project; empty when absent); OrgRole is owner, admin
	// or member (claim org_role; any other value counts as member).
	Org, Project, OrgRole string
}

// OrgAdmin reports whether p may manage org's keys and settings: its token
// names org with org_role owner or admin.
func (p Principal) OrgAdmin(org string) bool {
	return p.Org != "" && p.Org == org && (p.OrgRole == OrgOwner || p.OrgRole == OrgAdminRole)
}

// Organisation roles (claim org_role).
const (
	OrgOwner     = "owner"
	OrgAdminRole = "admin"
	OrgMember    = "member"
)

// MaxOrgIDLen bounds the org and project claims.
const MaxOrgIDLen = 128

// ValidOrgID reports whether s may name an org or a project: 1..128
// printable ASCII characters without space, '#' or '/' (they separate ids
// in row keys and paths).
func ValidOrgID(s string) bool {
	if s == "" || len(s) > MaxOrgIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '#' || c == '/' {
			return false
		}
	}
	return true
}

// orgClaims checks the org, project and org_role claims: an org or project
// that is present must be a valid id, and a project needs an org.
func orgClaims(c *tokenClaims) (org, project, role string, err error) {
	str := func(name string, v json.RawMessage) (string, error) {
		if v == nil {
			return "", nil
		}
		s, ok := jsonString(v)
		if !ok || !ValidOrgID(s) {
			return "", apperr.New(apperr.Unauthorized, "token claim %s is invalid (1..%d printable characters, no space, '#' or '/')", name, MaxOrgIDLen)
		}
		return s, nil
	}
	if org, err = str("org", c.Org); err != nil {
		return
	}
	if project, err = str("project", c.Project); err != nil {
		return
	}
	if project != "" && org == "" {
		return "", "", "", apperr.New(apperr.Unauthorized, "token names a project but no org")
	}
	if org != "" {
		role = OrgMember
		if r, _ := jsonString(c.OrgRole); r == OrgOwner || r == OrgAdminRole {
			role = r
		}
	}
	return org, project, role, nil
}

// Config configures a Verifier. Exactly one of HS256Secret and JWKSURL must be
// set. Issuer and Audience are checked only when non-empty. Leeway is the
// allowed clock skew: 0 means DefaultLeeway, a negative value means none.
// MaxLifetime bounds exp minus iat (or minus now without iat): 0 means
// DefaultMaxLifetime. Log receives JWKS loading failures (slog.Default when
// nil).
type Config struct {
	HS256Secret      []byte
	JWKSURL          string
	Issuer, Audience string
	Leeway           time.Duration
	MaxLifetime      time.Duration
	Log              *slog.Logger

	jwksRetry time.Duration // first retry delay of a failed JWKS load (tests)
}

// ConfigFromEnv reads AUTH_JWT_SECRET, AUTH_JWKS_URL, AUTH_ISSUER,
// AUTH_AUDIENCE and AUTH_MAX_TOKEN_LIFETIME (a Go duration such as 24h)
// through getenv (e.g. os.Getenv). Surrounding whitespace is trimmed from
// every value; an unparsable lifetime keeps the default.
func ConfigFromEnv(getenv func(string) string) Config {
	var cfg Config
	if s := strings.TrimSpace(getenv("AUTH_JWT_SECRET")); s != "" {
		cfg.HS256Secret = []byte(s)
	}
	cfg.JWKSURL = strings.TrimSpace(getenv("AUTH_JWKS_URL"))
	cfg.Issuer = strings.TrimSpace(getenv("AUTH_ISSUER"))
	cfg.Audience = strings.TrimSpace(getenv("AUTH_AUDIENCE"))
	if d, err := time.ParseDuration(strings.TrimSpace(getenv("AUTH_MAX_TOKEN_LIFETIME"))); err == nil && d > 0 {
		cfg.MaxLifetime = d
	}
	return cfg
}

// Verifier verifies tokens. It is safe for concurrent use; in JWKS mode its
// key set is loaded (and refreshed) in the background.
type Verifier struct {
	secret           []byte // HS256 mode
	jwksMode         bool
	jwks             atomic.Pointer[keyfunc.Keyfunc] // nil until the JWKS loaded once
	issuer, audience string
	leeway, maxLife  time.Duration
	now              func() time.Time
	stop             context.CancelFunc
	macs             sync.Pool // HS256 hmac states keyed with secret, reused across requests
	decoders         jsondec.Pool
}

// NewVerifier builds a Verifier from cfg. In JWKS mode it fetches the key set
// once; when that fails (the identity provider is down, a placeholder URL)
// start-up goes on: the set is retried in the background with backoff and,
// until it loads, Verify answers 503 "token keys not loaded yet". Once
// loaded it is kept refreshed. The goroutines end when ctx is done or Close
// is called. The JWKS URL must be https (plain http only for a loopback
// host).
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
	v := &Verifier{issuer: cfg.Issuer, audience: cfg.Audience, leeway: cfg.Leeway, maxLife: cfg.MaxLifetime, now: time.Now}
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	} else if v.leeway < 0 {
		v.leeway = 0
	}
	if v.maxLife <= 0 {
		v.maxLife = DefaultMaxLifetime
	}
	if hasSecret {
		v.secret = append([]byte(nil), cfg.HS256Secret...)
		return v, nil
	}
	if err := checkJWKSURL(cfg.JWKSURL); err != nil {
		return nil, err
	}
	v.jwksMode = true
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	kctx, cancel := context.WithCancel(ctx)
	v.stop = cancel
	if err := v.loadJWKS(kctx, cfg.JWKSURL); err != nil {
		log.Error("auth: cannot load the token keys from AUTH_JWKS_URL; retrying in the background, requests get 503 until they load",
			"url", cfg.JWKSURL, "err", err.Error())
		retry := cfg.jwksRetry
		if retry <= 0 {
			retry = time.Second
		}
		go v.retryJWKS(kctx, cfg.JWKSURL, retry, log)
	}
	return v, nil
}

// loadJWKS fetches the key set once and, when it holds keys, installs a
// keyfunc that keeps it refreshed.
func (v *Verifier) loadJWKS(ctx context.Context, u string) error {
	noErrFirst := false
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{u}, keyfunc.Override{
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &noErrFirst,
		RateLimitWaitMax:          time.Second, // never hold a request waiting for the unknown-kid refresh limiter
	})
	if err != nil {
		return fmt.Errorf("auth: cannot load JWKS from AUTH_JWKS_URL: %w", err)
	}
	keys, err := kf.Storage().KeyReadAll(ctx)
	if err != nil || len(keys) == 0 {
		return fmt.Errorf("auth: the JWKS at AUTH_JWKS_URL holds no usable keys (%v)", err)
	}
	v.jwks.Store(&kf)
	return nil
}

func (v *Verifier) retryJWKS(ctx context.Context, u string, wait time.Duration, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		err := v.loadJWKS(ctx, u)
		if err == nil {
			log.Info("auth: token keys loaded from AUTH_JWKS_URL", "url", u)
			return
		}
		if ctx.Err() != nil {
			return
		}
		wait = min(wait*2, jwksRetryMax)
		log.Warn("auth: token keys still not loaded; retrying", "url", u, "err", err.Error(), "retry_in", wait.String())
	}
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

// Close stops the JWKS goroutines (a no-op in HS256 mode).
func (v *Verifier) Close() {
	if v.stop != nil {
		v.stop()
	}
}

func unauthorized(msg string) *apperr.Error {
	return apperr.New(apperr.Unauthorized, "%s", msg)
}

// header is the JOSE header fields we read. Crit is kept raw: its presence
// alone refuses the token.
type header struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Crit json.RawMessage `json:"crit"`
}

// tokenClaims are the claims byok reads. Times and role stay raw so their
// JSON type is checked (a string exp is refused; only the string "admin"
// makes an admin), and nothing else is decoded.
type tokenClaims struct {
	Sub  json.RawMessage `json:"sub"`
	Iss  json.RawMessage `json:"iss"`
	Aud  json.RawMessage `json:"aud"`
	Exp  json.RawMessage `json:"exp"`
	Nbf  json.RawMessage `json:"nbf"`
	Iat  json.RawMessage `json:"iat"`
	Role json.RawMessage `json:"role"`
	// Org, Project, OrgRole: see Principal (checked by orgClaims).
	Org     json.RawMessage `json:"org"`
	Project json.RawMessage `json:"project"`
	OrgRole json.RawMessage `json:"org_role"`
}

var (
	errMalformed = unauthorized("token is malformed")
	errSignature = unauthorized("token signature is invalid")
)

// Verify checks token and returns its Principal. Every failure is an
// *apperr.Error with code Unauthorized and a short message that never
// contains the token, except ServiceUnavailable while the JWKS has not
// loaded yet.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, apperr.New(apperr.Unauthorized, "missing token")
	}
	if len(token) > MaxTokenLen {
		return Principal{}, apperr.New(apperr.Unauthorized, "token is too large")
	}
	h64, rest, ok1 := strings.Cut(token, ".")
	c64, s64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(s64, ".") {
		return Principal{}, errMalformed
	}
	hdr, err := decodeHeader(&v.decoders, h64)
	if err != nil {
		return Principal{}, errMalformed
	}
	if hdr.Crit != nil {
		return Principal{}, unauthorized("token has a crit header naming extensions this server does not understand; remove crit")
	}
	sig, err := base64.RawURLEncoding.DecodeString(s64)
	if err != nil {
		return Principal{}, errMalformed
	}
	if err := v.checkSignature(ctx, hdr, token[:len(h64)+1+len(c64)], sig); err != nil {
		return Principal{}, err
	}
	var c tokenClaims
	if err := decodeSegment(&v.decoders, c64, c.fields()); err != nil {
		return Principal{}, errMalformed
	}
	if err := v.checkClaims(&c); err != nil {
		return Principal{}, err
	}
	sub, ok := jsonString(c.Sub)
	if !ok || sub == "" {
		return Principal{}, unauthorized("token has no subject (sub) string")
	}
	if !ValidUserID(sub) {
		return Principal{}, unauthorized(subjectRule)
	}
	org, project, orgRole, err := orgClaims(&c)
	if err != nil {
		return Principal{}, err
	}
	return Principal{UserID: sub, Admin: bytes.Equal(c.Role, []byte(`"admin"`)), Org: org, Project: project, OrgRole: orgRole}, nil
}

// field is one member of a segment we read, and where its raw value goes.
type field struct {
	name string
	dst  *json.RawMessage
}

func (c *tokenClaims) fields() []field {
	return []field{{"sub", &c.Sub}, {"iss", &c.Iss}, {"aud", &c.Aud}, {"exp", &c.Exp}, {"nbf", &c.Nbf},
		{"iat", &c.Iat}, {"role", &c.Role}, {"org", &c.Org}, {"project", &c.Project}, {"org_role", &c.OrgRole}}
}

// decodeHeader reads the JOSE header: alg and kid must be strings when
// present (null counts as absent), crit is kept raw.
func decodeHeader(p *jsondec.Pool, seg string) (header, error) {
	var alg, kid json.RawMessage
	var h header
	if err := decodeSegment(p, seg, []field{{"alg", &alg}, {"kid", &kid}, {"crit", &h.Crit}}); err != nil {
		return h, err
	}
	for _, f := range [...]struct {
		raw json.RawMessage
		dst *string
	}{{alg, &h.Alg}, {kid, &h.Kid}} {
		if f.raw == nil || string(f.raw) == "null" {
			continue
		}
		s, ok := jsonString(f.raw)
		if !ok {
			return h, errors.New("not a string")
		}
		*f.dst = s
	}
	return h, nil
}

// decodeSegment decodes a base64url JSON object and sets each of fields to
// its member's raw value. It reads names as encoding/json would into a
// struct, which it replaced here for speed (docs/performance.md, row 1): the
// exact name, else one equal under case folding; of repeated names the
// last; invalid UTF-8 allowed; one object and nothing after it.
func decodeSegment(p *jsondec.Pool, seg string, fields []field) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	if len(raw) == 0 || raw[0] != '{' {
		return errors.New("not a JSON object")
	}
	dec := p.Get(raw, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	defer p.Release(dec)
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return err
		}
		dst := lookupField(fields, name)
		v, err := dec.ReadValue()
		if err != nil {
			return err
		}
		if dst != nil {
			end := dec.InputOffset()
			*dst = raw[end-int64(len(v)) : end : end] // raw is ours: no copy
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// lookupField finds the field for a quoted member name: exact, else equal
// under case folding (encoding/json's rule).
func lookupField(fields []field, quoted []byte) *json.RawMessage {
	name := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		u, err := jsontext.AppendUnquote(nil, quoted)
		if err != nil {
			return nil
		}
		name = u
	}
	for _, f := range fields {
		if string(name) == f.name {
			return f.dst
		}
	}
	for _, f := range fields {
		if bytes.EqualFold(name, []byte(f.name)) {
			return f.dst
		}
	}
	return nil
}

// checkSignature verifies sig over signing with the mode's key.
func (v *Verifier) checkSignature(ctx context.Context, hdr header, signing string, sig []byte) error {
	if !v.jwksMode {
		if hdr.Alg != "HS256" {
			return errSignature
		}
		m, _ := v.macs.Get().(hash.Hash)
		if m == nil {
			m = hmac.New(sha256.New, v.secret)
		}
		m.Reset()
		_, _ = io.WriteString(m, signing)
		var sum [sha256.Size]byte
		ok := hmac.Equal(m.Sum(sum[:0]), sig)
		v.macs.Put(m)
		if !ok {
			return errSignature
		}
		return nil
	}
	var method jwt.SigningMethod
	switch hdr.Alg {
	case "RS256":
		method = jwt.SigningMethodRS256
	case "ES256":
		method = jwt.SigningMethodES256
	default:
		return errSignature
	}
	kf := v.jwks.Load()
	if kf == nil {
		return apperr.New(apperr.ServiceUnavailable, "token keys not loaded yet: the identity provider's key set (AUTH_JWKS_URL) could not be fetched; retry shortly")
	}
	t := &jwt.Token{Method: method, Header: map[string]any{"alg": hdr.Alg, "kid": hdr.Kid}}
	key, err := (*kf).KeyfuncCtx(ctx)(t)
	if err != nil {
		return errSignature
	}
	if method.Verify(signing, sig, key) != nil {
		return errSignature
	}
	return nil
}

// jsonString decodes raw when it is a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 { // no escapes: the text between the quotes (json.Unmarshal validated it)
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// numericDate parses a NumericDate claim: a JSON number, never a string.
func numericDate(raw json.RawMessage) (float64, bool) {
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	return f, err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
}

func (v *Verifier) checkClaims(c *tokenClaims) error {
	now := float64(v.now().UnixNano()) / 1e9
	lee := v.leeway.Seconds()
	if len(c.Exp) == 0 {
		return unauthorized("token is missing a required claim (exp)")
	}
	exp, ok := numericDate(c.Exp)
	if !ok {
		return unauthorized("token exp must be a number (seconds since 1970)")
	}
	if now > exp+lee {
		return unauthorized("token has expired")
	}
	from := now
	if len(c.Iat) > 0 {
		iat, ok := numericDate(c.Iat)
		if !ok {
			return unauthorized("token iat must be a number (seconds since 1970)")
		}
		if iat > now+lee {
			return unauthorized("token is issued in the future")
		}
		from = iat
	}
	if exp-from > (v.maxLife + v.leeway).Seconds() {
		return unauthorized(fmt.Sprintf("token lifetime exceeds the %s this server accepts (AUTH_MAX_TOKEN_LIFETIME); issue a shorter-lived token", v.maxLife))
	}
	if len(c.Nbf) > 0 {
		nbf, ok := numericDate(c.Nbf)
		if !ok {
			return unauthorized("token nbf must be a number (seconds since 1970)")
		}
		if nbf > now+lee {
			return unauthorized("token is not valid yet")
		}
	}
	if v.issuer != "" {
		if iss, ok := jsonString(c.Iss); !ok || iss != v.issuer {
			return unauthorized("token issuer is not accepted")
		}
	}
	if v.audience != "" && !hasAudience(c.Aud, v.audience) {
		return unauthorized("token audience is not accepted")
	}
	return nil
}

// hasAudience: aud is a string or an array of strings that holds want.
func hasAudience(raw json.RawMessage, want string) bool {
	if len(raw) == 0 {
		return false
	}
	if raw[0] == '"' {
		var s string
		return json.Unmarshal(raw, &s) == nil && s == want
	}
	var list []string
	if json.Unmarshal(raw, &list) != nil {
		return false
	}
	for _, a := range list {
		if a == want {
			return true
		}
	}
	return false
}

// subjectRule is the user id rule, as users and admins are told it.
const subjectRule = "token subject (sub) must be 1-128 printable ASCII characters without spaces or '#'"

// ValidUserID reports whether id can name a user: 1 to MaxSubjectLen
// printable ASCII characters, no space and no '#' (the storage keys'
// separator). It is the one rule for token subjects and for the user ids of
// the admin routes.
func ValidUserID(id string) bool {
	if id == "" || len(id) > MaxSubjectLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' || c == '#' {
			return false
		}
	}
	return true
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

// writeError answers an auth failure: on /v1/messages in the Anthropic
// error shape (its SDKs show only that shape's message), elsewhere in the
// envelope; a 401 also carries WWW-Authenticate: Bearer.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	if apperr.Is(err, apperr.Unauthorized) {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	if r.URL.Path == MessagesPath {
		httpx.WriteAnthropicError(w, r, err)
		return
	}
	httpx.WriteError(w, r, err)
}

// Middleware verifies the request's token, stores the Principal in the
// context and removes Authorization, x-api-key and api-key from the request
// passed to next. A missing or invalid token gets a 401 envelope with
// WWW-Authenticate: Bearer (Anthropic-shaped on /v1/messages); a JWKS not
// loaded yet a 503.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, badScheme := tokenFrom(r)
		if token == "" {
			msg := "missing credential: send Authorization: Bearer <token>"
			if badScheme {
				msg = "Authorization header must use the Bearer scheme"
			}
			writeError(w, r, apperr.New(apperr.Unauthorized, "%s", msg))
			return
		}
		p, err := v.Verify(r.Context(), token)
		if err != nil {
			writeError(w, r, err)
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
			writeError(w, r, apperr.New(apperr.Unauthorized, "missing credential: send Authorization: Bearer <token>"))
			return
		}
		if !p.Admin {
			writeError(w, r, apperr.New(apperr.Forbidden, "admin role required"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Mint returns an HS256 token for sub that expires after ttl, with the claim
// role when role is non-empty and iss/aud when given. It is meant for the dev
// token command and tests.
func Mint(secret []byte, sub, role string, ttl time.Duration, issuer, audience string) (string, error) {
	return MintOrg(secret, sub, role, "", "", "", ttl, issuer, audience)
}

// MintOrg is Mint with the claims org, project and org_role when non-empty
// (checked as the verifier checks them).
func MintOrg(secret []byte, sub, role, org, project, orgRole string, ttl time.Duration, issuer, audience string) (string, error) {
	if len(secret) < MinSecretLen {
		return "", fmt.Errorf("auth: secret is %d bytes; HS256 needs at least %d", len(secret), MinSecretLen)
	}
	if !ValidUserID(sub) {
		return "", fmt.Errorf("auth: subject must be 1..%d printable ASCII characters without spaces or '#'", MaxSubjectLen)
	}
	if ttl <= 0 {
		return "", errors.New("auth: ttl must be positive")
	}
	if org != "" && !ValidOrgID(org) || project != "" && !ValidOrgID(project) {
		return "", fmt.Errorf("auth: org and project must be 1..%d printable ASCII characters without space, '#' or '/'", MaxOrgIDLen)
	}
	if project != "" && org == "" || orgRole != "" && org == "" {
		return "", errors.New("auth: a project or org_role needs an org")
	}
	now := time.Now()
	c := struct {
		jwt.RegisteredClaims
		Role    string `json:"role,omitempty"`
		Org     string `json:"org,omitempty"`
		Project string `json:"project,omitempty"`
		OrgRole string `json:"org_role,omitempty"`
	}{RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sub,
		Issuer:    issuer,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}, Role: role, Org: org, Project: project, OrgRole: orgRole}
	if audience != "" {
		c.Audience = jwt.ClaimStrings{audience}
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}
