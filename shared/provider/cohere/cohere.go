// Package cohere is the Cohere adapter (https://docs.cohere.com/reference/chat):
// the v2 chat API (SSE stream of typed events such as content-delta) and
// v2 embed.
package cohere

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/synthstack/byok/shared/provider/schema"
)

// Name is the provider's identifier.
const Name schema.Name = "cohere"

// DefaultBaseURL is COHERE_BASE_URL's default (no version segment).
const DefaultBaseURL = "https://api.cohere.com"

// Adapter is the Cohere adapter; the zero value is ready.
type Adapter struct{}

func (Adapter) Name() schema.Name { return Name }

// CheckFormat: Cohere keys are 40 letters and digits.
func (Adapter) CheckFormat(key string) error {
	if len(key) != 40 {
		return &schema.FormatError{Msg: "Cohere API keys are 40 letters and digits"}
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return &schema.FormatError{Msg: "Cohere API keys are 40 letters and digits"}
		}
	}
	return nil
}

func (Adapter) PriceModel(model string) string { return model }

func base(cred schema.Credential) string { return schema.BaseURL(cred, DefaultBaseURL) }

func authorize(req *http.Request, key string) {
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("X-Client-Name", "byok")
}

// ValidationRequest is POST /v1/check-api-key (https://docs.cohere.com/reference/check-api-key).
func (Adapter) ValidationRequest(ctx context.Context, cred schema.Credential) (*http.Request, error) {
	return schema.NewCall(ctx, base(cred)+"/v1/check-api-key", struct{}{}, false, cred.Key, authorize)
}

// ClassifyValidation: check-api-key may answer 200 {"valid": false}.
func (a Adapter) ClassifyValidation(status int, h http.Header, body []byte) schema.Verdict {
	if status == http.StatusOK {
		var r struct {
			Valid *bool `json:"valid"`
		}
		if json.Unmarshal(body, &r) == nil && r.Valid != nil && !*r.Valid {
			return schema.MakeVerdict(schema.ClassAuth, schema.StatusInvalid, schema.ReasonUnauthorized)
		}
	}
	return a.Classify(status, h, body)
}

// Classify: Cohere's errors are {"id","message"}; 498 is its "invalid
// token" status, 401 a bad key; a 429 naming a trial key's monthly limit is
// quota (billing), other 429s rate limits; 402 billing; 5xx unavailable.
func (Adapter) Classify(status int, h http.Header, body []byte) schema.Verdict {
	v := schema.ClassifyOpenAIShaped(status, h, body)
	m := strings.ToLower(v.Message)
	switch {
	case status == 498:
		v.Class, v.Status, v.Reason = schema.ClassAuth, schema.StatusInvalid, schema.ReasonUnauthorized
	case status == http.StatusTooManyRequests && (strings.Contains(m, "/ month") || strings.Contains(m, "per month") || strings.Contains(m, "monthly")):
		v.Class, v.Status, v.Reason = schema.ClassBilling, schema.StatusInvalid, schema.ReasonQuotaExceeded
	case status == 499:
		v.Class, v.Status, v.Reason = schema.ClassUnavailable, schema.StatusUnchecked, schema.ReasonUnavailable
	}
	return v
}

// Native request shapes (https://docs.cohere.com/reference/chat).

type contentItem struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *imageURL `json:"image_url,omitempty"`
}

type imageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

type toolCall struct {
	ID       string              `json:"id"`
	Type     string              `json:"type"`
	Function schema.FunctionCall `json:"function"`
}

type message struct {
	Role       string     `json:"role"`
	Content    any        `json:"content,omitempty"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolPlan   string     `json:"tool_plan,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

type tool struct {
	Type     string             `json:"type"`
	Function schema.FunctionDef `json:"function"`
}

type responseFormat struct {
	Type       string          `json:"type"`
	JSONSchema json.RawMessage `json:"json_schema,omitempty"`
}

type chatRequest struct {
	Model            string          `json:"model"`
	Messages         []message       `json:"messages"`
	Tools            []tool          `json:"tools,omitempty"`
	Stream           bool            `json:"stream"`
	ResponseFormat   *responseFormat `json:"response_format,omitempty"`
	MaxTokens        *int            `json:"max_tokens,omitempty"`
	StopSequences    []string        `json:"stop_sequences,omitempty"`
	Temperature      *float64        `json:"temperature,omitempty"`
	Seed             *int64          `json:"seed,omitempty"`
	FrequencyPenalty *float64        `json:"frequency_penalty,omitempty"`
	PresencePenalty  *float64        `json:"presence_penalty,omitempty"`
	P                *float64        `json:"p,omitempty"`
	ToolChoice       string          `json:"tool_choice,omitempty"`
	Logprobs         *bool           `json:"logprobs,omitempty"`
}

// Native builds Cohere's v2 chat body for req (exported for goldens and benchmarks).
func Native(req *schema.ChatRequest) (*chatRequest, error) {
	switch {
	case req.Choices() != 1:
		return nil, schema.Unsupported(Name, "n other than 1")
	case req.TopLogprobs != nil:
		return nil, schema.Unsupported(Name, "top_logprobs")
	case len(req.LogitBias) > 0 && string(req.LogitBias) != "null":
		return nil, schema.Unsupported(Name, "logit_bias")
	}
	for _, m := range req.Modalities {
		if m != "text" {
			return nil, schema.Unsupported(Name, "output modality "+m)
		}
	}
	out := &chatRequest{
		Model: req.Model, Stream: req.Stream, MaxTokens: req.OutputCap(), StopSequences: req.Stop,
		Temperature: req.Temperature, Seed: req.Seed, FrequencyPenalty: req.FrequencyPenalty,
		PresencePenalty: req.PresencePenalty, P: req.TopP, Logprobs: req.Logprobs,
		Messages: make([]message, 0, len(req.Messages)),
	}
	for _, m := range req.Messages {
		switch m.Role {
		case "system", "developer":
			out.Messages = append(out.Messages, message{Role: "system", Content: m.Content.String()})
		case "user":
			c, err := userContent(m.Content)
			if err != nil {
				return nil, err
			}
			out.Messages = append(out.Messages, message{Role: "user", Content: c})
		case "assistant":
			nm := message{Role: "assistant"}
			text := m.Content.String()
			for _, tc := range m.ToolCalls {
				nm.ToolCalls = append(nm.ToolCalls, toolCall{ID: tc.ID, Type: "function", Function: tc.Function})
			}
			if len(nm.ToolCalls) > 0 {
				nm.ToolPlan = text // Cohere carries the text before tool calls as its plan
			} else {
				nm.Content = text
			}
			out.Messages = append(out.Messages, nm)
		case "tool":
			out.Messages = append(out.Messages, message{Role: "tool", ToolCallID: m.ToolCallID, Content: m.Content.String()})
		default:
			return nil, schema.Unsupported(Name, "message role "+m.Role)
		}
	}
	for _, t := range req.Tools {
		if t.Type != "function" {
			return nil, schema.Unsupported(Name, "tools of type "+t.Type)
		}
		out.Tools = append(out.Tools, tool{Type: "function", Function: schema.FunctionDef{Name: t.Function.Name, Description: t.Function.Description, Parameters: t.Function.Parameters}})
	}
	if tc := req.ToolChoice; tc != nil {
		switch tc.Mode {
		case "auto":
		case "none":
			out.ToolChoice = "NONE"
		case "required":
			out.ToolChoice = "REQUIRED"
		default:
			return nil, schema.Unsupported(Name, "tool_choice naming one function")
		}
	}
	if rf := req.ResponseFormat; rf != nil {
		switch rf.Type {
		case "text", "":
		case "json_object":
			out.ResponseFormat = &responseFormat{Type: "json_object"}
		case "json_schema":
			out.ResponseFormat = &responseFormat{Type: "json_object"}
			if rf.JSONSchema != nil {
				out.ResponseFormat.JSONSchema = rf.JSONSchema.Schema
			}
		default:
			return nil, schema.Unsupported(Name, "response_format "+rf.Type)
		}
	}
	return out, nil
}

func userContent(c schema.Content) (any, error) {
	if c.Parts == nil {
		return c.String(), nil
	}
	out := make([]contentItem, 0, len(c.Parts))
	for _, p := range c.Parts {
		switch p.Type {
		case "text":
			out = append(out, contentItem{Type: "text", Text: p.Text})
		case "image_url":
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return nil, schema.Unsupported(Name, "an image_url part without a url")
			}
			out = append(out, contentItem{Type: "image_url", ImageURL: &imageURL{URL: p.ImageURL.URL, Detail: p.ImageURL.Detail}})
		default:
			return nil, schema.Unsupported(Name, "content parts of type "+p.Type)
		}
	}
	return out, nil
}

func (Adapter) ChatRequest(ctx context.Context, cred schema.Credential, req *schema.ChatRequest) (*http.Request, error) {
	body, err := Native(req)
	if err != nil {
		return nil, err
	}
	return schema.NewCall(ctx, base(cred)+"/v2/chat", body, req.Stream, cred.Key, authorize)
}

// Answers.

type usage struct {
	BilledUnits *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"billed_units"`
	Tokens *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"tokens"`
	CachedTokens int `json:"cached_tokens"`
}

// neutral prefers billed units (what Cohere charges) over raw token counts.
func (u *usage) neutral() *schema.Usage {
	switch {
	case u == nil:
		return schema.NewUsage(0, 0, 0, 0)
	case u.BilledUnits != nil: // billed units already net of what the cache saved
		return schema.NewUsage(u.BilledUnits.InputTokens, u.BilledUnits.OutputTokens, 0, 0)
	case u.Tokens != nil:
		return schema.NewUsage(u.Tokens.InputTokens, u.Tokens.OutputTokens, u.CachedTokens, 0)
	}
	return schema.NewUsage(0, 0, 0, 0)
}

func finish(s string) string {
	switch s {
	case "COMPLETE", "STOP_SEQUENCE":
		return "stop"
	case "MAX_TOKENS":
		return "length"
	case "TOOL_CALL":
		return "tool_calls"
	case "":
		return ""
	}
	return "stop" // ERROR, TIMEOUT
}

type chatResponse struct {
	ID           string `json:"id"`
	FinishReason string `json:"finish_reason"`
	Message      struct {
		Role    string `json:"role"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		ToolPlan  string     `json:"tool_plan"`
		ToolCalls []toolCall `json:"tool_calls"`
	} `json:"message"`
	Usage *usage `json:"usage"`
}

func (Adapter) DecodeChat(body []byte, req *schema.ChatRequest) (*schema.ChatResponse, error) {
	var r chatResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", schema.ErrBadAnswer, err)
	}
	var text strings.Builder
	for _, c := range r.Message.Content {
		if c.Type == "text" {
			text.WriteString(c.Text)
		}
	}
	msg := schema.ResponseMessage{Role: "assistant"}
	for _, tc := range r.Message.ToolCalls {
		msg.ToolCalls = append(msg.ToolCalls, schema.ToolCall{ID: tc.ID, Type: "function", Function: tc.Function})
	}
	t := text.String()
	if t == "" && len(msg.ToolCalls) > 0 {
		t = r.Message.ToolPlan
	}
	if t != "" || len(msg.ToolCalls) == 0 {
		msg.Content = &t
	}
	fr := finish(r.FinishReason)
	if fr == "" {
		fr = "stop"
	}
	return &schema.ChatResponse{ID: r.ID, Object: "chat.completion", Model: req.Model,
		Choices: []schema.Choice{{Message: msg, FinishReason: fr}}, Usage: r.Usage.neutral()}, nil
}

// stream decodes the v2 chat stream: message-start, content-start,
// content-delta, content-end, tool-plan-delta, tool-call-start,
// tool-call-delta, tool-call-end, citation-*, message-end.
type stream struct {
	model string
	id    string
	usage *schema.Usage
	calls int
}

func (Adapter) NewStream(req *schema.ChatRequest) schema.StreamDecoder {
	return &stream{model: req.Model}
}

func (s *stream) Usage() *schema.Usage { return s.usage }

func (s *stream) chunk(d schema.Delta, fr *string) schema.ChatChunk {
	return schema.ChatChunk{ID: s.id, Object: "chat.completion.chunk", Model: s.model, Choices: []schema.ChunkChoice{{Delta: d, FinishReason: fr}}}
}

type event struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	Index int    `json:"index"`
	Delta struct {
		Message struct {
			// An array in message-start, an object in content-* events.
			Content   json.RawMessage `json:"content"`
			ToolPlan  string          `json:"tool_plan"`
			ToolCalls json.RawMessage `json:"tool_calls"` // likewise
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
		Error        string `json:"error"`
		Usage        *usage `json:"usage"`
	} `json:"delta"`
}

func (s *stream) Event(name string, data []byte) ([]schema.ChatChunk, bool, error) {
	var e event
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, false, fmt.Errorf("%w: %v", schema.ErrBadAnswer, err)
	}
	typ := e.Type
	if typ == "" {
		typ = name
	}
	switch typ {
	case "message-start":
		if e.ID != "" {
			s.id = e.ID
		}
		return []schema.ChatChunk{s.chunk(schema.Delta{Role: "assistant", Content: schema.Ptr("")}, nil)}, false, nil
	case "content-delta":
		var c struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if err := json.Unmarshal(e.Delta.Message.Content, &c); err != nil {
			return nil, false, fmt.Errorf("%w: content-delta: %v", schema.ErrBadAnswer, err)
		}
		if c.Type == "thinking" || c.Text == "" {
			return nil, false, nil
		}
		return []schema.ChatChunk{s.chunk(schema.Delta{Content: schema.Ptr(c.Text)}, nil)}, false, nil
	case "tool-call-start", "tool-call-delta":
		var tc struct {
			ID       string `json:"id"`
			Function struct {
				Name      string `json:"name"`
				Arguments string `json:"arguments"`
			} `json:"function"`
		}
		if err := json.Unmarshal(e.Delta.Message.ToolCalls, &tc); err != nil {
			return nil, false, fmt.Errorf("%w: %s: %v", schema.ErrBadAnswer, typ, err)
		}
		if typ == "tool-call-delta" {
			if s.calls == 0 {
				return nil, false, fmt.Errorf("%w: tool-call-delta before tool-call-start", schema.ErrBadAnswer)
			}
			return []schema.ChatChunk{s.chunk(schema.Delta{ToolCalls: []schema.ToolCall{{Index: schema.Ptr(s.calls - 1),
				Function: schema.FunctionCall{Arguments: tc.Function.Arguments}}}}, nil)}, false, nil
		}
		i := s.calls
		s.calls++
		return []schema.ChatChunk{s.chunk(schema.Delta{ToolCalls: []schema.ToolCall{{Index: schema.Ptr(i), ID: tc.ID, Type: "function",
			Function: schema.FunctionCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments}}}}, nil)}, false, nil
	case "message-end":
		s.usage = e.Delta.Usage.neutral()
		fr := finish(e.Delta.FinishReason)
		if fr == "" {
			fr = "stop"
		}
		end := schema.ChatChunk{ID: s.id, Object: "chat.completion.chunk", Model: s.model, Choices: []schema.ChunkChoice{}, Usage: s.usage}
		return []schema.ChatChunk{s.chunk(schema.Delta{}, schema.Ptr(fr)), end}, true, nil
	}
	// content-start/-end, tool-plan-delta, tool-call-end, citation-*: nothing to relay.
	return nil, false, nil
}

// Embeddings (https://docs.cohere.com/reference/embed).

type embedRequest struct {
	Model           string   `json:"model"`
	Texts           []string `json:"texts"`
	InputType       string   `json:"input_type"`
	EmbeddingTypes  []string `json:"embedding_types"`
	OutputDimension *int     `json:"output_dimension,omitempty"`
}

func (Adapter) EmbeddingsRequest(ctx context.Context, cred schema.Credential, req *schema.EmbeddingRequest) (*http.Request, error) {
	if len(req.Input) == 0 || len(req.Input) > 96 {
		return nil, schema.Unsupported(Name, "an input of other than 1 to 96 texts")
	}
	// OpenAI's embeddings have no input type; search_document is Cohere's
	// choice for text that will be stored and searched.
	body := embedRequest{Model: req.Model, Texts: req.Input, InputType: "search_document", EmbeddingTypes: []string{"float"}, OutputDimension: req.Dimensions}
	return schema.NewCall(ctx, base(cred)+"/v2/embed", body, false, cred.Key, authorize)
}

func (Adapter) DecodeEmbeddings(body []byte, req *schema.EmbeddingRequest) (*schema.EmbeddingResponse, error) {
	var r struct {
		Embeddings struct {
			Float [][]float64 `json:"float"`
		} `json:"embeddings"`
		Meta struct {
			BilledUnits struct {
				InputTokens int `json:"input_tokens"`
			} `json:"billed_units"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", schema.ErrBadAnswer, err)
	}
	if len(r.Embeddings.Float) != len(req.Input) {
		return nil, fmt.Errorf("%w: %d embeddings for %d inputs", schema.ErrBadAnswer, len(r.Embeddings.Float), len(req.Input))
	}
	out := &schema.EmbeddingResponse{Object: "list", Model: req.Model, Data: make([]schema.Embedding, len(r.Embeddings.Float)),
		Usage: schema.EmbedUsage{PromptTokens: r.Meta.BilledUnits.InputTokens, TotalTokens: r.Meta.BilledUnits.InputTokens}}
	for i, v := range r.Embeddings.Float {
		out.Data[i] = schema.Embedding{Object: "embedding", Index: i, Vector: v, Base64: req.EncodingFormat == "base64"}
	}
	return out, nil
}
