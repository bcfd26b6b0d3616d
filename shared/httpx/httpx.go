// Package httpx holds the HTTP plumbing every byok handler shares: request ids,
// the request-scoped slog logger, the docs/api.md §12 error envelope, bounded JSON
// decoding and panic recovery.
package httpx

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/synthstack/byok/shared/apperr"
)

// Body limits of docs/api.md §12.
const (
	MaxJSONBody      = 10 << 20 // chat, embeddings and the small JSON routes
	MaxUploadBody    = 25 << 20 // transcription
	RequestIDHeader  = "X-Request-Id"
	maxClientReqIDLn = 128
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	loggerKey
	nonceKey
)

// RequestNonce returns the id the server made for this request alone ("" if
// none). Unlike the request id it never comes from the client, so it can
// prove which request wrote something (the owner of a credit reservation).
func RequestNonce(ctx context.Context) string {
	id, _ := ctx.Value(nonceKey).(string)
	return id
}

// WithRequestNonce stores the server-made id of this request in ctx.
func WithRequestNonce(ctx context.Context, nonce string) context.Context {
	return context.WithValue(ctx, nonceKey, nonce)
}

// RequestID returns the request id stored in ctx ("" if none).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestLogger is the request-scoped logger, made on first use: most
// requests log only their access line, which names the id itself.
type requestLogger struct {
	once sync.Once
	base *slog.Logger
	id   string
	l    *slog.Logger
}

func (rl *requestLogger) get() *slog.Logger {
	rl.once.Do(func() { rl.l = rl.base.With("request_id", rl.id) })
	return rl.l
}

// Logger returns the request-scoped logger (with request_id), or def.
func Logger(ctx context.Context, def *slog.Logger) *slog.Logger {
	if rl, ok := ctx.Value(loggerKey).(*requestLogger); ok {
		return rl.get()
	}
	return def
}

// WithRequestID stores id and a logger carrying it in ctx.
func WithRequestID(ctx context.Context, log *slog.Logger, id string) context.Context {
	ctx = context.WithValue(ctx, requestIDKey, id)
	return context.WithValue(ctx, loggerKey, &requestLogger{base: log, id: id})
}

// NewID returns a random 128-bit hex id.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validClientID(s string) bool {
	if s == "" || len(s) > maxClientReqIDLn {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// statusRecorder remembers the status for the access log; it forwards
// Flush so streaming handlers are never buffered.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

// StatusClientGone is the status logged for a request whose client went
// away before its answer (nginx's 499): not an error of ours.
const StatusClientGone = 499

// ClientGone reports whether r's client went away (its connection closed or
// the request was cancelled): an error met now is a consequence, logged as
// such, never as an internal error.
func ClientGone(r *http.Request) bool { return errors.Is(r.Context().Err(), context.Canceled) }

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Middleware assigns the request id (the Lambda request id when running in
// Lambda, else a valid client X-Request-Id, else a new one), echoes it in
// X-Request-Id, logs one access line (method, path, status, duration; never
// headers or bodies) and turns panics into a 500 envelope.
func Middleware(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := ""
		if lc, ok := lambdacontext.FromContext(r.Context()); ok && lc.AwsRequestID != "" {
			id = lc.AwsRequestID
		}
		if id == "" {
			if c := r.Header.Get(RequestIDHeader); validClientID(c) {
				id = c
			} else {
				id = NewID()
			}
		}
		ctx := WithRequestNonce(WithRequestID(r.Context(), log, id), NewID())
		r = r.WithContext(ctx)
		w.Header().Set(RequestIDHeader, id)
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				Logger(ctx, log).Error("panic", "panic", slog.AnyValue(p).String())
				if rec.status == 0 {
					WriteError(rec, r, apperr.New(apperr.Internal, "internal error"))
				}
			}
			status, gone := rec.status, ClientGone(r)
			if gone {
				// Nothing (or only our reaction to the cancellation) was
				// sent: the client left, which is not a failure of ours.
				if status == 0 || status >= 500 {
					status = StatusClientGone
				}
			}
			// LogAttrs: typed attributes, no []any boxing on every request.
			// (request_id first, where the request's logger puts it.)
			attrs := [7]slog.Attr{slog.String("request_id", id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", status), slog.Int64("bytes", rec.bytes),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000)}
			n := 6
			if gone {
				attrs[n], n = slog.Bool("client_gone", true), n+1
			}
			log.LogAttrs(ctx, slog.LevelInfo, "request", attrs[:n]...)
		}()
		next.ServeHTTP(rec, r)
	})
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Type      string `json:"type"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// WriteError writes err in the docs/api.md §12 envelope. Non-application errors are
// logged with their cause and sent as a generic 500.
//
// When the client already went away, nothing is written and the error is
// logged as a consequence of that (the access line says 499).
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	if clientGoneNote(r, err) {
		return
	}
	code, msg, retry := apperr.Public(err)
	status := apperr.Status(code)
	log := Logger(r.Context(), slog.Default())
	if status >= 500 {
		log.Error("request failed", "code", string(code), "err", err.Error())
	} else {
		log.Info("request refused", "code", string(code), "message", msg)
	}
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retry))
	}
	WriteJSON(w, status, errorBody{Error: errorDetail{
		Type: apperr.Type(code), Code: string(code), Message: msg, RequestID: RequestID(r.Context()),
	}})
}

// WriteAnthropicError writes err in the Anthropic error shape
// ({"type":"error","error":{"type","message",...}}) carrying the envelope's
// fields, as every error on /v1/messages is: the Anthropic SDKs surface only
// that shape's message. 402, 413 and 503 take Anthropic's own error types.
func WriteAnthropicError(w http.ResponseWriter, r *http.Request, err error) {
	if clientGoneNote(r, err) {
		return
	}
	code, msg, retry := apperr.Public(err)
	status := apperr.Status(code)
	log := Logger(r.Context(), slog.Default())
	if status >= 500 {
		log.Error("request failed", "code", string(code), "err", err.Error())
	} else {
		log.Info("request refused", "code", string(code), "message", msg)
	}
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retry))
	}
	typ := apperr.Type(code)
	switch status {
	case http.StatusPaymentRequired:
		typ = "billing_error"
	case http.StatusServiceUnavailable:
		typ = "overloaded_error"
	case http.StatusRequestEntityTooLarge:
		typ = "request_too_large"
	}
	rid := RequestID(r.Context())
	WriteJSON(w, status, anthropicErrorBody{Type: "error", RequestID: rid, Error: errorDetail{
		Type: typ, Code: string(code), Message: msg, RequestID: rid,
	}})
}

type anthropicErrorBody struct {
	Type      string      `json:"type"`
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id"`
}

// clientGoneNote logs err as the consequence of a departed client and
// reports true when r's client went away (nobody is left to answer).
func clientGoneNote(r *http.Request, err error) bool {
	if !ClientGone(r) {
		return false
	}
	code, _, _ := apperr.Public(err)
	Logger(r.Context(), slog.Default()).Info("client went away; request abandoned", "code", string(code), "err", err.Error())
	return true
}

// WriteJSON writes v as JSON with status.
// Respond writes err in the envelope when there is one, else v as JSON with
// status: the last step of most handlers.
func Respond(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, status, v)
}

func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// DecodeJSON reads a JSON object of at most limit bytes into dst. It rejects
// a wrong content type, a body over the limit (413), malformed JSON, wrong
// field types, unknown fields and trailing data, each as a clear error.
func DecodeJSON(w http.ResponseWriter, r *http.Request, limit int64, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return apperr.New(apperr.InvalidRequest, "Content-Type must be application/json")
		}
	}
	if r.ContentLength > limit {
		return apperr.New(apperr.RequestTooLarge, "request body exceeds %d bytes", limit)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return decodeError(err, limit)
	}
	if err := checkNames(raw); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err, limit)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apperr.New(apperr.RequestTooLarge, "request body exceeds %d bytes", limit)
		}
		return apperr.New(apperr.InvalidRequest, "request body must hold a single JSON object")
	}
	return nil
}

// checkNames refuses a body whose objects repeat a name, at any depth, or
// spell one name twice in different case: encoding/json keeps the last of
// them and matches case-insensitively, so what we validated and what we store
// could differ (docs/api.md, errors). Syntax errors are left to the decoder.
func checkNames(raw []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(raw), jsontext.AllowDuplicateNames(true))
	var stack []map[string]string // per open object: folded name → first spelling
	for {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil
		}
		switch tok.Kind() {
		case '{':
			stack = append(stack, map[string]string{})
			continue
		case '}':
			stack = stack[:len(stack)-1]
			continue
		case '"':
		default:
			continue
		}
		if k, n := dec.StackIndex(dec.StackDepth()); k != '{' || n%2 == 0 || len(stack) == 0 {
			continue // a string value, not a name
		}
		name, seen := tok.String(), stack[len(stack)-1]
		folded := strings.ToLower(name)
		switch first, ok := seen[folded]; {
		case ok && first == name:
			return apperr.New(apperr.InvalidRequest, "duplicate key %q in the request body: each key may appear once", clipName(name))
		case ok:
			return apperr.New(apperr.InvalidRequest, "the request body has both %q and %q: keys may appear once, in one spelling", clipName(first), clipName(name))
		}
		seen[folded] = name
	}
}

// clipName bounds a client-chosen name echoed in an error.
func clipName(s string) string {
	if len(s) > 40 || strings.Contains(s, "sk-") {
		return s[:min(len(s), 8)] + "…"
	}
	return s
}

func decodeError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return apperr.New(apperr.RequestTooLarge, "request body exceeds %d bytes", limit)
	case errors.Is(err, io.EOF):
		return apperr.New(apperr.InvalidRequest, "request body is empty; a JSON object is required")
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return apperr.New(apperr.InvalidRequest, "request body is not valid JSON")
	case errors.As(err, &te):
		if te.Field != "" {
			return apperr.New(apperr.InvalidRequest, "field %q must be of type %s", te.Field, te.Type.String())
		}
		return apperr.New(apperr.InvalidRequest, "request body must be a JSON object")
	default:
		const prefix = "json: unknown field "
		if s := err.Error(); len(s) > len(prefix) && s[:len(prefix)] == prefix {
			// Name the field only when it looks like a field name: a body
			// may carry a secret in the wrong place.
			if name := s[len(prefix):]; len(name) <= 34 && isFieldName(name) {
				return apperr.New(apperr.InvalidRequest, "unknown field %s", name)
			}
			return apperr.New(apperr.InvalidRequest, "request body has an unknown field")
		}
		return apperr.New(apperr.InvalidRequest, "request body is not valid JSON")
	}
}

func isFieldName(quoted string) bool {
	if len(quoted) < 3 || quoted[0] != '"' || quoted[len(quoted)-1] != '"' {
		return false
	}
	for _, c := range quoted[1 : len(quoted)-1] {
		if !(c >= 'a' && c <= 'z' || c == '_' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// NotFoundHandler answers unknown routes with the envelope.
func NotFoundHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, apperr.New(apperr.NotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
}

// NoRouteHandler answers a request no route of mux took: 405 with Allow
// when the path is served with other methods, else 404; both in our
// envelope (docs/api.md §12). mux's catch-all "/" must be this handler.
func NoRouteHandler(mux *http.ServeMux) http.Handler {
	methods := [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range methods {
			if m == r.Method {
				continue
			}
			probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
			if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
				allow = append(allow, m)
			}
		}
		if len(allow) == 0 {
			WriteError(w, r, apperr.New(apperr.NotFound, "no route for %s %s", r.Method, r.URL.Path))
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteError(w, r, apperr.New(apperr.MethodNotAllowed, "%s is not served on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
	})
}

// Router is what route registration needs (*http.ServeMux satisfies it).
type Router interface {
	Handle(pattern string, h http.Handler)
	HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request))
}

// RouteRecorder is a Router that only records patterns, so tests can compare
// the routes the code serves with the ones template.yaml declares.
type RouteRecorder struct{ Patterns []string }

// Handle records pattern.
func (r *RouteRecorder) Handle(pattern string, _ http.Handler) {
	r.Patterns = append(r.Patterns, pattern)
}

// HandleFunc records pattern.
func (r *RouteRecorder) HandleFunc(pattern string, _ func(http.ResponseWriter, *http.Request)) {
	r.Patterns = append(r.Patterns, pattern)
}
