package fakeprovider

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Anthropic message shapes (https://docs.anthropic.com/en/api/messages and
// https://docs.anthropic.com/en/docs/build-with-claude/streaming).

type antBlock struct {
	Type  string          `json:"type"`
	Text  *string         `json:"text,omitempty"`
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
}

type antUsage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

type antMessage struct {
	ID           string     `json:"id"`
	Type         string     `json:"type"`
	Role         string     `json:"role"`
	Model        string     `json:"model"`
	Content      []antBlock `json:"content"`
	StopReason   *string    `json:"stop_reason"`
	StopSequence *string    `json:"stop_sequence"`
	Usage        antUsage   `json:"usage"`
}

func anthropicBadRequest(w http.ResponseWriter, message string) {
	writeRaw(w, http.StatusBadRequest, AnthropicError("invalid_request_error", message))
}

func (s *Server) anthropicMessages(w http.ResponseWriter, c *call) {
	if c.r.Header.Get("anthropic-version") == "" {
		anthropicBadRequest(w, "anthropic-version: header is required")
		return
	}
	var q chatReq
	if err := json.Unmarshal(c.rec.Body, &q); err != nil {
		anthropicBadRequest(w, "There was an error parsing the body of your request: "+err.Error())
		return
	}
	switch {
	case q.model() == "":
		anthropicBadRequest(w, "model: Field required")
		return
	case q.MaxTokens == nil:
		anthropicBadRequest(w, "max_tokens: Field required")
		return
	case *q.MaxTokens < 1:
		anthropicBadRequest(w, "max_tokens: Input should be greater than or equal to 1")
		return
	case q.Messages == nil:
		anthropicBadRequest(w, "messages: Field required")
		return
	case len(q.Messages) == 0:
		anthropicBadRequest(w, "messages: at least one message is required")
		return
	}
	q.MaxCompletionTokens = nil // not an Anthropic field

	p := makePlan(c.rec.Body, &q, c.b)
	c.usage = &p.usage
	id := fmt.Sprintf("msg_fake%s%06d", Digest(c.rec.Body), c.rec.Seq)
	toolID := fmt.Sprintf("toolu_fake%s%06d", Digest(c.rec.Body), c.rec.Seq)
	stop := "end_turn"
	switch {
	case p.truncated:
		stop = "max_tokens"
	case p.tool != "":
		stop = "tool_use"
	}

	if !q.Stream {
		block := antBlock{Type: "text", Text: ptr(p.text())}
		if p.tool != "" {
			input := json.RawMessage(p.text())
			if !json.Valid(input) { // cut short by max_tokens
				input = json.RawMessage("{}")
			}
			block = antBlock{Type: "tool_use", ID: toolID, Name: p.tool, Input: input}
		}
		c.delivered = len(p.pieces)
		writeJSON(w, c.status, antMessage{
			ID: id, Type: "message", Role: "assistant", Model: q.model(),
			Content: []antBlock{block}, StopReason: &stop,
			Usage: antUsage{InputTokens: p.usage.Input, OutputTokens: p.usage.Output},
		})
		return
	}

	e := s.startSSE(w, c)
	start := antMessage{
		ID: id, Type: "message", Role: "assistant", Model: q.model(), Content: []antBlock{},
		// Like Anthropic, message_start carries a provisional output count;
		// the final (cumulative) count is in message_delta.
		Usage: antUsage{InputTokens: p.usage.Input, OutputTokens: min(1, p.usage.Output)},
	}
	block := antBlock{Type: "text", Text: ptr("")}
	if p.tool != "" {
		block = antBlock{Type: "tool_use", ID: toolID, Name: p.tool, Input: json.RawMessage("{}")}
	}
	type m = map[string]any
	if !e.send("message_start", m{"type": "message_start", "message": start}) ||
		!e.send("content_block_start", m{"type": "content_block_start", "index": 0, "content_block": block}) ||
		!e.send("ping", m{"type": "ping"}) {
		return
	}
	ok := e.content(p.pieces, func(piece string) bool {
		delta := m{"type": "text_delta", "text": piece}
		if p.tool != "" {
			delta = m{"type": "input_json_delta", "partial_json": piece}
		}
		return e.send("content_block_delta", m{"type": "content_block_delta", "index": 0, "delta": delta})
	})
	if !ok ||
		!e.send("content_block_stop", m{"type": "content_block_stop", "index": 0}) ||
		!e.send("message_delta", m{
			"type":  "message_delta",
			"delta": m{"stop_reason": stop, "stop_sequence": nil},
			"usage": m{"output_tokens": p.usage.Output},
		}) {
		return
	}
	e.send("message_stop", m{"type": "message_stop"})
}
