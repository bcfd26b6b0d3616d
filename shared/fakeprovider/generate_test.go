package fakeprovider_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/fakeprovider"
)

// secret is prompt text that must never come back in a reply.
const secret = "PROMPT-SECRET-zebra-quartz"

// ---- request helpers ----

func post(t *testing.T, ctx context.Context, url string, hdr map[string]string, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func postRead(t *testing.T, url string, hdr map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	resp := post(t, context.Background(), url, hdr, body)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %T: %v in %s", v, err, b)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// ---- a tiny SSE reader ----

type sseEvent struct{ Event, Data string }

// readSSE parses an event stream, calling each for every event; it returns
// nil at a clean EOF (after a complete event) and the read error otherwise.
func readSSE(r io.Reader, each func(sseEvent)) error {
	br := bufio.NewReader(r)
	var ev sseEvent
	var data []string
	pending := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && line == "" && !pending {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if pending {
				ev.Data = strings.Join(data, "\n")
				each(ev)
			}
			ev, data, pending = sseEvent{}, nil, false
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			ev.Event, pending = strings.TrimSpace(strings.TrimPrefix(line, "event:")), true
		case strings.HasPrefix(line, "data:"):
			data, pending = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")), true
		}
	}
}

// sseChan delivers events as they arrive, then the reader's final error.
func sseChan(r io.Reader) (<-chan sseEvent, <-chan error) {
	evs, errc := make(chan sseEvent, 1024), make(chan error, 1)
	go func() {
		errc <- readSSE(r, func(e sseEvent) { evs <- e })
		close(evs)
	}()
	return evs, errc
}

func readAllSSE(t *testing.T, resp *http.Response) ([]sseEvent, error) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("stream content type %q (status %d)", ct, resp.StatusCode)
	}
	var evs []sseEvent
	err := readSSE(resp.Body, func(e sseEvent) { evs = append(evs, e) })
	return evs, err
}

// ---- OpenAI shapes, as in the API reference ----

type oaToolCallDoc struct {
	Index    *int   `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaUsageDoc struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type oaCompletionDoc struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role      string          `json:"role"`
			Content   *string         `json:"content"`
			ToolCalls []oaToolCallDoc `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *oaUsageDoc `json:"usage"`
}

type oaChunkDoc struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role      string          `json:"role"`
			Content   *string         `json:"content"`
			ToolCalls []oaToolCallDoc `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *oaUsageDoc `json:"usage"`
}

func chatBody(model string, stream, includeUsage bool, extra string) string {
	b := `{"model":"` + model + `","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"` + secret + `"}]`
	if stream {
		b += `,"stream":true`
	}
	if includeUsage {
		b += `,"stream_options":{"include_usage":true}`
	}
	return b + extra + "}"
}

const oaTools = `,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`

func TestChatCompletion(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	s.SetKey(oaKey, fakeprovider.OK())

	body := chatBody("gpt-4o-mini", false, false, "")
	resp, b := postRead(t, s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %v %s", resp.StatusCode, resp.Header, b)
	}
	var cc oaCompletionDoc
	decode(t, b, &cc)
	if !strings.HasPrefix(cc.ID, "chatcmpl-") || cc.Object != "chat.completion" || cc.Created == 0 ||
		cc.Model != "gpt-4o-mini" || len(cc.Choices) != 1 {
		t.Fatalf("shape: %s", b)
	}
	ch := cc.Choices[0]
	want := fakeprovider.ExpectedReply([]byte(body), fakeprovider.OK())
	if ch.Index != 0 || ch.Message.Role != "assistant" || ch.Message.Content == nil || *ch.Message.Content != want ||
		ch.FinishReason != "stop" || len(ch.Message.ToolCalls) != 0 {
		t.Fatalf("choice: %s (want content %q)", b, want)
	}
	if want != "Fake reply "+fakeprovider.Digest([]byte(body))+" to 2 messages." {
		t.Fatalf("reply %q", want)
	}
	u := fakeprovider.ExpectedUsage([]byte(body), fakeprovider.OK())
	if u.Input != (len(body)+3)/4 || u.Output != fakeprovider.DefaultChunks || cc.Usage == nil ||
		*cc.Usage != (oaUsageDoc{u.Input, u.Output, u.Input + u.Output}) {
		t.Fatalf("usage %+v, expected %+v", cc.Usage, u)
	}
	if strings.Contains(string(b), secret) {
		t.Fatal("reply leaks prompt text")
	}
	rec := s.LastRequest()
	if !rec.Finished || rec.Stream || rec.Usage == nil || *rec.Usage != u || rec.Delivered != 3 || rec.Cancelled ||
		string(rec.Body) != body || rec.Header.Get("Authorization") != "Bearer "+oaKey {
		t.Fatalf("record: %+v", rec)
	}

	// A tiny max_tokens (or max_completion_tokens) truncates: finish_reason "length".
	for _, extra := range []string{`,"max_tokens":1`, `,"max_completion_tokens":2`} {
		body = chatBody("gpt-4o", false, false, extra)
		_, b = postRead(t, s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), body)
		cc = oaCompletionDoc{}
		decode(t, b, &cc)
		pieces := fakeprovider.Pieces([]byte(body), fakeprovider.OK())
		if cc.Choices[0].FinishReason != "length" || *cc.Choices[0].Message.Content != strings.Join(pieces, "") ||
			cc.Usage.CompletionTokens != len(pieces) || len(pieces) >= fakeprovider.DefaultChunks {
			t.Fatalf("%s: %s", extra, b)
		}
	}
}

func TestChatStream(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	b := fakeprovider.Behavior{Status: 200, Chunks: 5}
	s.SetKey(oaKey, b)

	for _, includeUsage := range []bool{false, true} {
		body := chatBody("gpt-4o", true, includeUsage, "")
		resp := post(t, context.Background(), s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), body)
		evs, err := readAllSSE(t, resp)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream: %d %v", resp.StatusCode, err)
		}
		if evs[len(evs)-1].Data != "[DONE]" {
			t.Fatalf("last event %q", evs[len(evs)-1].Data)
		}
		var chunks []oaChunkDoc
		for _, e := range evs[:len(evs)-1] {
			if e.Event != "" {
				t.Fatalf("openai events have no event: line: %+v", e)
			}
			if strings.Contains(e.Data, `"usage"`) != includeUsage {
				t.Fatalf("usage key presence (include_usage=%v): %s", includeUsage, e.Data)
			}
			var c oaChunkDoc
			decode(t, []byte(e.Data), &c)
			if !strings.HasPrefix(c.ID, "chatcmpl-") || c.Object != "chat.completion.chunk" || c.Model != "gpt-4o" || c.Created == 0 {
				t.Fatalf("chunk shape: %s", e.Data)
			}
			chunks = append(chunks, c)
		}
		u := fakeprovider.ExpectedUsage([]byte(body), b)
		if includeUsage {
			last := chunks[len(chunks)-1]
			if len(last.Choices) != 0 || last.Usage == nil || *last.Usage != (oaUsageDoc{u.Input, u.Output, u.Input + u.Output}) {
				t.Fatalf("usage chunk: %+v", last)
			}
			chunks = chunks[:len(chunks)-1]
		}
		// role chunk, 5 content chunks, final chunk
		if len(chunks) != 1+5+1 || u.Output != 5 {
			t.Fatalf("%d chunks, usage %+v", len(chunks), u)
		}
		first := chunks[0].Choices[0]
		if first.Delta.Role != "assistant" || first.FinishReason != nil {
			t.Fatalf("first chunk: %+v", chunks[0])
		}
		var text strings.Builder
		for _, c := range chunks[1:6] {
			if c.Choices[0].Delta.Content == nil || c.Choices[0].FinishReason != nil || c.Usage != nil {
				t.Fatalf("content chunk: %+v", c)
			}
			text.WriteString(*c.Choices[0].Delta.Content)
		}
		if text.String() != fakeprovider.ExpectedReply([]byte(body), b) || strings.Contains(text.String(), secret) {
			t.Fatalf("content %q", text.String())
		}
		final := chunks[6].Choices[0]
		if final.FinishReason == nil || *final.FinishReason != "stop" || final.Delta.Content != nil {
			t.Fatalf("final chunk: %+v", chunks[6])
		}
		rec := s.LastRequest()
		if !rec.Stream || rec.Delivered != 5 || rec.Usage == nil || *rec.Usage != u {
			t.Fatalf("record: %+v", rec)
		}
	}
}

func TestChatToolCall(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	b := fakeprovider.Behavior{Status: 200, ToolCall: true, Chunks: 4}
	s.SetKey(oaKey, b)

	body := chatBody("gpt-4o", false, false, oaTools)
	_, raw := postRead(t, s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), body)
	var cc oaCompletionDoc
	decode(t, raw, &cc)
	m := cc.Choices[0].Message
	args := fakeprovider.ExpectedReply([]byte(body), b)
	if cc.Choices[0].FinishReason != "tool_calls" || m.Content != nil || len(m.ToolCalls) != 1 ||
		!strings.HasPrefix(m.ToolCalls[0].ID, "call_") || m.ToolCalls[0].Type != "function" ||
		m.ToolCalls[0].Function.Name != "get_weather" || m.ToolCalls[0].Function.Arguments != args ||
		!json.Valid([]byte(args)) || cc.Usage.CompletionTokens != 4 {
		t.Fatalf("tool call: %s", raw)
	}
	if !strings.Contains(string(raw), `"content":null`) {
		t.Fatalf("content should be null: %s", raw)
	}

	body = chatBody("gpt-4o", true, true, oaTools)
	resp := post(t, context.Background(), s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), body)
	evs, err := readAllSSE(t, resp)
	if err != nil || evs[len(evs)-1].Data != "[DONE]" {
		t.Fatalf("stream: %v", err)
	}
	var chunks []oaChunkDoc
	for _, e := range evs[:len(evs)-1] {
		var c oaChunkDoc
		decode(t, []byte(e.Data), &c)
		chunks = append(chunks, c)
	}
	if len(chunks) != 1+4+1+1 {
		t.Fatalf("%d chunks", len(chunks))
	}
	tc0 := chunks[0].Choices[0].Delta.ToolCalls
	if chunks[0].Choices[0].Delta.Role != "assistant" || len(tc0) != 1 || tc0[0].Index == nil || *tc0[0].Index != 0 ||
		!strings.HasPrefix(tc0[0].ID, "call_") || tc0[0].Type != "function" || tc0[0].Function.Name != "get_weather" {
		t.Fatalf("first tool delta: %s", evs[0].Data)
	}
	var got strings.Builder
	for i, c := range chunks[1:5] {
		tc := c.Choices[0].Delta.ToolCalls
		if len(tc) != 1 || tc[0].Index == nil || *tc[0].Index != 0 || tc[0].ID != "" || tc[0].Function.Name != "" {
			t.Fatalf("argument delta %d: %s", i, evs[i+1].Data)
		}
		got.WriteString(tc[0].Function.Arguments)
	}
	if got.String() != fakeprovider.ExpectedReply([]byte(body), b) || !json.Valid([]byte(got.String())) {
		t.Fatalf("arguments %q", got.String())
	}
	if fr := chunks[5].Choices[0].FinishReason; fr == nil || *fr != "tool_calls" {
		t.Fatalf("finish: %s", evs[5].Data)
	}
	if u := chunks[6].Usage; u == nil || u.CompletionTokens != 4 {
		t.Fatalf("usage: %s", evs[6].Data)
	}

	// ToolCall without tools in the request answers with text.
	body = chatBody("gpt-4o", false, false, "")
	_, raw = postRead(t, s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), body)
	cc = oaCompletionDoc{}
	decode(t, raw, &cc)
	if cc.Choices[0].FinishReason != "stop" || cc.Choices[0].Message.Content == nil {
		t.Fatalf("no tools: %s", raw)
	}
}

func TestChatValidation(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	s.SetKey(oaKey, fakeprovider.OK())
	for _, c := range []struct{ body, param string }{
		{`{not json`, ""},
		{`{"messages":[{"role":"user","content":"x"}]}`, ""},
		{`{"model":"gpt-4o"}`, "messages"},
		{`{"model":"gpt-4o","messages":[]}`, "messages"},
		{`{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}`, "stream_options"},
	} {
		resp, b := postRead(t, s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), c.body)
		var e oaErr
		decode(t, b, &e)
		if resp.StatusCode != 400 || e.Error.Type != "invalid_request_error" || e.Error.Message == "" ||
			(c.param == "") != (e.Error.Param == nil) || (e.Error.Param != nil && *e.Error.Param != c.param) {
			t.Errorf("%s: %d %s", c.body, resp.StatusCode, b)
		}
	}
	if rec := s.LastRequest(); rec.Usage != nil || !rec.Finished {
		t.Fatalf("a 400 reports no usage: %+v", rec)
	}
}

// ---- Anthropic shapes, as in the API reference ----

type antBlockDoc struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type antUsageDoc struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

type antMessageDoc struct {
	ID           string        `json:"id"`
	Type         string        `json:"type"`
	Role         string        `json:"role"`
	Model        string        `json:"model"`
	Content      []antBlockDoc `json:"content"`
	StopReason   *string       `json:"stop_reason"`
	StopSequence *string       `json:"stop_sequence"`
	Usage        antUsageDoc   `json:"usage"`
}

type antEventDoc struct {
	Type         string         `json:"type"`
	Message      *antMessageDoc `json:"message"`
	Index        *int           `json:"index"`
	ContentBlock *antBlockDoc   `json:"content_block"`
	Delta        *struct {
		Type         string  `json:"type"`
		Text         string  `json:"text"`
		PartialJSON  string  `json:"partial_json"`
		StopReason   *string `json:"stop_reason"`
		StopSequence *string `json:"stop_sequence"`
	} `json:"delta"`
	Usage *antUsageDoc `json:"usage"`
}

func messagesBody(stream bool, extra string) string {
	b := `{"model":"claude-sonnet-4-20250514","max_tokens":1024,"system":"be brief","messages":[{"role":"user","content":"` + secret + `"}]`
	if stream {
		b += `,"stream":true`
	}
	return b + extra + "}"
}

const antTools = `,"tools":[{"name":"get_weather","description":"weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]`

func TestMessages(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	s.SetKey(antKey, fakeprovider.OK())

	body := messagesBody(false, "")
	resp, raw := postRead(t, s.AnthropicBaseURL()+"/v1/messages", anthHdr(antKey), body)
	var m antMessageDoc
	decode(t, raw, &m)
	u := fakeprovider.ExpectedUsage([]byte(body), fakeprovider.OK())
	if resp.StatusCode != 200 || !strings.HasPrefix(m.ID, "msg_") || m.Type != "message" || m.Role != "assistant" ||
		m.Model != "claude-sonnet-4-20250514" || len(m.Content) != 1 || m.Content[0].Type != "text" ||
		m.Content[0].Text != fakeprovider.ExpectedReply([]byte(body), fakeprovider.OK()) ||
		m.StopReason == nil || *m.StopReason != "end_turn" || m.Usage != (antUsageDoc{u.Input, u.Output}) {
		t.Fatalf("message: %d %s", resp.StatusCode, raw)
	}
	if !strings.Contains(string(raw), `"stop_sequence":null`) || strings.Contains(string(raw), secret) ||
		m.Content[0].Text != "Fake reply "+fakeprovider.Digest([]byte(body))+" to 1 messages." {
		t.Fatalf("message body: %s", raw)
	}
	if rec := s.LastRequest(); rec.Protocol != fakeprovider.ProtocolAnthropic || rec.Header.Get("x-api-key") != antKey ||
		rec.Header.Get("Authorization") != "" || *rec.Usage != u {
		t.Fatalf("record: %+v", rec)
	}

	body = `{"model":"claude-sonnet-4-20250514","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`
	_, raw = postRead(t, s.AnthropicBaseURL()+"/v1/messages", anthHdr(antKey), body)
	m = antMessageDoc{}
	decode(t, raw, &m)
	if *m.StopReason != "max_tokens" || m.Usage.OutputTokens != 2 || m.Content[0].Text != fakeprovider.ExpectedReply([]byte(body), fakeprovider.OK()) {
		t.Fatalf("max_tokens: %s", raw)
	}

	// Tool use.
	b := fakeprovider.Behavior{Status: 200, ToolCall: true}
	s.SetKey(antKey, b)
	body = messagesBody(false, antTools)
	_, raw = postRead(t, s.AnthropicBaseURL()+"/v1/messages", anthHdr(antKey), body)
	m = antMessageDoc{}
	decode(t, raw, &m)
	var input map[string]any
	if *m.StopReason != "tool_use" || len(m.Content) != 1 || m.Content[0].Type != "tool_use" ||
		!strings.HasPrefix(m.Content[0].ID, "toolu_") || m.Content[0].Name != "get_weather" ||
		json.Unmarshal(m.Content[0].Input, &input) != nil || input["ref"] != fakeprovider.Digest([]byte(body)) {
		t.Fatalf("tool use: %s", raw)
	}
}

func TestMessagesValidation(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	s.SetKey(antKey, fakeprovider.OK())
	noVersion := map[string]string{"x-api-key": antKey}
	for _, c := range []struct {
		hdr  map[string]string
		body string
		msg  string
	}{
		{noVersion, messagesBody(false, ""), "anthropic-version"},
		{anthHdr(antKey), `{"model":"claude-sonnet-4-20250514","messages":[{"role":"user","content":"x"}]}`, "max_tokens"},
		{anthHdr(antKey), `{"model":"claude-sonnet-4-20250514","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`, "max_tokens"},
		{anthHdr(antKey), `{"max_tokens":10,"messages":[{"role":"user","content":"x"}]}`, "model"},
		{anthHdr(antKey), `{"model":"claude-sonnet-4-20250514","max_tokens":10}`, "messages"},
		{anthHdr(antKey), `{nope`, "pars"},
	} {
		resp, raw := postRead(t, s.AnthropicBaseURL()+"/v1/messages", c.hdr, c.body)
		var e antErr
		decode(t, raw, &e)
		if resp.StatusCode != 400 || e.Type != "error" || e.Error.Type != "invalid_request_error" ||
			!strings.Contains(e.Error.Message, c.msg) {
			t.Errorf("%s: %d %s", c.body, resp.StatusCode, raw)
		}
	}
}

func decodeAnt(t *testing.T, evs []sseEvent) []antEventDoc {
	t.Helper()
	out := make([]antEventDoc, len(evs))
	for i, e := range evs {
		decode(t, []byte(e.Data), &out[i])
		if out[i].Type != e.Event {
			t.Fatalf("event %q carries type %q", e.Event, out[i].Type)
		}
	}
	return out
}

func eventNames(evs []sseEvent) string {
	var n []string
	for _, e := range evs {
		n = append(n, e.Event)
	}
	return strings.Join(n, ",")
}

func TestMessagesStream(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	b := fakeprovider.Behavior{Status: 200, Chunks: 4}
	s.SetKey(antKey, b)

	body := messagesBody(true, "")
	resp := post(t, context.Background(), s.AnthropicBaseURL()+"/v1/messages", anthHdr(antKey), body)
	evs, err := readAllSSE(t, resp)
	if err != nil {
		t.Fatal(err)
	}
	wantNames := "message_start,content_block_start,ping," + strings.Repeat("content_block_delta,", 4) +
		"content_block_stop,message_delta,message_stop"
	if eventNames(evs) != wantNames {
		t.Fatalf("events %s", eventNames(evs))
	}
	d := decodeAnt(t, evs)
	u := fakeprovider.ExpectedUsage([]byte(body), b)
	ms := d[0].Message
	if ms == nil || !strings.HasPrefix(ms.ID, "msg_") || ms.Type != "message" || ms.Role != "assistant" ||
		ms.Model != "claude-sonnet-4-20250514" || len(ms.Content) != 0 || ms.StopReason != nil ||
		ms.Usage.InputTokens != u.Input {
		t.Fatalf("message_start: %s", evs[0].Data)
	}
	if cb := d[1].ContentBlock; cb == nil || cb.Type != "text" || *d[1].Index != 0 {
		t.Fatalf("content_block_start: %s", evs[1].Data)
	}
	var text strings.Builder
	for _, e := range d[3:7] {
		if e.Delta == nil || e.Delta.Type != "text_delta" || *e.Index != 0 {
			t.Fatalf("delta: %+v", e)
		}
		text.WriteString(e.Delta.Text)
	}
	if text.String() != fakeprovider.ExpectedReply([]byte(body), b) {
		t.Fatalf("text %q", text.String())
	}
	md := d[8]
	if md.Delta == nil || md.Delta.StopReason == nil || *md.Delta.StopReason != "end_turn" || md.Usage == nil ||
		md.Usage.OutputTokens != u.Output || u.Output != 4 || !strings.Contains(evs[8].Data, `"stop_sequence":null`) {
		t.Fatalf("message_delta: %s", evs[8].Data)
	}

	// Tool use stream.
	b = fakeprovider.Behavior{Status: 200, ToolCall: true}
	s.SetKey(antKey, b)
	body = messagesBody(true, antTools)
	resp = post(t, context.Background(), s.AnthropicBaseURL()+"/v1/messages", anthHdr(antKey), body)
	evs, err = readAllSSE(t, resp)
	if err != nil || len(evs) != 3+3+3 {
		t.Fatalf("tool stream: %v %s", err, eventNames(evs))
	}
	d = decodeAnt(t, evs)
	if cb := d[1].ContentBlock; cb == nil || cb.Type != "tool_use" || !strings.HasPrefix(cb.ID, "toolu_") ||
		cb.Name != "get_weather" || string(cb.Input) != "{}" {
		t.Fatalf("tool block start: %s", evs[1].Data)
	}
	var js strings.Builder
	for _, e := range d[3:6] {
		if e.Delta.Type != "input_json_delta" {
			t.Fatalf("delta: %+v", e.Delta)
		}
		js.WriteString(e.Delta.PartialJSON)
	}
	if js.String() != fakeprovider.ExpectedReply([]byte(body), b) || !json.Valid([]byte(js.String())) ||
		*d[7].Delta.StopReason != "tool_use" {
		t.Fatalf("tool json %q / %s", js.String(), evs[7].Data)
	}
}

// ---- pacing, cuts and cancellation ----

func TestFirstChunkThenWait(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	// The server waits an hour after the first content piece: receiving that
	// piece at all shows it was flushed rather than buffered.
	s.SetKey(oaKey, fakeprovider.Behavior{Status: 200, FirstChunkThenWait: time.Hour})
	s.SetKey(antKey, fakeprovider.Behavior{Status: 200, FirstChunkThenWait: time.Hour})

	for i, c := range []struct {
		url, body string
		hdr       map[string]string
		firstN    int // events up to and including the first content piece
	}{
		{s.OpenAIBaseURL() + "/chat/completions", chatBody("gpt-4o", true, true, ""), openAIHdr(oaKey), 2},
		{s.AnthropicBaseURL() + "/v1/messages", messagesBody(true, ""), anthHdr(antKey), 4},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		resp := post(t, ctx, c.url, c.hdr, c.body)
		evs, errc := sseChan(resp.Body)
		var got []sseEvent
		for len(got) < c.firstN {
			select {
			case e := <-evs:
				got = append(got, e)
			case err := <-errc:
				t.Fatalf("stream ended early: %v", err)
			}
		}
		last := got[c.firstN-1].Data
		if !strings.Contains(last, `"content":"`) && !strings.Contains(last, `"text_delta"`) {
			t.Fatalf("event %d is not the first content piece: %s", c.firstN, last)
		}
		// The server is still inside its wait: nothing more has been sent.
		select {
		case e := <-evs:
			t.Fatalf("event after the first piece during the wait: %+v", e)
		default:
		}
		if s.InFlight() != 1 || s.LastRequest().Finished {
			t.Fatal("handler should still be waiting")
		}
		cancel()
		<-errc
		waitFor(t, "cancellation to be recorded", func() bool { return s.Cancelled() == i+1 && s.InFlight() == 0 })
		if rec := s.LastRequest(); !rec.Cancelled || rec.Delivered != 1 || !rec.Stream {
			t.Fatalf("record: %+v", rec)
		}
	}

	// A short wait completes the stream normally.
	s.SetKey(oaKey, fakeprovider.Behavior{Status: 200, FirstChunkThenWait: 10 * time.Millisecond, ChunkDelay: time.Millisecond})
	body := chatBody("gpt-4o", true, false, "")
	resp := post(t, context.Background(), s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), body)
	evs, err := readAllSSE(t, resp)
	if err != nil || len(evs) != 1+3+1+1 || evs[len(evs)-1].Data != "[DONE]" || s.Cancelled() != 2 {
		t.Fatalf("short wait: %v, %d events, cancelled %d", err, len(evs), s.Cancelled())
	}
}

func TestCutAfter(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	s.SetKey(oaKey, fakeprovider.Behavior{Status: 200, Chunks: 5, CutAfter: 2})
	s.SetKey(antKey, fakeprovider.Behavior{Status: 200, Chunks: 5, CutAfter: 2})

	resp := post(t, context.Background(), s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), chatBody("gpt-4o", true, true, ""))
	evs, err := readAllSSE(t, resp)
	if err == nil || len(evs) != 1+2 {
		t.Fatalf("openai cut: err %v, %d events", err, len(evs))
	}
	for _, e := range evs {
		if e.Data == "[DONE]" || strings.Contains(e.Data, `"finish_reason":"`) {
			t.Fatalf("cut stream sent a final event: %s", e.Data)
		}
	}
	waitFor(t, "handler", func() bool { return s.InFlight() == 0 })
	if rec := s.LastRequest(); rec.Delivered != 2 || rec.Cancelled || rec.Usage.Output != 5 {
		t.Fatalf("record: %+v", rec)
	}

	resp = post(t, context.Background(), s.AnthropicBaseURL()+"/v1/messages", anthHdr(antKey), messagesBody(true, ""))
	evs, err = readAllSSE(t, resp)
	if err == nil || eventNames(evs) != "message_start,content_block_start,ping,content_block_delta,content_block_delta" {
		t.Fatalf("anthropic cut: err %v, %s", err, eventNames(evs))
	}
	waitFor(t, "handler", func() bool { return s.InFlight() == 0 })
	if s.Cancelled() != 0 || s.LastRequest().Delivered != 2 {
		t.Fatalf("cut counted as cancelled: %d", s.Cancelled())
	}

	// CutAfter beyond the piece count: all content, then the cut.
	s.SetKey(oaKey, fakeprovider.Behavior{Status: 200, CutAfter: 100})
	resp = post(t, context.Background(), s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), chatBody("gpt-4o", true, false, ""))
	if evs, err = readAllSSE(t, resp); err == nil || len(evs) != 1+3 {
		t.Fatalf("cut after all: %v %d", err, len(evs))
	}

	// Non-stream requests ignore CutAfter.
	_, raw := postRead(t, s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), chatBody("gpt-4o", false, false, ""))
	var cc oaCompletionDoc
	decode(t, raw, &cc)
	if cc.Choices[0].FinishReason != "stop" {
		t.Fatalf("non-stream: %s", raw)
	}
}

func TestCancelled(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()

	// Mid-stream: paced events, the client goes away after the first piece.
	s.SetKey(oaKey, fakeprovider.Behavior{Status: 200, Chunks: 10000, ChunkDelay: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	resp := post(t, ctx, s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), chatBody("gpt-4o", true, false, ""))
	evs, errc := sseChan(resp.Body)
	<-evs
	<-evs // first content piece
	cancel()
	<-errc
	waitFor(t, "mid-stream cancel", func() bool { return s.Cancelled() == 1 && s.InFlight() == 0 })
	if rec := s.LastRequest(); !rec.Cancelled || rec.Delivered >= 10000 {
		t.Fatalf("record: %+v", rec)
	}

	// Stalled and delayed requests abandoned by the client.
	for i, b := range []fakeprovider.Behavior{{Stall: true}, {Status: 200, Delay: time.Hour}} {
		s.SetKey(antKey, b)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.AnthropicBaseURL()+"/v1/messages", strings.NewReader(messagesBody(false, "")))
			for k, v := range anthHdr(antKey) {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		waitFor(t, "request to arrive", func() bool { return s.InFlight() == 1 })
		cancel()
		if err := <-errc; err == nil {
			t.Fatal("expected a client error")
		}
		waitFor(t, "cancel count", func() bool { return s.Cancelled() == 2+i && s.InFlight() == 0 })
	}

	// Completed requests and closing the server do not count.
	s.SetKey(oaKey, fakeprovider.OK())
	postRead(t, s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), chatBody("gpt-4o", true, true, ""))
	s.SetDefault(fakeprovider.Behavior{Stall: true})
	go func() {
		if resp, err := http.Get(s.OpenAIBaseURL() + "/models"); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "stalled request", func() bool { return s.InFlight() == 1 })
	s.Close()
	if s.Cancelled() != 3 {
		t.Fatalf("cancelled %d after close", s.Cancelled())
	}
}

func TestChunkDelayOrder(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	s.SetKey(oaKey, fakeprovider.Behavior{Status: 200, Chunks: 4, ChunkDelay: 10 * time.Millisecond})
	resp := post(t, context.Background(), s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), chatBody("gpt-4o", true, false, ""))
	evs, errc := sseChan(resp.Body)
	// Each event arrives on its own: the first is readable while later ones
	// are still being paced, and all arrive in order.
	var n int
	for range evs {
		n++
	}
	if err := <-errc; err != nil || n != 1+4+1+1 {
		t.Fatalf("%d events, %v", n, err)
	}
}

// ---- behaviours shared by every route ----

func TestGenerationRouteFaults(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()

	s.SetKey(oaKey, fakeprovider.RateLimited())
	resp, raw := postRead(t, s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), chatBody("gpt-4o", true, false, ""))
	var oe oaErr
	decode(t, raw, &oe)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || *oe.Error.Code != "rate_limit_exceeded" ||
		resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("openai 429: %d %s", resp.StatusCode, raw)
	}
	s.SetKey(antKey, fakeprovider.Overloaded())
	resp, raw = postRead(t, s.AnthropicBaseURL()+"/v1/messages", anthHdr(antKey), messagesBody(true, ""))
	var ae antErr
	decode(t, raw, &ae)
	if resp.StatusCode != 529 || ae.Error.Type != "overloaded_error" {
		t.Fatalf("anthropic 529: %d %s", resp.StatusCode, raw)
	}
	s.SetKey(oaKey, fakeprovider.InsufficientQuota())
	resp, raw = postRead(t, s.OpenAIBaseURL()+"/embeddings", openAIHdr(oaKey), `{"model":"text-embedding-3-small","input":"x"}`)
	oe = oaErr{}
	decode(t, raw, &oe)
	if resp.StatusCode != 429 || oe.Error.Type != "insufficient_quota" {
		t.Fatalf("embeddings quota: %d %s", resp.StatusCode, raw)
	}
	s.SetKey(oaKey, fakeprovider.Behavior{DropConn: true})
	req, _ := http.NewRequest(http.MethodPost, s.OpenAIBaseURL()+"/chat/completions", strings.NewReader(chatBody("gpt-4o", true, false, "")))
	req.Header.Set("Authorization", "Bearer "+oaKey)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("dropconn answered")
	}
	if s.Cancelled() != 0 {
		t.Fatalf("faults counted as cancelled: %d", s.Cancelled())
	}
}

func TestOverrides(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	b := fakeprovider.Behavior{Status: 200, Reply: "Hello there, friend", Usage: &fakeprovider.Usage{Input: 111, Output: 7}, Chunks: 2}
	s.SetDefault(b)

	body := chatBody("gpt-4o", true, true, "")
	resp := post(t, context.Background(), s.OpenAIBaseURL()+"/chat/completions", openAIHdr("sk-any"), body)
	evs, err := readAllSSE(t, resp)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	var usage *oaUsageDoc
	for _, e := range evs[:len(evs)-1] {
		var c oaChunkDoc
		decode(t, []byte(e.Data), &c)
		if len(c.Choices) > 0 && c.Choices[0].Delta.Content != nil {
			text.WriteString(*c.Choices[0].Delta.Content)
		}
		if c.Usage != nil {
			usage = c.Usage
		}
	}
	if text.String() != "Hello there, friend" || usage == nil || *usage != (oaUsageDoc{111, 7, 118}) ||
		fakeprovider.ExpectedUsage([]byte(body), b) != (fakeprovider.Usage{Input: 111, Output: 7}) {
		t.Fatalf("overrides: %q %+v", text.String(), usage)
	}
	if p := fakeprovider.Pieces([]byte(body), b); len(p) != 2 || p[0]+p[1] != "Hello there, friend" {
		t.Fatalf("pieces %q", p)
	}

	// More pieces than runes: the text is repeated, every piece non-empty.
	b = fakeprovider.Behavior{Status: 200, Reply: "ab", Chunks: 5}
	if p := fakeprovider.Pieces([]byte(body), b); len(p) != 5 || strings.Contains(strings.Join(p, "|"), "||") {
		t.Fatalf("pieces %q", p)
	}
}

// ---- embeddings and transcriptions ----

func TestEmbeddings(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	s.SetKey(oaKey, fakeprovider.OK())
	type doc struct {
		Object string `json:"object"`
		Data   []struct {
			Object    string          `json:"object"`
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Model string `json:"model"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}
	for _, c := range []struct {
		input string
		n     int
	}{{`"` + secret + `"`, 1}, {`["a","b","c"]`, 3}, {`[1,2,3]`, 1}, {`[[1,2],[3]]`, 2}} {
		for _, format := range []string{"", "float", "base64"} {
			body := `{"model":"text-embedding-3-small","input":` + c.input
			if format != "" {
				body += `,"encoding_format":"` + format + `"`
			}
			body += "}"
			resp, raw := postRead(t, s.OpenAIBaseURL()+"/embeddings", openAIHdr(oaKey), body)
			var d doc
			decode(t, raw, &d)
			if resp.StatusCode != 200 || d.Object != "list" || d.Model != "text-embedding-3-small" || len(d.Data) != c.n ||
				d.Usage.PromptTokens != fakeprovider.PromptTokens([]byte(body)) || d.Usage.TotalTokens != d.Usage.PromptTokens {
				t.Fatalf("%s: %s", body, raw)
			}
			for i, e := range d.Data {
				var vec []float32
				if format == "base64" {
					var s string
					decode(t, e.Embedding, &s)
					bin, err := base64.StdEncoding.DecodeString(s)
					if err != nil || len(bin) != 4*fakeprovider.EmbeddingDim {
						t.Fatalf("base64 embedding: %v %d", err, len(bin))
					}
					for j := 0; j < len(bin); j += 4 {
						vec = append(vec, math.Float32frombits(binary.LittleEndian.Uint32(bin[j:])))
					}
				} else {
					decode(t, e.Embedding, &vec)
				}
				if e.Object != "embedding" || e.Index != i || len(vec) != fakeprovider.EmbeddingDim {
					t.Fatalf("item %d: %s", i, raw)
				}
			}
		}
	}
	resp, raw := postRead(t, s.OpenAIBaseURL()+"/embeddings", openAIHdr(oaKey), `{"model":"text-embedding-3-small"}`)
	if resp.StatusCode != 400 || !strings.Contains(string(raw), `"param":"input"`) {
		t.Fatalf("missing input: %d %s", resp.StatusCode, raw)
	}
}

func multipartBody(t *testing.T, fields map[string]string, audio []byte) (string, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if audio != nil {
		fw, _ := mw.CreateFormFile("file", "speech.mp3")
		_, _ = fw.Write(audio)
	}
	_ = mw.Close()
	return mw.FormDataContentType(), &buf
}

func TestTranscriptions(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	s.SetKey(oaKey, fakeprovider.OK())
	audio := []byte("ID3 fake mp3 bytes " + secret)
	send := func(fields map[string]string, audio []byte) (*http.Response, []byte) {
		ct, body := multipartBody(t, fields, audio)
		req, _ := http.NewRequest(http.MethodPost, s.OpenAIBaseURL()+"/audio/transcriptions", body)
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+oaKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	resp, raw := send(map[string]string{"model": "whisper-1"}, audio)
	var j struct {
		Text string `json:"text"`
	}
	decode(t, raw, &j)
	if resp.StatusCode != 200 || j.Text != fakeprovider.Transcript(audio) || strings.Contains(j.Text, secret) {
		t.Fatalf("json: %d %s", resp.StatusCode, raw)
	}
	resp, raw = send(map[string]string{"model": "whisper-1", "response_format": "text"}, audio)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
		strings.TrimSpace(string(raw)) != fakeprovider.Transcript(audio) {
		t.Fatalf("text: %d %q", resp.StatusCode, raw)
	}
	resp, raw = send(map[string]string{"model": "whisper-1"}, nil)
	if resp.StatusCode != 400 || !strings.Contains(string(raw), `"param":"file"`) {
		t.Fatalf("no file: %d %s", resp.StatusCode, raw)
	}
	resp, raw = send(nil, audio)
	if resp.StatusCode != 400 || !strings.Contains(string(raw), `"param":"model"`) {
		t.Fatalf("no model: %d %s", resp.StatusCode, raw)
	}
}

// ---- the request log ----

func TestRequestsRing(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	s.SetKey(oaKey, fakeprovider.OK())
	s.SetKey(antKey, fakeprovider.OK())
	postRead(t, s.OpenAIBaseURL()+"/chat/completions", openAIHdr(oaKey), chatBody("gpt-4o", false, false, ""))
	postRead(t, s.AnthropicBaseURL()+"/v1/messages", anthHdr(antKey), messagesBody(false, ""))
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].Seq != 1 || reqs[0].Header.Get("Authorization") != "Bearer "+oaKey ||
		reqs[1].Header.Get("x-api-key") != antKey || reqs[1].Header.Get("Authorization") != "" ||
		!strings.Contains(string(reqs[0].Body), secret) {
		t.Fatalf("requests: %+v", reqs)
	}
	reqs[0].Body[0] = 'X'
	if s.Requests()[0].Body[0] == 'X' {
		t.Fatal("Requests shares bodies")
	}

	extra := 5
	for range fakeprovider.MaxRecorded + extra {
		get(t, context.Background(), s.OpenAIBaseURL()+"/models", openAIHdr(oaKey))
	}
	reqs = s.Requests()
	total := 2 + fakeprovider.MaxRecorded + extra
	if len(reqs) != fakeprovider.MaxRecorded || reqs[0].Seq != total-fakeprovider.MaxRecorded+1 ||
		reqs[len(reqs)-1].Seq != total || s.TotalCalls() != total || s.Calls(oaKey) != total-1 {
		t.Fatalf("ring: %d records, first %d, last %d", len(reqs), reqs[0].Seq, reqs[len(reqs)-1].Seq)
	}
}
