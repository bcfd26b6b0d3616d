// Package mistral is the Mistral AI adapter (https://docs.mistral.ai/api/):
// OpenAI-shaped chat completions and embeddings, but Mistral refuses unknown
// fields with a 422, so the body is built from the fields it documents only.
package mistral

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"

	"github.com/synthstack/byok/shared/provider/schema"
)

// Name is the provider's identifier.
const Name schema.Name = "mistral"

// DefaultBaseURL is MISTRAL_BASE_URL's default (with /v1, like OpenAI's).
const DefaultBaseURL = "https://api.mistral.ai/v1"

// Adapter is the Mistral adapter; the zero value is ready.
type Adapter struct{}

func (Adapter) Name() schema.Name { return Name }

// CheckFormat: Mistral keys are 32 letters and digits.
func (Adapter) CheckFormat(key string) error {
	if len(key) != 32 || !alnum(key) {
		return &schema.FormatError{Msg: "Mistral API keys are 32 letters and digits"}
	}
	return nil
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (Adapter) PriceModel(model string) string { return model }

func base(cred schema.Credential) string { return schema.BaseURL(cred, DefaultBaseURL) }

func authorize(req *http.Request, key string) { req.Header.Set("Authorization", "Bearer "+key) }

func (Adapter) ValidationRequest(ctx context.Context, cred schema.Credential) (*http.Request, error) {
	return schema.NewKeyedGet(ctx, base(cred)+"/models", cred.Key, authorize)
}

func (a Adapter) ClassifyValidation(status int, h http.Header, body []byte) schema.Verdict {
	return a.Classify(status, h, body)
}

// Classify: Mistral answers 401 {"message":"Unauthorized"} for a bad key,
// 429 for rate limits, and 429/402 naming a usage limit or billing when the
// workspace ran out (billing class).
func (Adapter) Classify(status int, h http.Header, body []byte) schema.Verdict {
	v := schema.ClassifyOpenAIShaped(status, h, body)
	m := strings.ToLower(v.Message)
	if status == http.StatusTooManyRequests && (strings.Contains(m, "monthly") || strings.Contains(m, "quota") || strings.Contains(m, "billing") || strings.Contains(m, "usage limit")) {
		v.Class, v.Status, v.Reason = schema.ClassBilling, schema.StatusInvalid, schema.ReasonQuotaExceeded
	}
	return v
}

// Native request shapes (https://docs.mistral.ai/api/#tag/chat).

type message struct {
	Role       string     `json:"role"`
	Content    any        `json:"content"`
	ToolCalls  []toolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	Name       string     `json:"name,omitempty"`
}

type toolCall struct {
	ID       string              `json:"id"`
	Type     string              `json:"type"`
	Function schema.FunctionCall `json:"function"`
}

type chunk struct {
	Type     string `json:"type"`
	Text     string `json:"text,omitempty"`
	ImageURL string `json:"image_url,omitempty"`
}

type tool struct {
	Type     string             `json:"type"`
	Function schema.FunctionDef `json:"function"`
}

type chatRequest struct {
	Model             string                 `json:"model"`
	Messages          []message              `json:"messages"`
	Temperature       *float64               `json:"temperature,omitempty"`
	TopP              *float64               `json:"top_p,omitempty"`
	MaxTokens         *int                   `json:"max_tokens,omitempty"`
	Stream            bool                   `json:"stream,omitempty"`
	Stop              []string               `json:"stop,omitempty"`
	RandomSeed        *int64                 `json:"random_seed,omitempty"`
	ResponseFormat    *schema.ResponseFormat `json:"response_format,omitempty"`
	Tools             []tool                 `json:"tools,omitempty"`
	ToolChoice        any                    `json:"tool_choice,omitempty"`
	PresencePenalty   *float64               `json:"presence_penalty,omitempty"`
	FrequencyPenalty  *float64               `json:"frequency_penalty,omitempty"`
	N                 *int                   `json:"n,omitempty"`
	ParallelToolCalls *bool                  `json:"parallel_tool_calls,omitempty"`
}

// ToolCallID returns id if Mistral accepts it (9 letters or digits), else
// a stable 9-character digest of it, so ids minted by another provider keep
// pairing a call with its result.
func ToolCallID(id string) string {
	if len(id) == 9 && alnum(id) {
		return id
	}
	const digits = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	sum := sha256.Sum256([]byte(id))
	out := make([]byte, 9)
	for i := range out {
		out[i] = digits[int(sum[i])%len(digits)]
	}
	return string(out)
}

// Native builds Mistral's chat body for req (exported for goldens and benchmarks).
func Native(req *schema.ChatRequest) (*chatRequest, error) {
	switch {
	case req.Logprobs != nil && *req.Logprobs, req.TopLogprobs != nil:
		return nil, schema.Unsupported(Name, "logprobs")
	case len(req.LogitBias) > 0 && string(req.LogitBias) != "null":
		return nil, schema.Unsupported(Name, "logit_bias")
	}
	for _, m := range req.Modalities {
		if m != "text" {
			return nil, schema.Unsupported(Name, "output modality "+m)
		}
	}
	out := &chatRequest{
		Model: req.Model, Temperature: req.Temperature, TopP: req.TopP, MaxTokens: req.OutputCap(),
		Stream: req.Stream, Stop: req.Stop, RandomSeed: req.Seed, PresencePenalty: req.PresencePenalty,
		FrequencyPenalty: req.FrequencyPenalty, N: req.N, ParallelToolCalls: req.ParallelToolCalls,
		Messages: make([]message, 0, len(req.Messages)),
	}
	if rf := req.ResponseFormat; rf != nil {
		switch rf.Type {
		case "text", "json_object", "json_schema":
			out.ResponseFormat = rf
		default:
			return nil, schema.Unsupported(Name, "response_format "+rf.Type)
		}
	}
	for _, m := range req.Messages {
		nm := message{Role: m.Role}
		switch m.Role {
		case "system", "developer":
			nm.Role, nm.Content = "system", m.Content.String()
		case "user":
			c, err := userContent(m.Content)
			if err != nil {
				return nil, err
			}
			nm.Content = c
		case "assistant":
			nm.Content = m.Content.String()
			for _, tc := range m.ToolCalls {
				nm.ToolCalls = append(nm.ToolCalls, toolCall{ID: ToolCallID(tc.ID), Type: "function", Function: tc.Function})
			}
		case "tool":
			nm.Content, nm.ToolCallID, nm.Name = m.Content.String(), ToolCallID(m.ToolCallID), m.Name
		default:
			return nil, schema.Unsupported(Name, "message role "+m.Role)
		}
		out.Messages = append(out.Messages, nm)
	}
	for _, t := range req.Tools {
		if t.Type != "function" {
			return nil, schema.Unsupported(Name, "tools of type "+t.Type)
		}
		out.Tools = append(out.Tools, tool{Type: "function", Function: t.Function})
	}
	if tc := req.ToolChoice; tc != nil {
		switch tc.Mode {
		case "auto", "none", "required":
			out.ToolChoice = tc.Mode
		case "function":
			out.ToolChoice = map[string]any{"type": "function", "function": map[string]string{"name": tc.Function}}
		default:
			return nil, schema.Unsupported(Name, "tool_choice "+tc.Mode)
		}
	}
	return out, nil
}

func userContent(c schema.Content) (any, error) {
	if c.Parts == nil {
		return c.String(), nil
	}
	out := make([]chunk, 0, len(c.Parts))
	for _, p := range c.Parts {
		switch p.Type {
		case "text":
			out = append(out, chunk{Type: "text", Text: p.Text})
		case "image_url":
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return nil, schema.Unsupported(Name, "an image_url part without a url")
			}
			out = append(out, chunk{Type: "image_url", ImageURL: p.ImageURL.URL})
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
	return schema.NewCall(ctx, base(cred)+"/chat/completions", body, req.Stream, cred.Key, authorize)
}

// finish: Mistral's "model_length" (context window full) is OpenAI's length.
func finish(s string) string {
	switch s {
	case "model_length":
		return "length"
	case "error":
		return "stop"
	}
	return s
}

func (Adapter) DecodeChat(body []byte, req *schema.ChatRequest) (*schema.ChatResponse, error) {
	return schema.DecodeOpenAIChat(body, req.Model, finish)
}

func (Adapter) NewStream(req *schema.ChatRequest) schema.StreamDecoder {
	return &schema.OpenAIStream{Model: req.Model, Finish: finish}
}

type embedRequest struct {
	Model           string   `json:"model"`
	Input           []string `json:"input"`
	OutputDimension *int     `json:"output_dimension,omitempty"`
}

func (Adapter) EmbeddingsRequest(ctx context.Context, cred schema.Credential, req *schema.EmbeddingRequest) (*http.Request, error) {
	if len(req.Input) == 0 {
		return nil, schema.Unsupported(Name, "an empty input")
	}
	return schema.NewCall(ctx, base(cred)+"/embeddings", embedRequest{Model: req.Model, Input: req.Input, OutputDimension: req.Dimensions}, false, cred.Key, authorize)
}

func (Adapter) DecodeEmbeddings(body []byte, req *schema.EmbeddingRequest) (*schema.EmbeddingResponse, error) {
	return schema.DecodeOpenAIEmbeddings(body, req)
}
