package chat

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

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
	errBody    []byte
	bytesSent  bool
	cut        bool
	usage      tokens
	ttft       time.Duration
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

// errorBodyFor returns the upstream error body in the OpenAI protocol the
// chat routes speak.
func (o *outcome) errorBodyFor(p provider.Name) []byte {
	if p == provider.Anthropic {
		return translate.AnthropicErrorToOpenAI(o.status, o.errBody)
	}
	if len(o.errBody) == 0 || !gjson.ValidBytes(o.errBody) {
		return []byte(`{"error":{"type":"api_error","code":"provider_error","message":"the provider answered with status ` + strconv.Itoa(o.status) + `"}}`)
	}
	return o.errBody
}

// attempt sends the request upstream with apiKey and relays a successful
// answer to the client. A failure before the first byte reaches the client
// leaves the response untouched so the caller can fall back.
func (c *call) attempt(ctx context.Context, apiKey string) *outcome {
	x := c.x
	var body []byte
	var err error
	path := "/chat/completions"
	if c.prov == provider.Anthropic {
		body, err = translate.ChatToMessages(c.req.Body, c.req.UpstreamModel)
		path = "/messages"
	} else {
		body, err = c.req.openAIBody()
	}
	if err != nil {
		return &outcome{class: routing.FailRequest, status: http.StatusBadRequest,
			errBody: []byte(`{"error":{"type":"invalid_request_error","code":"invalid_request","message":` + strconv.Quote(err.Error()) + `}}`)}
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := upstreamRequest(actx, x.Endpoints, c.prov, path, apiKey, body, nil)
	if err != nil {
		return &outcome{class: routing.FailUnavailable}
	}
	if c.req.Stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	timer := startHeaderTimer(x.headerTimeout(), cancel)
	resp, err := x.HTTP.Do(req)
	timer.stop()
	if err != nil {
		if ctx.Err() != nil {
			return &outcome{canceled: true}
		}
		return &outcome{class: routing.FailUnavailable, timedOut: timer.fired()}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		eb, _ := readBounded(resp.Body, maxErrorBody)
		return &outcome{status: resp.StatusCode, class: classify(c.prov, resp.StatusCode, eb),
			retryAfter: resp.Header.Get("Retry-After"), errBody: eb}
	}
	if c.req.Stream {
		return c.relayStream(ctx, resp)
	}
	return c.relayWhole(ctx, resp)
}

func (c *call) relayWhole(ctx context.Context, resp *http.Response) *outcome {
	raw, err := readBounded(resp.Body, maxResponseBody)
	if err != nil {
		if ctx.Err() != nil {
			return &outcome{canceled: true}
		}
		return &outcome{class: routing.FailUnavailable, status: 0}
	}
	out := &outcome{ok: true, status: resp.StatusCode}
	if c.prov == provider.Anthropic {
		u := gjson.GetManyBytes(raw, "usage.input_tokens", "usage.output_tokens", "usage.cache_read_input_tokens", "usage.cache_creation_input_tokens")
		out.usage = tokens{input: u[0].Int() + u[2].Int() + u[3].Int(), output: u[1].Int(), cacheRead: u[2].Int()}
		if raw, err = translate.MessagesToChatResponse(raw, c.req.Model); err != nil {
			return &outcome{class: routing.FailUnavailable, status: resp.StatusCode}
		}
	} else {
		u := gjson.GetManyBytes(raw, "usage.prompt_tokens", "usage.completion_tokens", "usage.prompt_tokens_details.cached_tokens")
		out.usage = tokens{input: u[0].Int(), output: u[1].Int(), cacheRead: u[2].Int()}
	}
	h := c.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(raw)))
	c.w.WriteHeader(http.StatusOK)
	out.bytesSent = true
	out.ttft = time.Since(c.start)
	_, _ = c.w.Write(raw)
	return out
}

// relayStream copies SSE events to the client as they arrive, flushing each
// one (no buffering), translating Anthropic events to OpenAI chunks, and
// counting usage. Headers are written with the first event, so a stream
// that fails before any event can still fall back.
func (c *call) relayStream(ctx context.Context, resp *http.Response) *outcome {
	out := &outcome{status: resp.StatusCode}
	flusher, _ := c.w.(http.Flusher)
	var tr *translate.StreamTranslator
	if c.prov == provider.Anthropic {
		tr = translate.NewStreamTranslator(c.req.Model, c.req.IncludeUsage, c.start.Unix())
	}
	done := false
	buf := make([]byte, 0, 1024)
	write := func(data []byte) bool {
		if !out.bytesSent {
			h := c.w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			c.w.WriteHeader(http.StatusOK)
			out.bytesSent = true
			out.ttft = time.Since(c.start)
		}
		buf = append(buf[:0], "data: "...)
		buf = append(buf, data...)
		buf = append(buf, '\n', '\n')
		if _, err := c.w.Write(buf); err != nil {
			return false
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	var readErr error
	for ev, err := range sse.Read(resp.Body, &sse.ReadConfig{MaxEventSize: 8 << 20}) {
		if err != nil {
			readErr = err
			break
		}
		if tr != nil {
			chunks, terr := tr.Event(ev.Type, []byte(ev.Data))
			in, o := tr.Usage()
			out.usage = tokens{input: in, output: o}
			if terr != nil {
				readErr = terr
				break
			}
			for _, ch := range chunks {
				if !write(ch) {
					return c.clientGone(ctx, out)
				}
			}
			if ev.Type == "message_stop" {
				done = write([]byte("[DONE]"))
				break
			}
			continue
		}
		data := ev.Data
		if data == "[DONE]" {
			done = write([]byte(data))
			break
		}
		if u := gjson.Get(data, "usage"); u.Exists() && u.Type != gjson.Null {
			out.usage = tokens{input: u.Get("prompt_tokens").Int(), output: u.Get("completion_tokens").Int(),
				cacheRead: u.Get("prompt_tokens_details.cached_tokens").Int()}
			if !c.req.IncludeUsage && len(gjson.Get(data, "choices").Array()) == 0 {
				continue // the client did not ask for the usage chunk
			}
		} else if c.prov == provider.OpenAI {
			// Count delivered output for a stream that may be cut short.
			if gjson.Get(data, "choices.0.delta.content").String() != "" {
				out.usage.output++
			}
		}
		if !write([]byte(data)) {
			return c.clientGone(ctx, out)
		}
	}
	if ctx.Err() != nil {
		return c.clientGone(ctx, out)
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

func (c *call) clientGone(ctx context.Context, out *outcome) *outcome {
	out.canceled = true
	out.ok = false
	return out
}
