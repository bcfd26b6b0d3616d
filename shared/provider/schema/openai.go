package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Helpers for providers whose wire format is OpenAI-shaped (Mistral, Azure
// OpenAI): they differ in details that the hooks below absorb.

// OpenAIError parses {"error":{"type","code","message"}} and the flatter
// {"message","type","code"} some OpenAI-compatible providers send; message
// may be a string or an object (Mistral's 422 detail), which is re-encoded.
func OpenAIError(body []byte) (typ, code, msg string) {
	var e struct {
		Error   json.RawMessage `json:"error"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
		Message json.RawMessage `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &e) != nil {
		return "", "", ""
	}
	if len(e.Error) > 0 && e.Error[0] == '{' {
		var in struct {
			Type    string          `json:"type"`
			Code    json.RawMessage `json:"code"`
			Message json.RawMessage `json:"message"`
		}
		if json.Unmarshal(e.Error, &in) == nil {
			return in.Type, scalar(in.Code), text(in.Message)
		}
	}
	msg = text(e.Message)
	if msg == "" {
		msg = text(e.Detail)
	}
	return e.Type, scalar(e.Code), msg
}

func scalar(b json.RawMessage) string {
	var s string
	if json.Unmarshal(b, &s) == nil {
		return s
	}
	if len(b) > 0 && b[0] >= '0' && b[0] <= '9' {
		return string(b)
	}
	return ""
}

func text(b json.RawMessage) string {
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return ""
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		return s
	}
	var c bytes.Buffer
	if json.Compact(&c, b) == nil {
		return c.String()
	}
	return ""
}

// ClassifyOpenAIShaped is the OpenAI vocabulary: ClassByStatus plus 429
// insufficient_quota (billing) and Retry-After (or retry-after-ms).
func ClassifyOpenAIShaped(status int, h http.Header, body []byte) Verdict {
	v := MakeVerdict(ClassByStatus(status))
	v.Type, v.Code, v.Message = OpenAIError(body)
	v.RetryAfter = h.Get("Retry-After")
	if v.RetryAfter == "" {
		if ms := h.Get("retry-after-ms"); ms != "" {
			v.RetryAfter = msToSeconds(ms)
		}
	}
	if status == http.StatusTooManyRequests && (v.Code == "insufficient_quota" || v.Type == "insufficient_quota") {
		v.Class, v.Status, v.Reason = ClassBilling, StatusInvalid, ReasonQuotaExceeded
	}
	if status == http.StatusForbidden {
		v.Detail = v.Message
	}
	return v
}

func msToSeconds(ms string) string {
	n := 0
	for i := 0; i < len(ms); i++ {
		if ms[i] < '0' || ms[i] > '9' {
			break
		}
		n = n*10 + int(ms[i]-'0')
		if n > 1e9 {
			break
		}
	}
	return fmt.Sprint((n + 999) / 1000)
}

// oaiMessage is an answer's message whose content may be a string or a list
// of chunks (Mistral's reasoning models answer [{"type":"thinking"},{"type":"text"}]).
type oaiMessage struct {
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	ToolCalls []ToolCall      `json:"tool_calls"`
}

func chunkText(b json.RawMessage) (*string, bool) {
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil, true
	}
	var s string
	if json.Unmarshal(b, &s) == nil {
		return &s, true
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(b, &parts) != nil {
		return nil, false
	}
	var t strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			t.WriteString(p.Text)
		}
	}
	r := t.String()
	return &r, true
}

// DecodeOpenAIChat reads an OpenAI-shaped chat.completion; finish maps the
// provider's finish reasons onto OpenAI's.
func DecodeOpenAIChat(body []byte, model string, finish func(string) string) (*ChatResponse, error) {
	var r struct {
		ID      string `json:"id"`
		Created int64  `json:"created"`
		Model   string `json:"model"`
		Choices []struct {
			Index        int        `json:"index"`
			Message      oaiMessage `json:"message"`
			FinishReason string     `json:"finish_reason"`
		} `json:"choices"`
		Usage *Usage `json:"usage"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	out := &ChatResponse{ID: r.ID, Object: "chat.completion", Created: r.Created, Model: r.Model, Usage: r.Usage}
	if out.Model == "" {
		out.Model = model
	}
	if out.Usage == nil {
		out.Usage = NewUsage(0, 0, 0, 0)
	}
	for _, c := range r.Choices {
		content, ok := chunkText(c.Message.Content)
		if !ok {
			return nil, fmt.Errorf("%w: message content is neither text nor chunks", ErrBadAnswer)
		}
		for i := range c.Message.ToolCalls {
			c.Message.ToolCalls[i].Index = nil
			if c.Message.ToolCalls[i].Type == "" {
				c.Message.ToolCalls[i].Type = "function"
			}
		}
		out.Choices = append(out.Choices, Choice{Index: c.Index, FinishReason: finish(c.FinishReason),
			Message: ResponseMessage{Role: "assistant", Content: content, ToolCalls: c.Message.ToolCalls}})
	}
	return out, nil
}

// OpenAIStream decodes an OpenAI-shaped SSE stream ("data: {chunk}" ...
// "data: [DONE]"). Usage is taken off the chunk that carries it and sent in
// the final usage chunk, so every adapter's stream ends the same way.
type OpenAIStream struct {
	Model  string
	Finish func(string) string
	id     string
	usage  *Usage
}

func (s *OpenAIStream) Usage() *Usage { return s.usage }

func (s *OpenAIStream) Event(_ string, data []byte) ([]ChatChunk, bool, error) {
	if bytes.Equal(bytes.TrimSpace(data), []byte("[DONE]")) {
		u := s.usage
		if u == nil {
			u = NewUsage(0, 0, 0, 0)
		}
		return []ChatChunk{{ID: s.id, Object: "chat.completion.chunk", Model: s.Model, Choices: []ChunkChoice{}, Usage: u}}, true, nil
	}
	var c struct {
		ID      string `json:"id"`
		Created int64  `json:"created"`
		Model   string `json:"model"`
		Choices []struct {
			Index int `json:"index"`
			Delta struct {
				Role      string          `json:"role"`
				Content   json.RawMessage `json:"content"`
				ToolCalls []ToolCall      `json:"tool_calls"`
			} `json:"delta"`
			FinishReason *string `json:"finish_reason"`
		} `json:"choices"`
		Usage *Usage `json:"usage"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, false, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	if c.ID != "" {
		s.id = c.ID
	}
	if c.Model != "" {
		s.Model = c.Model
	}
	if c.Usage != nil {
		s.usage = c.Usage
	}
	if len(c.Choices) == 0 {
		return nil, false, nil // usage-only or filter-results chunk
	}
	out := ChatChunk{ID: s.id, Object: "chat.completion.chunk", Created: c.Created, Model: s.Model}
	for _, ch := range c.Choices {
		content, ok := chunkText(ch.Delta.Content)
		if !ok {
			return nil, false, fmt.Errorf("%w: delta content is neither text nor chunks", ErrBadAnswer)
		}
		cc := ChunkChoice{Index: ch.Index, Delta: Delta{Role: ch.Delta.Role, Content: content, ToolCalls: ch.Delta.ToolCalls}}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			cc.FinishReason = Ptr(s.Finish(*ch.FinishReason))
		}
		out.Choices = append(out.Choices, cc)
	}
	return []ChatChunk{out}, false, nil
}

// DecodeOpenAIEmbeddings reads an OpenAI-shaped embeddings list.
func DecodeOpenAIEmbeddings(body []byte, req *EmbeddingRequest) (*EmbeddingResponse, error) {
	var r struct {
		Model string `json:"model"`
		Data  []struct {
			Index     int       `json:"index"`
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
		Usage EmbedUsage `json:"usage"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	if len(r.Data) != len(req.Input) {
		return nil, fmt.Errorf("%w: %d embeddings for %d inputs", ErrBadAnswer, len(r.Data), len(req.Input))
	}
	out := &EmbeddingResponse{Object: "list", Model: r.Model, Usage: r.Usage, Data: make([]Embedding, len(r.Data))}
	if out.Model == "" {
		out.Model = req.Model
	}
	for i, d := range r.Data {
		out.Data[i] = Embedding{Object: "embedding", Index: d.Index, Vector: d.Embedding, Base64: req.EncodingFormat == "base64"}
	}
	return out, nil
}

// SameFinish is the identity finish-reason mapping.
func SameFinish(s string) string { return s }
