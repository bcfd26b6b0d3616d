package chat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/translate"
	"github.com/tidwall/gjson"
	sse "github.com/tmaxmax/go-sse"
)

type tokens struct{ input, output, cacheRead int64 }

// outcome is the result of one upstream attempt.
type outcome struct {
	ok         bool // a 2xx answer was relayed (whole, or a stream cut short)
	status     int  // upstream status; 0 when no answer came
	class      routing.FailureClass
	timedOut   bool
	canceled   bool // the client went away
	retryAfter string
	errBody    []byte                // the upstream error as it came: for classification only
	vetted     translate.VettedError // what of it may reach the client
	ownErr     error                 // a failure of ours after the provider answered (our envelope)
	bytesSent  bool
	cut        bool
	usage      tokens
	ttft       time.Duration
	rateLow    string // the provider's rate-limit headers show < 10% left (lowRateLimit)
	detail     string // the provider's explanation of a refusal (scrubbed), kept on the key row
}

func (o *outcome) clientStatus() int {
	switch {
	case o.canceled:
		return 499
	case o.ok:
		return http.StatusOK
	case o.status != 0:
		return o.status
	default:
		return http.StatusBadGateway
	}
}

// upstreamCall is the request to send for one operation and provider.
type upstreamCall struct {
	path        string
	body        []byte
	contentType string
	header      http.Header
}

func badRequest(err error) *outcome {
	return &outcome{class: routing.FailRequest, status: http.StatusBadRequest,
		vetted: translate.VettedError{Type: "invalid_request_error", Code: string(apperr.InvalidRequest), Message: err.Error()}}
}

// build returns the upstream request for c's operation and provider.
func (c *call) build() (upstreamCall, error) {
	r := c.req
	switch {
	case r.Op == opChat && c.prov == provider.Anthropic:
		b, err := translate.ChatToMessages(r.canonical(), r.UpstreamModel)
		return upstreamCall{path: "/messages", body: b}, err
	case r.Op == opMessages && c.prov == provider.Anthropic:
		return upstreamCall{path: "/messages", body: r.anthropicBody(), header: r.Header}, nil
	case r.Op == opMessages:
		b, err := translate.MessagesToChat(r.canonical(), r.UpstreamModel)
		return upstreamCall{path: "/chat/completions", body: b}, err
	case r.Op == opEmbeddings:
		return upstreamCall{path: "/embeddings", body: r.openAIBody()}, nil
	case r.Op == opTranscription:
		return upstreamCall{path: "/audio/transcriptions", body: r.Body, contentType: r.ContentType}, nil
	default:
		return upstreamCall{path: "/chat/completions", body: r.openAIBody()}, nil
	}
}

// attempt sends the request upstream with apiKey and relays a successful
// answer to the client. A failure before the first byte reaches the client
// leaves the response untouched so the caller can fall back.
func (c *call) attempt(ctx context.Context, apiKey string) *outcome {
	x := c.x
	defer func() { c.usedKeys = append(c.usedKeys, apiKey) }()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var req *http.Request
	native, isNative := c.nativeAdapter()
	if isNative {
		var err error
		if req, err = c.nativeRequest(actx, native, apiKey); err != nil {
			return nativeBuildError(err)
		}
	} else {
		uc, err := c.build()
		if err != nil {
			return badRequest(err)
		}
		req, err = upstreamRequest(actx, x.Endpoints, c.prov, uc.path, apiKey, uc.body, uc.header)
		if err != nil {
			return &outcome{class: routing.FailUnavailable}
		}
		if uc.contentType != "" {
			req.Header.Set("Content-Type", uc.contentType)
		}
	}
	if c.req.Stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	// A stream's headers come at once, so a slow header is a stalled
	// provider; a non-streamed answer's headers come with the whole answer,
	// so it gets one long whole-answer bound instead.
	var timer *headerTimer
	if c.req.Stream {
		timer = startHeaderTimer(x.headerTimeout(), cancel)
	} else {
		timer = startHeaderTimer(x.upstreamTimeout(), cancel)
		defer timer.stop()
	}
	hc := c.client()
	if hc == nil {
		timer.stop()
		return &outcome{class: routing.FailUnavailable}
	}
	resp, err := hc.Do(req)
	if c.req.Stream {
		timer.stop()
	}
	if err != nil {
		if ctx.Err() != nil {
			return &outcome{canceled: true}
		}
		return &outcome{class: routing.FailUnavailable, timedOut: timer.fired()}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		eb, _ := readBounded(resp.Body, maxErrorBody)
		if isNative {
			return c.nativeFailure(native, resp, eb, apiKey)
		}
		return &outcome{status: resp.StatusCode, class: classify(c.prov, resp.StatusCode, eb),
			retryAfter: resp.Header.Get("Retry-After"), errBody: eb, vetted: c.vetError(resp.StatusCode, eb, apiKey)}
	}
	rateLow := lowRateLimit(c.prov, resp.Header)
	// After the headers, an upstream that goes silent for IdleTimeout is cut
	// (the stream is then recorded as cut, the client's request ends).
	idle := time.AfterFunc(x.idleTimeout(), cancel)
	defer idle.Stop()
	if c.req.Stream {
		out := c.relayStream(ctx, resp, apiKey, func() { idle.Reset(x.idleTimeout()) })
		out.rateLow = rateLow
		return out
	}
	out := c.relayWhole(ctx, resp)
	out.timedOut = out.timedOut || timer.fired()
	out.rateLow = rateLow
	return out
}

func anthropicUsage(raw []byte, path string) tokens {
	u := gjson.GetManyBytes(raw, path+".input_tokens", path+".output_tokens", path+".cache_read_input_tokens", path+".cache_creation_input_tokens")
	return tokens{input: u[0].Int() + u[2].Int() + u[3].Int(), output: u[1].Int(), cacheRead: u[2].Int()}
}

func openAIUsage(raw []byte, path string) tokens {
	u := gjson.GetManyBytes(raw, path+".prompt_tokens", path+".completion_tokens", path+".prompt_tokens_details.cached_tokens")
	return tokens{input: u[0].Int(), output: u[1].Int(), cacheRead: u[2].Int()}
}

func (c *call) relayWhole(ctx context.Context, resp *http.Response) *outcome {
	limit := c.x.maxResponseBytes()
	raw, err := readBounded(resp.Body, limit+1)
	if err != nil {
		if ctx.Err() != nil {
			return &outcome{canceled: true}
		}
		return &outcome{class: routing.FailUnavailable, status: 0}
	}
	if int64(len(raw)) > limit {
		// Never a truncated 200: the provider answered (and billed) but we
		// cannot relay it whole. Not the key's fault: no fallback, no circuit.
		return &outcome{class: routing.FailRequest, status: http.StatusBadGateway,
			ownErr: apperr.New(apperr.ProviderError, "the provider's answer is larger than the relay limit (%d bytes); ask for a shorter answer", limit)}
	}
	out := &outcome{ok: true, status: resp.StatusCode}
	ct := "application/json"
	switch native, isNative := c.nativeAdapter(); {
	case isNative:
		raw, out.usage, err = c.nativeAnswer(native, raw)
	case c.req.Op == opChat && c.prov == provider.Anthropic:
		out.usage = anthropicUsage(raw, "usage")
		raw, err = translate.MessagesToChatResponse(raw, c.req.Model)
	case c.req.Op == opMessages && c.prov == provider.Anthropic:
		out.usage = anthropicUsage(raw, "usage")
	case c.req.Op == opMessages:
		out.usage = openAIUsage(raw, "usage")
		raw, err = translate.ChatToMessagesResponse(raw, c.req.Model)
	case c.req.Op == opTranscription:
		ct = resp.Header.Get("Content-Type")
		if sec := gjson.GetBytes(raw, "usage.seconds"); sec.Exists() {
			out.usage.input = int64(sec.Float() + 0.999)
		} else if d := gjson.GetBytes(raw, "duration"); d.Exists() {
			out.usage.input = int64(d.Float() + 0.999)
		}
	default: // OpenAI chat and embeddings
		out.usage = openAIUsage(raw, "usage")
	}
	if err != nil {
		// The provider answered (and billed); only our translation failed:
		// never fall back or trip the circuit for it.
		return &outcome{class: routing.FailRequest, status: http.StatusBadGateway,
			ownErr: apperr.New(apperr.ProviderError, "the provider's answer could not be translated")}
	}
	h := c.w.Header()
	h.Set("Content-Type", ct)
	h.Set("Content-Length", strconv.Itoa(len(raw)))
	c.w.WriteHeader(http.StatusOK)
	out.bytesSent = true
	out.ttft = time.Since(c.start)
	_, _ = c.w.Write(raw)
	// The client has every byte (Content-Length) before the usage write
	// that follows: flush rather than wait for the handler to return.
	if f, ok := c.w.(http.Flusher); ok {
		f.Flush()
	}
	return out
}

// sseWriter writes SSE events to the client, flushing each one (no
// buffering). Headers go out with the first event, so a stream that fails
// before any event can still fall back.
type sseWriter struct {
	c       *call
	out     *outcome
	flusher http.Flusher
	buf     []byte
}

func (s *sseWriter) write(event string, data []byte) bool {
	if !s.out.bytesSent {
		h := s.c.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		s.c.w.WriteHeader(http.StatusOK)
		s.out.bytesSent = true
		s.out.ttft = time.Since(s.c.start)
		if s.c.onFirstByte != nil {
			s.c.onFirstByte()
		}
	}
	s.buf = s.buf[:0]
	if event != "" {
		s.buf = append(s.buf, "event: "...)
		s.buf = append(s.buf, event...)
		s.buf = append(s.buf, '\n')
	}
	// One data: line per line of data: a raw newline inside a data line
	// would end it, and clients would drop the rest.
	for {
		i := bytes.IndexAny(data, "\r\n")
		s.buf = append(s.buf, "data: "...)
		if i < 0 {
			s.buf = append(s.buf, data...)
			s.buf = append(s.buf, '\n')
			break
		}
		s.buf = append(s.buf, data[:i]...)
		s.buf = append(s.buf, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	s.buf = append(s.buf, '\n')
	if _, err := s.c.w.Write(s.buf); err != nil {
		return false
	}
	if s.flusher != nil {
		s.flusher.Flush()
	}
	return true
}

// relayStream copies SSE events to the client as they arrive, translating
// between protocols where needed and counting usage.
func (c *call) relayStream(ctx context.Context, resp *http.Response, apiKey string, alive func()) *outcome {
	out := &outcome{status: resp.StatusCode}
	fl, _ := c.w.(http.Flusher)
	sw := &sseWriter{c: c, out: out, flusher: fl, buf: make([]byte, 0, 1024)}
	var relay func(ev sse.Event) (done, ok bool, err error)
	switch native, isNative := c.nativeAdapter(); {
	case isNative:
		relay = c.nativeStream(native, sw)
	case c.req.Op == opChat && c.prov == provider.Anthropic:
		relay = c.anthropicToChatStream(sw)
	case c.req.Op == opMessages && c.prov == provider.Anthropic:
		relay = c.anthropicPassStream(sw)
	case c.req.Op == opMessages:
		relay = c.chatToAnthropicStream(sw)
	default:
		relay = c.openAIPassStream(sw)
	}
	done := false
	var readErr error
	limit := int(min(c.x.maxResponseBytes(), math.MaxInt32))
	for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: limit}) {
		if err != nil {
			readErr = err
			if errors.Is(err, bufio.ErrTooLong) && ctx.Err() == nil {
				// One event over the relay limit: end with an error event.
				name, data := c.streamErrorData(translate.VettedError{Type: "api_error", Code: string(apperr.ProviderError),
					Message: fmt.Sprintf("the provider sent an event larger than the relay limit (%d bytes); the answer is cut", limit)})
				if !sw.write(name, data) {
					return c.clientGone(out)
				}
			}
			break
		}
		alive()
		if c.streamErrorEvent(ev.Type, ev.Data) {
			// Rebuilt from type, code and message, scrubbed; the stream ends.
			v := translate.VetError(0, []byte(ev.Data), c.prov == provider.Anthropic, c.req.Op.anthropicCaller(), c.scrubberFor(apiKey).scrub)
			name, data := c.streamErrorData(v)
			if !sw.write(name, data) {
				return c.clientGone(out)
			}
			readErr = errStreamError
			break
		}
		d, ok, err := relay(ev)
		if !ok {
			return c.clientGone(out)
		}
		if err != nil {
			readErr = err
			break
		}
		if d {
			done = true
			break
		}
	}
	if ctx.Err() != nil {
		return c.clientGone(out)
	}
	if done {
		// Read the (empty) rest so the upstream connection is reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	}
	if !out.bytesSent {
		// Nothing reached the client: a failure the caller may fall back from.
		return &outcome{class: routing.FailUnavailable, status: 0}
	}
	out.ok = true
	if !done || readErr != nil {
		out.cut = true
	}
	return out
}

// openAIPassStream relays an OpenAI chat stream as it is, dropping the usage
// chunk the client did not ask for and counting delivered output.
func (c *call) openAIPassStream(sw *sseWriter) func(sse.Event) (bool, bool, error) {
	return func(ev sse.Event) (bool, bool, error) {
		if ev.Data == "[DONE]" {
			return true, sw.write("", []byte(ev.Data)), nil
		}
		if u := gjson.Get(ev.Data, "usage"); u.Exists() && u.Type != gjson.Null {
			sw.out.usage = tokens{input: u.Get("prompt_tokens").Int(), output: u.Get("completion_tokens").Int(),
				cacheRead: u.Get("prompt_tokens_details.cached_tokens").Int()}
			if !c.req.IncludeUsage && len(gjson.Get(ev.Data, "choices").Array()) == 0 {
				return false, true, nil // the client did not ask for the usage chunk
			}
		} else if gjson.Get(ev.Data, "choices.0.delta.content").String() != "" {
			sw.out.usage.output++ // delivered output, for a stream cut short
		}
		return false, sw.write("", []byte(ev.Data)), nil
	}
}

// anthropicToChatStream translates Anthropic events to OpenAI chunks.
func (c *call) anthropicToChatStream(sw *sseWriter) func(sse.Event) (bool, bool, error) {
	tr := translate.NewStreamTranslator(c.req.Model, c.req.IncludeUsage, c.start.Unix())
	return func(ev sse.Event) (bool, bool, error) {
		chunks, err := tr.Event(ev.Type, []byte(ev.Data))
		in, o := tr.Usage()
		_, cr := tr.CacheTokens()
		sw.out.usage = tokens{input: in, output: o, cacheRead: cr}
		if err != nil {
			return false, true, err
		}
		for _, ch := range chunks {
			if !sw.write("", ch) {
				return false, false, nil
			}
		}
		if ev.Type == "message_stop" {
			return true, sw.write("", []byte("[DONE]")), nil
		}
		return false, true, nil
	}
}

// anthropicPassStream relays an Anthropic stream as it is, counting usage
// from message_start and message_delta.
func (c *call) anthropicPassStream(sw *sseWriter) func(sse.Event) (bool, bool, error) {
	var delivered int64
	return func(ev sse.Event) (bool, bool, error) {
		switch ev.Type {
		case "message_start":
			u := anthropicUsage([]byte(ev.Data), "message.usage")
			sw.out.usage.input, sw.out.usage.cacheRead = u.input, u.cacheRead
		case "content_block_delta":
			delivered++
			sw.out.usage.output = max(sw.out.usage.output, delivered)
		case "message_delta":
			if o := gjson.Get(ev.Data, "usage.output_tokens"); o.Exists() {
				sw.out.usage.output = o.Int()
			}
		}
		if !sw.write(ev.Type, []byte(ev.Data)) {
			return false, false, nil
		}
		return ev.Type == "message_stop", true, nil
	}
}

// chatToAnthropicStream translates OpenAI chunks to Anthropic events.
func (c *call) chatToAnthropicStream(sw *sseWriter) func(sse.Event) (bool, bool, error) {
	tr := translate.NewReverseStreamTranslator(c.req.Model)
	return func(ev sse.Event) (bool, bool, error) {
		evs, err := tr.Chunk([]byte(ev.Data))
		in, o := tr.Usage()
		_, cr := tr.CacheTokens()
		sw.out.usage = tokens{input: in, output: o, cacheRead: cr}
		if err != nil {
			return false, true, err
		}
		for _, e := range evs {
			if !sw.write(e.Event, e.Data) {
				return false, false, nil
			}
		}
		return tr.Done() || ev.Data == "[DONE]", true, nil
	}
}

func (c *call) clientGone(out *outcome) *outcome {
	out.canceled = true
	out.ok = false
	return out
}

// errStreamError marks a stream the provider ended with an error event.
var errStreamError = errors.New("upstream stream error event")
