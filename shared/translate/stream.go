package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// anthStreamEvent is any Anthropic Messages streaming event.
type anthStreamEvent struct {
	Type    string `json:"type"`
	Message *struct {
		ID    string    `json:"id"`
		Model string    `json:"model"`
		Usage anthUsage `json:"usage"`
	} `json:"message"`
	Index        int `json:"index"`
	ContentBlock *struct {
		Type  string          `json:"type"`
		Text  string          `json:"text"`
		ID    string          `json:"id"`
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	} `json:"content_block"`
	Delta *struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *anthUsage      `json:"usage"`
	Error *anthropicError `json:"error"`
}

type streamTool struct {
	block   int  // Anthropic content block index
	index   int  // OpenAI tool_calls index
	hasArgs bool // some arguments were sent
}

// StreamTranslator turns the events of one Anthropic Messages stream into
// OpenAI chat.completion.chunk objects. Create one per stream with
// NewStreamTranslator; it is not safe for concurrent use.
type StreamTranslator struct {
	model        string
	includeUsage bool
	created      int64
	head         []byte // {"id":…,"object":"chat.completion.chunk","created":…,"model":…
	tools        []streamTool

	input, cacheCreate, cacheRead, output int64
	finalUsage                            bool  // message_delta reported usage
	delivered                             int64 // bytes of text and arguments sent
	finished                              bool  // finish_reason chunk sent
	done                                  bool  // message_stop seen
}

// NewStreamTranslator returns a translator for one stream. requestModel is
// the model reported in every chunk (the upstream's when empty); includeUsage
// is the client's stream_options.include_usage; created is the chunks'
// "created" Unix time.
func NewStreamTranslator(requestModel string, includeUsage bool, created int64) *StreamTranslator {
	return &StreamTranslator{model: requestModel, includeUsage: includeUsage, created: created}
}

// Event translates one Anthropic SSE event (its "event:" name and "data:"
// payload) into zero or more chunks, each the JSON of one
// chat.completion.chunk, which the caller writes as "data: " + chunk + "\n\n".
//
//   - message_start → a chunk with delta {"role":"assistant","content":""};
//   - text_delta → a content chunk;
//   - tool_use content_block_start → a tool_calls delta with index, id, type,
//     function.name and arguments "";
//   - input_json_delta → a tool_calls delta with index and the arguments piece
//     (a tool block that ends with no arguments gets "{}");
//   - message_delta → the finish_reason chunk;
//   - message_stop → with includeUsage, the usage chunk with "choices": [];
//   - ping, thinking and unknown events → nothing;
//   - error → a *StreamError carrying the Anthropic error type and message.
//
// The event type is taken from data's "type" member, or eventType when absent.
func (t *StreamTranslator) Event(eventType string, data []byte) ([][]byte, error) {
	if lit, ok := textDeltaLiteral(data); ok {
		if string(lit) == `""` {
			return nil, nil
		}
		t.delivered += int64(len(lit) - 2)
		b := t.begin(len(lit) + 16)
		b = append(b, `{"content":`...)
		b = append(b, lit...)
		b = append(b, '}')
		return [][]byte{endChunk(b, "")}, nil
	}
	var ev anthStreamEvent
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &ev); err != nil {
			return nil, errors.New("malformed upstream stream event")
		}
	}
	typ := ev.Type
	if typ == "" {
		typ = eventType
	}
	switch typ {
	case "message_start":
		if ev.Message != nil {
			if t.model == "" {
				t.model = ev.Message.Model
			}
			t.head = t.buildHead(ev.Message.ID)
			t.setUsage(&ev.Message.Usage)
		}
		b := t.begin(32)
		b = append(b, `{"role":"assistant","content":""}`...)
		return [][]byte{endChunk(b, "")}, nil

	case "content_block_start":
		cb := ev.ContentBlock
		if cb == nil {
			return nil, nil
		}
		switch cb.Type {
		case "text":
			if cb.Text != "" {
				return [][]byte{t.textChunk(cb.Text)}, nil
			}
		case "tool_use":
			st := streamTool{block: ev.Index, index: len(t.tools)}
			args := ""
			if in := bytes.TrimSpace(cb.Input); len(in) > 0 && !isNull(in) && !emptyObject(in) {
				args = compactArgs(in)
				st.hasArgs = true
				t.delivered += int64(len(args))
			}
			t.tools = append(t.tools, st)
			b := t.begin(len(cb.ID) + len(cb.Name) + len(args) + 96)
			b = append(b, `{"tool_calls":[{"index":`...)
			b = appendInt(b, int64(st.index))
			b = append(b, `,"id":`...)
			b = appendJSONString(b, cb.ID)
			b = append(b, `,"type":"function","function":{"name":`...)
			b = appendJSONString(b, cb.Name)
			b = append(b, `,"arguments":`...)
			b = appendJSONString(b, args)
			b = append(b, "}}]}"...)
			return [][]byte{endChunk(b, "")}, nil
		}
		return nil, nil

	case "content_block_delta":
		d := ev.Delta
		if d == nil {
			return nil, nil
		}
		switch d.Type {
		case "text_delta":
			if d.Text != "" {
				return [][]byte{t.textChunk(d.Text)}, nil
			}
		case "input_json_delta":
			st := t.tool(ev.Index)
			if st == nil || d.PartialJSON == "" {
				return nil, nil
			}
			st.hasArgs = true
			return [][]byte{t.argsChunk(st.index, d.PartialJSON)}, nil
		}
		return nil, nil

	case "content_block_stop":
		if st := t.tool(ev.Index); st != nil && !st.hasArgs {
			st.hasArgs = true
			return [][]byte{t.argsChunk(st.index, "{}")}, nil
		}
		return nil, nil

	case "message_delta":
		if ev.Usage != nil {
			t.setUsage(ev.Usage)
			if ev.Usage.OutputTokens != nil {
				t.finalUsage = true
			}
		}
		if t.finished {
			return nil, nil
		}
		t.finished = true
		stop := ""
		if ev.Delta != nil {
			stop = ev.Delta.StopReason
		}
		b := t.begin(2)
		b = append(b, "{}"...)
		return [][]byte{endChunk(b, finishReasonFor(stop))}, nil

	case "message_stop":
		if t.done {
			return nil, nil
		}
		t.done = true
		var out [][]byte
		if !t.finished {
			t.finished = true
			b := t.begin(2)
			b = append(b, "{}"...)
			out = append(out, endChunk(b, "stop"))
		}
		if t.includeUsage {
			out = append(out, t.usageChunk())
		}
		return out, nil

	case "error":
		if ev.Error == nil || ev.Error.Type == "" {
			return nil, &StreamError{Type: "api_error", Message: "upstream stream error"}
		}
		return nil, &StreamError{Type: ev.Error.Type, Message: ev.Error.Message}
	}
	return nil, nil // ping, and event types added later
}

// Usage returns the prompt tokens (input plus cache creation plus cache read)
// and completion tokens reported so far. For a stream cut before the final
// message_delta, output is at least an estimate of what was delivered (about
// four bytes of text or arguments per token).
func (t *StreamTranslator) Usage() (input, output int64) {
	output = t.output
	if !t.finalUsage {
		output = max(output, estimateTokens(t.delivered))
	}
	return t.input + t.cacheCreate + t.cacheRead, output
}

// CacheTokens returns the cache-creation and cache-read input tokens reported
// so far (both already included in Usage's input).
func (t *StreamTranslator) CacheTokens() (creation, read int64) { return t.cacheCreate, t.cacheRead }

// Done reports whether message_stop has been seen: the stream is complete.
func (t *StreamTranslator) Done() bool { return t.done }

func (t *StreamTranslator) setUsage(u *anthUsage) {
	// Anthropic's counts are cumulative; a later event only ever raises them.
	if u.InputTokens != nil {
		t.input = max(t.input, val(u.InputTokens))
	}
	if u.CacheCreationInputTokens != nil {
		t.cacheCreate = max(t.cacheCreate, val(u.CacheCreationInputTokens))
	}
	if u.CacheReadInputTokens != nil {
		t.cacheRead = max(t.cacheRead, val(u.CacheReadInputTokens))
	}
	if u.OutputTokens != nil {
		t.output = max(t.output, val(u.OutputTokens))
	}
}

func (t *StreamTranslator) tool(block int) *streamTool {
	for i := range t.tools {
		if t.tools[i].block == block {
			return &t.tools[i]
		}
	}
	return nil
}

func (t *StreamTranslator) buildHead(id string) []byte {
	b := make([]byte, 0, 96+len(id)+len(t.model))
	b = append(b, `{"id":`...)
	b = appendJSONString(b, "chatcmpl-"+id)
	b = append(b, `,"object":"chat.completion.chunk","created":`...)
	b = appendInt(b, t.created)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, t.model)
	return b
}

// begin starts a chunk up to its delta object.
func (t *StreamTranslator) begin(n int) []byte {
	if t.head == nil {
		t.head = t.buildHead("")
	}
	const choices = `,"choices":[{"index":0,"delta":`
	b := make([]byte, 0, len(t.head)+len(choices)+n+48)
	b = append(b, t.head...)
	return append(b, choices...)
}

func endChunk(b []byte, finish string) []byte {
	b = append(b, `,"logprobs":null,"finish_reason":`...)
	if finish == "" {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, finish)
	}
	return append(b, "}]}"...)
}

func (t *StreamTranslator) textChunk(text string) []byte {
	t.delivered += int64(len(text))
	b := t.begin(len(text) + 16)
	b = append(b, `{"content":`...)
	b = appendJSONString(b, text)
	b = append(b, '}')
	return endChunk(b, "")
}

func (t *StreamTranslator) argsChunk(index int, args string) []byte {
	t.delivered += int64(len(args))
	b := t.begin(len(args) + 64)
	b = append(b, `{"tool_calls":[{"index":`...)
	b = appendInt(b, int64(index))
	b = append(b, `,"function":{"arguments":`...)
	b = appendJSONString(b, args)
	b = append(b, "}}]}"...)
	return endChunk(b, "")
}

func (t *StreamTranslator) usageChunk() []byte {
	in, out := t.Usage()
	u := newChatUsage(in, 0, 0, out)
	u.PromptTokensDetails.CachedTokens = t.cacheRead
	ub := mustMarshal(u)
	if t.head == nil {
		t.head = t.buildHead("")
	}
	b := make([]byte, 0, len(t.head)+len(ub)+32)
	b = append(b, t.head...)
	b = append(b, `,"choices":[],"usage":`...)
	b = append(b, ub...)
	return append(b, '}')
}

func emptyObject(raw []byte) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' {
		return false
	}
	return len(bytes.TrimSpace(raw[1:len(raw)-1])) == 0
}

// textDeltaLiteral recognises the commonest event, a text_delta in
// Anthropic's exact compact layout, and returns its text as the JSON string
// literal it already is, so the hot path neither decodes nor re-encodes it.
// Any other layout takes the general path.
func textDeltaLiteral(data []byte) ([]byte, bool) {
	const p1 = `{"type":"content_block_delta","index":`
	const p2 = `,"delta":{"type":"text_delta","text":"`
	if !bytes.HasPrefix(data, []byte(p1)) {
		return nil, false
	}
	rest := data[len(p1):]
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || !bytes.HasPrefix(rest[n:], []byte(p2)) {
		return nil, false
	}
	rest = bytes.TrimRight(rest[n+len(p2)-1:], " \t\r\n")
	if len(rest) < 4 || string(rest[len(rest)-2:]) != "}}" {
		return nil, false
	}
	lit := rest[:len(rest)-2]
	if lit[len(lit)-1] != '"' || !utf8.Valid(lit) || !json.Valid(lit) {
		return nil, false
	}
	return lit, true
}
