package translate

import (
	"bytes"
	"encoding/json"
	"errors"
)

// SSEEvent is one Anthropic server-sent event: the caller writes
// "event: " + Event + "\ndata: " + Data + "\n\n".
type SSEEvent struct {
	Event string
	Data  []byte
}

type oaiChunk struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content   *string `json:"content"`
			Refusal   *string `json:"refusal"`
			ToolCalls []struct {
				Index    int    `json:"index"`
				ID       string `json:"id"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *oaiUsage       `json:"usage"`
	Error json.RawMessage `json:"error"`
}

type revTool struct {
	index int // OpenAI tool_calls index
	block int // Anthropic content block index
}

const (
	blockNone = iota
	blockText
	blockTool
)

// ReverseStreamTranslator turns the chunks of one OpenAI Chat Completions
// stream into Anthropic Messages stream events. Create one per stream with
// NewReverseStreamTranslator; it is not safe for concurrent use.
type ReverseStreamTranslator struct {
	model   string
	started bool
	done    bool

	open      int // blockNone, blockText or blockTool
	openBlock int // index of the open block
	nextBlock int
	tools     []revTool

	stopReason string

	input, cacheRead, output int64
	sawUsage                 bool
	delivered                int64
}

// NewReverseStreamTranslator returns a translator for one stream; requestModel
// is the model reported in message_start (the upstream's when empty).
func NewReverseStreamTranslator(requestModel string) *ReverseStreamTranslator {
	return &ReverseStreamTranslator{model: requestModel}
}

// Chunk translates the payload of one OpenAI "data:" line (a chunk, or the
// "[DONE]" sentinel) into Anthropic events: message_start before the first
// content; content_block_start/content_block_delta/content_block_stop for text
// (text_delta) and tool calls (tool_use, input_json_delta); and at "[DONE]",
// message_delta with stop_reason and usage, then message_stop. A chunk
// carrying an upstream error yields the Anthropic "error" event and a
// *StreamError. If the upstream ends without "[DONE]", pass "[DONE]" to
// close the message.
func (t *ReverseStreamTranslator) Chunk(data []byte) ([]SSEEvent, error) {
	data = bytes.TrimSpace(data)
	if string(data) == "[DONE]" {
		return t.finish(), nil
	}
	if t.done {
		return nil, nil
	}
	var c oaiChunk
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, errors.New("malformed upstream stream chunk")
	}
	if !isNull(c.Error) {
		body := OpenAIErrorToAnthropic(0, data)
		var parsed anthropicErrorBody
		_ = json.Unmarshal(body, &parsed)
		se := &StreamError{Type: parsed.Error.Type, Message: parsed.Error.Message}
		return []SSEEvent{{Event: "error", Data: body}}, se
	}

	var evs []SSEEvent
	if !t.started {
		evs = t.start(c.ID, c.Model)
	}
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Index != 0 {
			continue // only the first choice is translated
		}
		for _, s := range [2]*string{ch.Delta.Content, ch.Delta.Refusal} {
			if s == nil || *s == "" {
				continue
			}
			if t.open != blockText {
				evs = t.closeBlock(evs)
				evs = t.openBlockEvent(evs, blockText, `{"type":"text","text":""}`)
			}
			t.delivered += int64(len(*s))
			b := make([]byte, 0, len(*s)+80)
			b = append(b, `{"type":"content_block_delta","index":`...)
			b = appendInt(b, int64(t.openBlock))
			b = append(b, `,"delta":{"type":"text_delta","text":`...)
			b = appendJSONString(b, *s)
			b = append(b, "}}"...)
			evs = append(evs, SSEEvent{Event: "content_block_delta", Data: b})
		}
		for _, tc := range ch.Delta.ToolCalls {
			block := -1
			for _, rt := range t.tools {
				if rt.index == tc.Index {
					block = rt.block
					break
				}
			}
			if block < 0 {
				evs = t.closeBlock(evs)
				cb := make([]byte, 0, len(tc.ID)+len(tc.Function.Name)+64)
				cb = append(cb, `{"type":"tool_use","id":`...)
				cb = appendJSONString(cb, tc.ID)
				cb = append(cb, `,"name":`...)
				cb = appendJSONString(cb, tc.Function.Name)
				cb = append(cb, `,"input":{}}`...)
				evs = t.openBlockEvent(evs, blockTool, string(cb))
				block = t.openBlock
				t.tools = append(t.tools, revTool{index: tc.Index, block: block})
			}
			if tc.Function.Arguments == "" {
				continue
			}
			t.delivered += int64(len(tc.Function.Arguments))
			b := make([]byte, 0, len(tc.Function.Arguments)+96)
			b = append(b, `{"type":"content_block_delta","index":`...)
			b = appendInt(b, int64(block))
			b = append(b, `,"delta":{"type":"input_json_delta","partial_json":`...)
			b = appendJSONString(b, tc.Function.Arguments)
			b = append(b, "}}"...)
			evs = append(evs, SSEEvent{Event: "content_block_delta", Data: b})
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			t.stopReason = stopReasonFor(*ch.FinishReason)
			evs = t.closeBlock(evs)
		}
	}
	if c.Usage != nil {
		t.input, t.cacheRead, t.output = c.Usage.split()
		t.sawUsage = true
	}
	return evs, nil
}

// Usage returns the prompt tokens (uncached plus cached) and completion
// tokens reported so far; for a stream cut before the usage chunk, output is
// an estimate of what was delivered (about four bytes per token).
func (t *ReverseStreamTranslator) Usage() (input, output int64) {
	output = t.output
	if !t.sawUsage {
		output = max(output, estimateTokens(t.delivered))
	}
	return t.input + t.cacheRead, output
}

// CacheTokens returns the cached prompt tokens reported (creation is always 0
// for OpenAI).
func (t *ReverseStreamTranslator) CacheTokens() (creation, read int64) { return 0, t.cacheRead }

// Done reports whether "[DONE]" has been seen and message_stop emitted.
func (t *ReverseStreamTranslator) Done() bool { return t.done }

type revMessageStart struct {
	Type    string `json:"type"`
	Message struct {
		ID           string       `json:"id"`
		Type         string       `json:"type"`
		Role         string       `json:"role"`
		Model        string       `json:"model"`
		Content      []struct{}   `json:"content"`
		StopReason   *string      `json:"stop_reason"`
		StopSequence *string      `json:"stop_sequence"`
		Usage        anthUsageOut `json:"usage"`
	} `json:"message"`
}

func (t *ReverseStreamTranslator) start(id, model string) []SSEEvent {
	t.started = true
	if t.model == "" {
		t.model = model
	}
	var ms revMessageStart
	ms.Type = "message_start"
	ms.Message.ID = messageID(id)
	ms.Message.Type = "message"
	ms.Message.Role = "assistant"
	ms.Message.Model = t.model
	ms.Message.Content = []struct{}{}
	return []SSEEvent{{Event: "message_start", Data: mustMarshal(ms)}}
}

func (t *ReverseStreamTranslator) openBlockEvent(evs []SSEEvent, kind int, block string) []SSEEvent {
	t.open = kind
	t.openBlock = t.nextBlock
	t.nextBlock++
	b := make([]byte, 0, len(block)+64)
	b = append(b, `{"type":"content_block_start","index":`...)
	b = appendInt(b, int64(t.openBlock))
	b = append(b, `,"content_block":`...)
	b = append(b, block...)
	b = append(b, '}')
	return append(evs, SSEEvent{Event: "content_block_start", Data: b})
}

func (t *ReverseStreamTranslator) closeBlock(evs []SSEEvent) []SSEEvent {
	if t.open == blockNone {
		return evs
	}
	t.open = blockNone
	b := make([]byte, 0, 48)
	b = append(b, `{"type":"content_block_stop","index":`...)
	b = appendInt(b, int64(t.openBlock))
	b = append(b, '}')
	return append(evs, SSEEvent{Event: "content_block_stop", Data: b})
}

type revMessageDelta struct {
	Type  string `json:"type"`
	Delta struct {
		StopReason   string  `json:"stop_reason"`
		StopSequence *string `json:"stop_sequence"`
	} `json:"delta"`
	Usage anthUsageOut `json:"usage"`
}

func (t *ReverseStreamTranslator) finish() []SSEEvent {
	if t.done {
		return nil
	}
	var evs []SSEEvent
	if !t.started {
		evs = t.start("", "")
	}
	evs = t.closeBlock(evs)
	t.done = true
	var md revMessageDelta
	md.Type = "message_delta"
	md.Delta.StopReason = t.stopReason
	if md.Delta.StopReason == "" {
		md.Delta.StopReason = "end_turn"
	}
	_, out := t.Usage()
	md.Usage = anthUsageOut{InputTokens: t.input, CacheReadInputTokens: t.cacheRead, OutputTokens: out}
	return append(evs,
		SSEEvent{Event: "message_delta", Data: mustMarshal(md)},
		SSEEvent{Event: "message_stop", Data: []byte(`{"type":"message_stop"}`)})
}
