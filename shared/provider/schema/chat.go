package schema

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
)

// ChatRequest is an OpenAI Chat Completions request
// (https://platform.openai.com/docs/api-reference/chat/create), the neutral
// input of every adapter. Anthropic Messages callers reach it through
// shared/translate. Fields no adapter reads are not modelled: adapters build
// their native bodies from these fields only.
type ChatRequest struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	Stream              bool            `json:"stream,omitempty"`
	MaxTokens           *int            `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int            `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	N                   *int            `json:"n,omitempty"`
	Stop                StringList      `json:"stop,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	Tools               []Tool          `json:"tools,omitempty"`
	ToolChoice          *ToolChoice     `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat      *ResponseFormat `json:"response_format,omitempty"`
	Logprobs            *bool           `json:"logprobs,omitempty"`
	TopLogprobs         *int            `json:"top_logprobs,omitempty"`
	LogitBias           json.RawMessage `json:"logit_bias,omitempty"`
	Modalities          []string        `json:"modalities,omitempty"`
	ReasoningEffort     string          `json:"reasoning_effort,omitempty"`
	User                string          `json:"user,omitempty"`
}

// OutputCap is max_completion_tokens, else max_tokens (nil when neither).
func (r *ChatRequest) OutputCap() *int {
	if r.MaxCompletionTokens != nil {
		return r.MaxCompletionTokens
	}
	return r.MaxTokens
}

// Choices is n (1 when unset).
func (r *ChatRequest) Choices() int {
	if r.N == nil {
		return 1
	}
	return *r.N
}

// Message is one chat message. Content is a string or a list of parts.
type Message struct {
	Role       string     `json:"role"`
	Content    Content    `json:"content"`
	Name       string     `json:"name,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// Content is a message's content: Text when it was a string, Parts when it
// was an array; neither for null/absent.
type Content struct {
	Text  *string
	Parts []Part
}

// TextContent returns string content.
func TextContent(s string) Content { return Content{Text: &s} }

// IsZero reports absent/null content.
func (c Content) IsZero() bool { return c.Text == nil && c.Parts == nil }

// String joins the text of every text part (or returns the string).
func (c Content) String() string {
	if c.Text != nil {
		return *c.Text
	}
	var b bytes.Buffer
	for _, p := range c.Parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

func (c Content) MarshalJSON() ([]byte, error) {
	switch {
	case c.Text != nil:
		return json.Marshal(*c.Text)
	case c.Parts != nil:
		return json.Marshal(c.Parts)
	}
	return []byte("null"), nil
}

func (c *Content) UnmarshalJSON(b []byte) error {
	*c = Content{}
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		c.Text = &s
		return nil
	case len(b) > 0 && b[0] == '[':
		c.Parts = []Part{}
		return json.Unmarshal(b, &c.Parts)
	}
	return errors.New("content must be a string, an array of parts or null")
}

// Part is one content part: text, image_url, input_audio or file.
type Part struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is an image by URL or data: URL.
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

// ToolCall is an assistant's call of a function tool. Index is set in stream deltas.
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and carries its JSON arguments as text.
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// Tool is a tool definition; only "function" tools exist in the neutral form.
type Tool struct {
	Type     string      `json:"type"`
	Function FunctionDef `json:"function"`
}

// FunctionDef is a function tool's declaration; Parameters is a JSON Schema.
type FunctionDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ToolChoice is "auto", "none", "required", or a named function.
type ToolChoice struct {
	Mode     string // auto, none, required, function
	Function string // when Mode is "function"
}

func (t ToolChoice) MarshalJSON() ([]byte, error) {
	if t.Mode == "function" {
		return json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": t.Function}})
	}
	return json.Marshal(t.Mode)
}

func (t *ToolChoice) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &t.Mode)
	}
	var o struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	if o.Type != "function" || o.Function.Name == "" {
		return errors.New(`tool_choice must be "auto", "none", "required" or {"type":"function","function":{"name":...}}`)
	}
	*t = ToolChoice{Mode: "function", Function: o.Function.Name}
	return nil
}

// ResponseFormat is {"type":"text"|"json_object"|"json_schema", "json_schema":{...}}.
type ResponseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *JSONSchema `json:"json_schema,omitempty"`
}

// JSONSchema is response_format.json_schema.
type JSONSchema struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema,omitempty"`
	Strict *bool           `json:"strict,omitempty"`
}

// StringList is a string or an array of strings.
type StringList []string

func (s *StringList) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*s = nil
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = StringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("must be a string or an array of strings")
	}
	*s = many
	return nil
}

// ChatResponse is an OpenAI chat.completion object.
type ChatResponse struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []Choice `json:"choices"`
	Usage   *Usage   `json:"usage,omitempty"`
}

// Choice is one answer.
type Choice struct {
	Index        int             `json:"index"`
	Message      ResponseMessage `json:"message"`
	FinishReason string          `json:"finish_reason"`
}

// ResponseMessage is the assistant's answer; Content is null for pure tool calls.
type ResponseMessage struct {
	Role      string     `json:"role"`
	Content   *string    `json:"content"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// Usage is OpenAI's usage object with the cached and reasoning details.
type Usage struct {
	PromptTokens            int                      `json:"prompt_tokens"`
	CompletionTokens        int                      `json:"completion_tokens"`
	TotalTokens             int                      `json:"total_tokens"`
	PromptTokensDetails     *PromptTokensDetails     `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *CompletionTokensDetails `json:"completion_tokens_details,omitempty"`
}

// PromptTokensDetails: cached input tokens (part of PromptTokens).
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// CompletionTokensDetails: reasoning tokens (part of CompletionTokens).
type CompletionTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// NewUsage builds a Usage; cached and reasoning are included in in/out.
func NewUsage(in, out, cached, reasoning int) *Usage {
	// A provider's detail can never exceed the total it belongs to.
	cached, reasoning = max(0, min(cached, in)), max(0, min(reasoning, out))
	u := &Usage{PromptTokens: in, CompletionTokens: out, TotalTokens: in + out}
	if cached > 0 {
		u.PromptTokensDetails = &PromptTokensDetails{CachedTokens: cached}
	}
	if reasoning > 0 {
		u.CompletionTokensDetails = &CompletionTokensDetails{ReasoningTokens: reasoning}
	}
	return u
}

// ChatChunk is an OpenAI chat.completion.chunk.
type ChatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"`
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []ChunkChoice `json:"choices"`
	Usage   *Usage        `json:"usage,omitempty"`
}

// ChunkChoice is one choice's delta.
type ChunkChoice struct {
	Index        int     `json:"index"`
	Delta        Delta   `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

// Delta is a streamed piece of the assistant's message.
type Delta struct {
	Role      string     `json:"role,omitempty"`
	Content   *string    `json:"content,omitempty"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// EmbeddingRequest is an OpenAI embeddings request.
type EmbeddingRequest struct {
	Model          string     `json:"model"`
	Input          StringList `json:"input"`
	EncodingFormat string     `json:"encoding_format,omitempty"`
	Dimensions     *int       `json:"dimensions,omitempty"`
	User           string     `json:"user,omitempty"`
}

// EmbeddingResponse is an OpenAI embeddings list.
type EmbeddingResponse struct {
	Object string      `json:"object"`
	Data   []Embedding `json:"data"`
	Model  string      `json:"model"`
	Usage  EmbedUsage  `json:"usage"`
}

// Embedding is one vector. Base64 (encoding_format "base64") replaces
// Vector on the wire when set.
type Embedding struct {
	Object string    `json:"object"`
	Index  int       `json:"index"`
	Vector []float64 `json:"-"`
	Base64 bool      `json:"-"`
}

func (e Embedding) MarshalJSON() ([]byte, error) {
	var v any = e.Vector
	if e.Vector == nil {
		v = []float64{}
	}
	if e.Base64 {
		v = EncodeBase64(e.Vector)
	}
	return json.Marshal(struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	}{"embedding", e.Index, v})
}

// EmbedUsage is the embeddings usage object.
type EmbedUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// EncodeBase64 is OpenAI's base64 embedding form: little-endian float32s.
func EncodeBase64(v []float64) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(f)))
	}
	return base64.StdEncoding.EncodeToString(b)
}

// Ptr returns &v.
func Ptr[T any](v T) *T { return &v }
