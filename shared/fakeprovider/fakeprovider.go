// Package fakeprovider is a fake OpenAI + Anthropic upstream for tests (docs/api.md
// §15): one httptest server that answers both protocols, with per-key
// behaviour (status, body, Retry-After, latency, stalls, dropped connections,
// SSE pacing, cut streams, tool calls) and a record of what it received.
//
// Routes: OpenAI GET /v1/models, POST /v1/chat/completions, POST
// /v1/embeddings, POST /v1/audio/transcriptions; Anthropic GET /v1/models,
// POST /v1/messages. Answers are deterministic and never contain prompt text:
// see ExpectedReply, ExpectedUsage and PromptTokens for how replies and token
// counts are derived from the request body.
//
// A request is Anthropic-protocol when it carries an anthropic-version or
// x-api-key header (key from x-api-key, else Authorization: Bearer); otherwise
// it is OpenAI-protocol (key from Authorization: Bearer). Routes are looked up
// in a table by (protocol, method, path); unknown routes get a provider-shaped
// 404. Error bodies have each provider's exact shape.
//
// It is not a _test package so other packages' tests can import it.
package fakeprovider

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Behavior is how the server answers a request presenting a given key.
// Faults are applied in order: Delay, then Stall, then DropConn, then the answer.
// The zero value of every field added for the generation routes (Chunks and
// below) means "normal".
type Behavior struct {
	// Status is the HTTP status; 0 means 200. A non-2xx status answers with
	// Body, or, when Body is empty, the provider's usual error for that status.
	// A 2xx status answers with Body when set, else the route's normal success.
	Status int
	// Body, when set, is sent verbatim as application/json.
	Body string
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Headers are sent as they are on the answer (e.g. a provider's
	// rate-limit headers, x-ratelimit-* or anthropic-ratelimit-*).
	Headers map[string]string
	// Delay is waited before answering (cut short by the client going away).
	Delay time.Duration
	// Stall hangs until the request's context is done (or the server closes).
	Stall bool
	// DropConn hijacks the connection and closes it without any answer.
	DropConn bool

	// Chunks is the number of content pieces of a chat/messages reply (text
	// pieces, or tool-call argument pieces); 0 or less means DefaultChunks.
	// Each piece counts as one output token.
	Chunks int
	// ChunkDelay is waited before every SSE event but the first.
	ChunkDelay time.Duration
	// FirstChunkThenWait: a stream sends everything up to and including the
	// first content piece, flushes, then waits this long before the rest.
	FirstChunkThenWait time.Duration
	// CutAfter > 0 closes a stream's connection abruptly after
	// min(CutAfter, pieces) content pieces: no final chunk, no usage, no
	// [DONE] / message_stop. Ignored for non-stream requests.
	CutAfter int
	// ToolCall answers with a call to the request's first tool (when the
	// request has tools) instead of text; finish_reason "tool_calls" /
	// stop_reason "tool_use".
	ToolCall bool
	// Usage, when set, replaces the reported token counts.
	Usage *Usage
	// Reply, when set, replaces the derived reply text (it is still split
	// into Chunks pieces).
	Reply string

	// EchoKey makes error answers (a non-2xx Status without Body, and
	// StreamError events) carry the credential the request presented, as a
	// careless OpenAI-compatible server or proxy does: in the message (also
	// as "Bearer <key>"), in param and in extra fields.
	EchoKey bool
	// StreamError ends a stream after its first content piece with the
	// protocol's error event (OpenAI: a chunk {"error":{...}}; Anthropic:
	// "event: error") instead of the rest of the answer.
	StreamError bool
	// MultilineData sends every SSE event's JSON indented over several
	// data: lines, which SSE clients join with newlines.
	MultilineData bool
}

// Usage is a token count as the fake reports it: OpenAI prompt_tokens /
// completion_tokens, Anthropic input_tokens / output_tokens.
type Usage struct {
	Input, Output int
}

// OK answers normally with 200.
func OK() Behavior { return Behavior{Status: http.StatusOK} }

// Unauthorized is a 401 with the provider's invalid-key error.
func Unauthorized() Behavior { return Behavior{Status: http.StatusUnauthorized} }

// Forbidden is a 403 with the provider's permission error.
func Forbidden() Behavior { return Behavior{Status: http.StatusForbidden} }

// PaymentRequired is a 402 with the provider's billing error.
func PaymentRequired() Behavior { return Behavior{Status: http.StatusPaymentRequired} }

// InsufficientQuota is OpenAI's 429 insufficient_quota answer.
func InsufficientQuota() Behavior {
	return Behavior{
		Status: http.StatusTooManyRequests,
		Body: OpenAIError("You exceeded your current quota, please check your plan and billing details. "+
			"For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
			"insufficient_quota", "insufficient_quota"),
	}
}

// RateLimited is a plain 429 with Retry-After "7" and the provider's rate-limit error.
func RateLimited() Behavior {
	return Behavior{Status: http.StatusTooManyRequests, RetryAfter: "7"}
}

// ServerError is a 500 with the provider's internal error.
func ServerError() Behavior { return Behavior{Status: http.StatusInternalServerError} }

// Overloaded is Anthropic's 529 overloaded_error answer.
func Overloaded() Behavior {
	return Behavior{Status: 529, Body: AnthropicError("overloaded_error", "Overloaded")}
}

// AnthropicNoBilling is Anthropic's 400 answer for an account without credit.
func AnthropicNoBilling() Behavior {
	return Behavior{
		Status: http.StatusBadRequest,
		Body: AnthropicError("invalid_request_error",
			"Your credit balance is too low to access the Anthropic API. "+
				"Please go to Plans & Billing to upgrade or purchase credits."),
	}
}

// OpenAIError returns an OpenAI error body:
// {"error":{"message","type","param":null,"code"}}; code "" is sent as null.
func OpenAIError(message, typ, code string) string {
	var c any
	if code != "" {
		c = code
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]any{
		"message": message, "type": typ, "param": nil, "code": c,
	}})
	return string(b)
}

// AnthropicError returns an Anthropic error body:
// {"type":"error","error":{"type","message"}}.
func AnthropicError(typ, message string) string {
	type inner struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Type  string `json:"type"`
		Error inner  `json:"error"`
	}{"error", inner{typ, message}})
	return string(b)
}

// Protocol names, as reported in RecordedRequest.Protocol.
const (
	ProtocolOpenAI    = "openai"
	ProtocolAnthropic = "anthropic"
)

// MaxBody is the most request body the server reads and records.
const MaxBody = 64 << 20

// MaxRecorded is how many requests Requests keeps (the most recent).
const MaxRecorded = 1000

// RecordedRequest is a copy of a request the server received. The fields
// after Protocol are filled in when the handler finishes.
type RecordedRequest struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
	Key      string // the key as extracted for the protocol ("" if none)
	Protocol string // ProtocolOpenAI or ProtocolAnthropic
	Seq      int    // 1-based arrival number; the request id is "req_fake<Seq>"

	// Stream is true when the request asked for a stream and got one.
	Stream bool
	// Usage is the usage of the full answer (as reported in the response, or
	// as it would have been for a cut or cancelled stream); nil when the
	// route reports none or the request was answered with an error/Body.
	Usage *Usage
	// Delivered is how many content pieces were written (streams and
	// non-streams alike; for a cut stream, the pieces before the cut).
	Delivered int
	// Cancelled is true when the client went away before the handler finished.
	Cancelled bool
	// Finished is true once the handler has returned.
	Finished bool
}

func (r RecordedRequest) clone() RecordedRequest {
	r.Header = r.Header.Clone()
	if r.Body != nil {
		r.Body = append([]byte(nil), r.Body...)
	}
	if r.Usage != nil {
		u := *r.Usage
		r.Usage = &u
	}
	return r
}

// call is one request being answered, handed to route handlers, which report
// back through the fields below status.
type call struct {
	r      *http.Request
	rec    RecordedRequest
	b      Behavior
	status int // the success status to write (2xx)

	stream    bool
	usage     *Usage
	delivered int
	cancelled bool // the handler saw the client go away
}

type routeKey struct{ proto, method, path string }

type handler func(s *Server, w http.ResponseWriter, c *call)

// Server is a running fake upstream. It is safe for concurrent use.
type Server struct {
	ts     *httptest.Server
	done   chan struct{}
	once   sync.Once
	routes map[routeKey]handler // read-only after New

	mu        sync.Mutex
	def       Behavior
	keys      map[string]Behavior
	calls     map[string]int
	total     int
	reqs      []*RecordedRequest // oldest first, at most MaxRecorded
	inFlight  int
	cancelled int
}

// New starts a fake upstream. Unknown keys get 401 until SetDefault. Call Close.
func New() *Server {
	s := &Server{
		done:  make(chan struct{}),
		def:   Unauthorized(),
		keys:  make(map[string]Behavior),
		calls: make(map[string]int),
	}
	s.routes = map[routeKey]handler{
		{ProtocolOpenAI, http.MethodGet, "/v1/models"}:                (*Server).openAIModels,
		{ProtocolAnthropic, http.MethodGet, "/v1/models"}:             (*Server).anthropicModels,
		{ProtocolOpenAI, http.MethodPost, "/v1/chat/completions"}:     (*Server).openAIChat,
		{ProtocolOpenAI, http.MethodPost, "/v1/embeddings"}:           (*Server).openAIEmbeddings,
		{ProtocolOpenAI, http.MethodPost, "/v1/audio/transcriptions"}: (*Server).openAITranscriptions,
		{ProtocolAnthropic, http.MethodPost, "/v1/messages"}:          (*Server).anthropicMessages,
	}
	s.ts = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// Close stops the server, releasing any stalled or delayed handlers first.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.done)
		s.ts.Close()
	})
}

// URL is the server's base URL, without /v1.
func (s *Server) URL() string { return s.ts.URL }

// OpenAIBaseURL is the base URL in OPENAI_BASE_URL form (with /v1).
func (s *Server) OpenAIBaseURL() string { return s.ts.URL + "/v1" }

// AnthropicBaseURL is the base URL in ANTHROPIC_BASE_URL form (without /v1).
func (s *Server) AnthropicBaseURL() string { return s.ts.URL }

// Client returns an *http.Client for this server.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// SetKey sets the behaviour for requests presenting apiKey.
func (s *Server) SetKey(apiKey string, b Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[apiKey] = b
}

// Keys returns every key given to SetKey and every credential a request
// presented (for tests that check no key leaks anywhere).
func (s *Server) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if k != "" && !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for k := range s.keys {
		add(k)
	}
	for k := range s.calls {
		add(k)
	}
	return out
}

// SetDefault sets the behaviour for keys without SetKey (initially Unauthorized()).
func (s *Server) SetDefault(b Behavior) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.def = b
}

// Calls returns how many requests presented apiKey, on any route.
func (s *Server) Calls(apiKey string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[apiKey]
}

// TotalCalls returns how many requests the server received.
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// LastRequest returns a copy of the last request received (zero if none).
func (s *Server) LastRequest() RecordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.reqs) == 0 {
		return RecordedRequest{}
	}
	return s.reqs[len(s.reqs)-1].clone()
}

// Requests returns copies of the last MaxRecorded requests, oldest first.
func (s *Server) Requests() []RecordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RecordedRequest, len(s.reqs))
	for i, r := range s.reqs {
		out[i] = r.clone()
	}
	return out
}

// Cancelled returns how many requests' handlers saw the client go away (its
// context cancelled) before they finished: during Delay, Stall, ChunkDelay,
// FirstChunkThenWait, or between stream events. Closing the server does not
// count. Poll it (or wait for InFlight() == 0) after cancelling a client.
func (s *Server) Cancelled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cancelled
}

// InFlight returns how many handlers are running.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

func detect(r *http.Request) (proto, key string) {
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if r.Header.Get("anthropic-version") != "" || r.Header.Get("x-api-key") != "" {
		if k := r.Header.Get("x-api-key"); k != "" {
			return ProtocolAnthropic, k
		}
		return ProtocolAnthropic, bearer
	}
	return ProtocolOpenAI, bearer
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if IsNativePath(r.URL.Path) { // Gemini, Mistral, Cohere, Azure: native.go
		s.serveNative(w, r)
		return
	}
	proto, key := detect(r)
	body, _ := io.ReadAll(io.LimitReader(r.Body, MaxBody))
	rec := RecordedRequest{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: body, Key: key, Protocol: proto,
	}

	s.mu.Lock()
	s.calls[key]++
	s.total++
	n := s.total
	rec.Seq = n
	stored := rec // Body and Header are never mutated; readers get clones
	s.reqs = append(s.reqs, &stored)
	if len(s.reqs) > MaxRecorded {
		s.reqs[0] = nil
		s.reqs = s.reqs[1:]
	}
	s.inFlight++
	b, ok := s.keys[key]
	if !ok {
		b = s.def
	}
	s.mu.Unlock()

	c := &call{r: r, rec: rec, b: b}
	defer s.finish(&stored, c) // also runs when dropConn panics

	reqID := "req_fake" + strconv.Itoa(n)
	if proto == ProtocolAnthropic {
		w.Header().Set("request-id", reqID)
	} else {
		w.Header().Set("x-request-id", reqID)
	}

	h, ok := s.routes[routeKey{proto, r.Method, r.URL.Path}]
	if !ok {
		writeDefaultError(w, proto, http.StatusNotFound, r)
		return
	}

	if !s.wait(c) {
		return
	}
	if b.DropConn {
		dropConn(w)
		return
	}

	status := b.Status
	if status == 0 {
		status = http.StatusOK
	}
	if b.RetryAfter != "" {
		w.Header().Set("Retry-After", b.RetryAfter)
	}
	for k, v := range b.Headers {
		w.Header().Set(k, v)
	}
	if b.Body != "" {
		writeRaw(w, status, b.Body)
		return
	}
	if status < 200 || status > 299 {
		if b.EchoKey {
			writeRaw(w, status, echoError(proto, status, key, r))
			return
		}
		writeDefaultError(w, proto, status, r)
		return
	}
	c.status = status
	h(s, w, c)
}

// finish records what the handler reported.
func (s *Server) finish(rec *RecordedRequest, c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight--
	if c.cancelled {
		s.cancelled++
	}
	rec.Stream = c.stream
	if c.usage != nil {
		u := *c.usage
		rec.Usage = &u
	}
	rec.Delivered = c.delivered
	rec.Cancelled = c.cancelled
	rec.Finished = true
}

// wait applies Delay and Stall; it returns false when the request should be
// abandoned (client gone or server closing).
func (s *Server) wait(c *call) bool {
	if c.b.Delay > 0 && !s.pause(c, c.b.Delay) {
		return false
	}
	if c.b.Stall {
		s.pause(c, -1)
		return false
	}
	return true
}

// pause waits d (forever when d < 0; only a liveness check when d == 0). It
// returns false, marking the call cancelled when the client went away, when
// the request should be abandoned.
func (s *Server) pause(c *call, d time.Duration) bool {
	ctx := c.r.Context()
	var timer <-chan time.Time
	switch {
	case d > 0:
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	case d == 0:
		select {
		case <-s.done:
			return false
		default:
		}
		if ctx.Err() != nil {
			c.cancelled = true
			return false
		}
		return true
	}
	select {
	case <-timer:
		return true
	case <-s.done:
		return false
	case <-ctx.Done():
		select {
		case <-s.done: // the server closing cancels contexts too
		default:
			c.cancelled = true
		}
		return false
	}
}

func dropConn(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler) // aborts the response without logging
}

func writeRaw(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, string(b))
}

// writeDefaultError writes the provider's usual error body for status.
func writeDefaultError(w http.ResponseWriter, proto string, status int, r *http.Request) {
	if proto == ProtocolAnthropic {
		typ, msg := anthropicDefault(status, r)
		writeRaw(w, status, AnthropicError(typ, msg))
		return
	}
	msg, typ, code := openAIDefault(status, r)
	writeRaw(w, status, OpenAIError(msg, typ, code))
}

func openAIDefault(status int, r *http.Request) (msg, typ, code string) {
	switch status {
	case http.StatusUnauthorized:
		return "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
			"invalid_request_error", "invalid_api_key"
	case http.StatusForbidden:
		return "Country, region, or territory not supported", "request_forbidden", "unsupported_country_region_territory"
	case http.StatusPaymentRequired:
		return "Your account is not active, please check your billing details on our website.",
			"billing_not_active", "billing_not_active"
	case http.StatusNotFound:
		return "Invalid URL (" + r.Method + " " + r.URL.Path + ")", "invalid_request_error", ""
	case http.StatusTooManyRequests:
		return "Rate limit reached for requests. Please try again in 7s.", "requests", "rate_limit_exceeded"
	case http.StatusServiceUnavailable:
		return "The engine is currently overloaded, please try again later", "server_error", ""
	}
	if status >= 500 {
		return "The server had an error while processing your request. Sorry about that!", "server_error", ""
	}
	return "Invalid request.", "invalid_request_error", ""
}

func anthropicDefault(status int, r *http.Request) (typ, msg string) {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error", "invalid x-api-key"
	case http.StatusForbidden:
		return "permission_error", "Your API key does not have permission to use the specified resource."
	case http.StatusPaymentRequired:
		return "billing_error", "There is an issue with your billing or payment information."
	case http.StatusNotFound:
		return "not_found_error", "Not found: " + r.Method + " " + r.URL.Path
	case http.StatusRequestEntityTooLarge:
		return "request_too_large", "Request exceeds the maximum allowed number of bytes."
	case http.StatusTooManyRequests:
		return "rate_limit_error", "Number of requests has exceeded your rate limit. Please try again later."
	case 529:
		return "overloaded_error", "Overloaded"
	case http.StatusGatewayTimeout:
		return "timeout_error", "Request timed out."
	}
	if status >= 500 {
		return "api_error", "Internal server error"
	}
	return "invalid_request_error", "Invalid request."
}

func (s *Server) openAIModels(w http.ResponseWriter, c *call) {
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	data := []model{
		{"gpt-4o", "model", 1715367049, "system"},
		{"gpt-4o-mini", "model", 1721172741, "system"},
		{"text-embedding-3-small", "model", 1705948997, "system"},
		{"whisper-1", "model", 1677532384, "openai-internal"},
	}
	writeJSON(w, c.status, map[string]any{"object": "list", "data": data})
}

func (s *Server) anthropicModels(w http.ResponseWriter, c *call) {
	type model struct {
		Type        string `json:"type"`
		ID          string `json:"id"`
		DisplayName string `json:"display_name"`
		CreatedAt   string `json:"created_at"`
	}
	data := []model{
		{"model", "claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-22T00:00:00Z"},
		{"model", "claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"},
	}
	writeJSON(w, c.status, map[string]any{
		"data": data, "has_more": false,
		"first_id": data[0].ID, "last_id": data[len(data)-1].ID,
	})
}

// echoError is an error body that hands the presented credential back in
// every place a careless upstream might: message, param and extra fields.
func echoError(proto string, status int, key string, r *http.Request) string {
	msg := "Incorrect API key provided: " + key + " (sent as Authorization: Bearer " + key + ")"
	if proto == ProtocolAnthropic {
		typ, _ := anthropicDefault(status, r)
		b, _ := json.Marshal(map[string]any{"type": "error", "key": key,
			"error": map[string]any{"type": typ, "message": msg, "detail": key, "param": key}})
		return string(b)
	}
	b, _ := json.Marshal(map[string]any{"detail": key, "error": map[string]any{
		"message": msg, "type": "invalid_request_error", "param": key, "code": "invalid_api_key", "key": key}})
	return string(b)
}
