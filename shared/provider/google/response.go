package google

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/synthstack/byok/shared/provider/schema"
)

type usageMetadata struct {
	PromptTokenCount        int `json:"promptTokenCount"`
	CandidatesTokenCount    int `json:"candidatesTokenCount"`
	CachedContentTokenCount int `json:"cachedContentTokenCount"`
	ThoughtsTokenCount      int `json:"thoughtsTokenCount"`
	ToolUsePromptTokenCount int `json:"toolUsePromptTokenCount"`
	TotalTokenCount         int `json:"totalTokenCount"`
}

// neutral: Gemini's prompt count includes cached tokens; thoughts are billed
// as output but reported apart from candidates.
func (u *usageMetadata) neutral() *schema.Usage {
	if u == nil {
		return nil
	}
	in := u.PromptTokenCount + u.ToolUsePromptTokenCount
	return schema.NewUsage(in, u.CandidatesTokenCount+u.ThoughtsTokenCount, u.CachedContentTokenCount, u.ThoughtsTokenCount)
}

type candidate struct {
	Content      *content `json:"content"`
	FinishReason string   `json:"finishReason"`
	Index        int      `json:"index"`
}

type generateResponse struct {
	Candidates     []candidate `json:"candidates"`
	PromptFeedback *struct {
		BlockReason string `json:"blockReason"`
	} `json:"promptFeedback"`
	UsageMetadata *usageMetadata `json:"usageMetadata"`
	ModelVersion  string         `json:"modelVersion"`
	ResponseID    string         `json:"responseId"`
}

// finish maps Gemini's finishReason; a candidate that called a function
// finishes "tool_calls" whatever Gemini says (it says STOP).
func finish(reason string, calledTool bool) string {
	switch reason {
	case "":
		return ""
	case "MAX_TOKENS":
		return "length"
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE":
		return "content_filter"
	}
	if calledTool {
		return "tool_calls"
	}
	return "stop"
}

func callID(respID string, choice, i int) string {
	if respID == "" {
		respID = "gemini"
	}
	return fmt.Sprintf("call_%s_%d_%d", respID, choice, i)
}

// split returns a candidate's visible text and its function calls (thought
// parts are not part of the answer).
func split(c *content, respID string, choice int, first int) (string, []schema.ToolCall) {
	if c == nil {
		return "", nil
	}
	var text strings.Builder
	var calls []schema.ToolCall
	for _, p := range c.Parts {
		switch {
		case p.Thought:
		case p.FunctionCall != nil:
			id := p.FunctionCall.ID
			if id == "" {
				id = callID(respID, choice, first+len(calls))
			}
			var compact bytes.Buffer
			args := "{}"
			if json.Compact(&compact, p.FunctionCall.Args) == nil && compact.String() != "null" {
				args = compact.String()
			}
			calls = append(calls, schema.ToolCall{ID: id, Type: "function", Function: schema.FunctionCall{Name: p.FunctionCall.Name, Arguments: args}})
		default:
			text.WriteString(p.Text)
		}
	}
	return text.String(), calls
}

func (Adapter) DecodeChat(body []byte, req *schema.ChatRequest) (*schema.ChatResponse, error) {
	var g generateResponse
	if err := json.Unmarshal(body, &g); err != nil {
		return nil, fmt.Errorf("%w: %v", schema.ErrBadAnswer, err)
	}
	model := g.ModelVersion
	if model == "" {
		model = req.Model
	}
	out := &schema.ChatResponse{ID: "chatcmpl-" + g.ResponseID, Object: "chat.completion", Model: model, Usage: g.UsageMetadata.neutral()}
	for _, c := range g.Candidates {
		text, calls := split(c.Content, g.ResponseID, c.Index, 0)
		msg := schema.ResponseMessage{Role: "assistant", ToolCalls: calls}
		if text != "" || len(calls) == 0 {
			msg.Content = &text
		}
		fr := finish(c.FinishReason, len(calls) > 0)
		if fr == "" {
			fr = "stop"
		}
		out.Choices = append(out.Choices, schema.Choice{Index: c.Index, Message: msg, FinishReason: fr})
	}
	if len(out.Choices) == 0 { // the prompt itself was blocked
		out.Choices = []schema.Choice{{Message: schema.ResponseMessage{Role: "assistant"}, FinishReason: "content_filter"}}
	}
	if out.Usage == nil {
		out.Usage = schema.NewUsage(0, 0, 0, 0)
	}
	return out, nil
}

// stream decodes streamGenerateContent?alt=sse: every event is a whole
// GenerateContentResponse holding the next piece of each candidate; there is
// no terminal event, so the stream is done once every candidate finished.
type stream struct {
	model    string
	id       string
	want     int
	started  bool
	finished map[int]bool
	calls    map[int]int // tool calls emitted per candidate
	usage    *schema.Usage
}

func (Adapter) NewStream(req *schema.ChatRequest) schema.StreamDecoder {
	return &stream{model: req.Model, want: req.Choices(), finished: map[int]bool{}, calls: map[int]int{}}
}

func (s *stream) Usage() *schema.Usage { return s.usage }

func (s *stream) chunk(choices []schema.ChunkChoice) schema.ChatChunk {
	return schema.ChatChunk{ID: "chatcmpl-" + s.id, Object: "chat.completion.chunk", Model: s.model, Choices: choices}
}

func (s *stream) Event(_ string, data []byte) ([]schema.ChatChunk, bool, error) {
	var g generateResponse
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, false, fmt.Errorf("%w: %v", schema.ErrBadAnswer, err)
	}
	if g.ResponseID != "" {
		s.id = g.ResponseID
	}
	if g.ModelVersion != "" {
		s.model = g.ModelVersion
	}
	if g.UsageMetadata != nil {
		s.usage = g.UsageMetadata.neutral()
	}
	var out []schema.ChatChunk
	if !s.started {
		s.started = true
		out = append(out, s.chunk([]schema.ChunkChoice{{Delta: schema.Delta{Role: "assistant", Content: schema.Ptr("")}}}))
	}
	if len(g.Candidates) == 0 && g.PromptFeedback != nil && g.PromptFeedback.BlockReason != "" {
		out = append(out, s.chunk([]schema.ChunkChoice{{FinishReason: schema.Ptr("content_filter")}}))
		return append(out, s.final()), true, nil
	}
	for _, c := range g.Candidates {
		text, calls := split(c.Content, s.id, c.Index, s.calls[c.Index])
		if text != "" {
			out = append(out, s.chunk([]schema.ChunkChoice{{Index: c.Index, Delta: schema.Delta{Content: schema.Ptr(text)}}}))
		}
		if len(calls) > 0 {
			for i := range calls {
				calls[i].Index = schema.Ptr(s.calls[c.Index] + i)
			}
			s.calls[c.Index] += len(calls)
			out = append(out, s.chunk([]schema.ChunkChoice{{Index: c.Index, Delta: schema.Delta{ToolCalls: calls}}}))
		}
		if fr := finish(c.FinishReason, s.calls[c.Index] > 0); fr != "" && !s.finished[c.Index] {
			s.finished[c.Index] = true
			out = append(out, s.chunk([]schema.ChunkChoice{{Index: c.Index, FinishReason: schema.Ptr(fr)}}))
		}
	}
	if len(s.finished) >= s.want {
		return append(out, s.final()), true, nil
	}
	return out, false, nil
}

// final is the usage chunk every decoder ends with (choices empty, as
// OpenAI's include_usage chunk).
func (s *stream) final() schema.ChatChunk {
	c := s.chunk([]schema.ChunkChoice{})
	c.Usage = s.usage
	if c.Usage == nil {
		c.Usage = schema.NewUsage(0, 0, 0, 0)
	}
	return c
}

// Embeddings (https://ai.google.dev/api/embeddings).

type embedRequest struct {
	Model                string  `json:"model,omitempty"`
	Content              content `json:"content"`
	OutputDimensionality *int    `json:"outputDimensionality,omitempty"`
}

type batchEmbedRequest struct {
	Requests []embedRequest `json:"requests"`
}

type values struct {
	Values []float64 `json:"values"`
}

func (Adapter) EmbeddingsRequest(ctx context.Context, cred schema.Credential, req *schema.EmbeddingRequest) (*http.Request, error) {
	m, err := modelPath(req.Model)
	if err != nil {
		return nil, err
	}
	if len(req.Input) == 0 {
		return nil, schema.Unsupported(Name, "an empty input")
	}
	var u string
	var body any
	if len(req.Input) == 1 {
		u = base(cred) + "/v1beta/models/" + m + ":embedContent"
		body = embedRequest{Content: content{Parts: []part{{Text: req.Input[0]}}}, OutputDimensionality: req.Dimensions}
	} else {
		u = base(cred) + "/v1beta/models/" + m + ":batchEmbedContents"
		b := batchEmbedRequest{Requests: make([]embedRequest, len(req.Input))}
		for i, in := range req.Input {
			b.Requests[i] = embedRequest{Model: "models/" + strings.TrimPrefix(req.Model, "models/"), Content: content{Parts: []part{{Text: in}}}, OutputDimensionality: req.Dimensions}
		}
		body = b
	}
	return schema.NewCall(ctx, u, body, false, cred.Key, authorize)
}

// DecodeEmbeddings: Gemini reports no token count for embeddings, so usage
// is estimated at one token per four bytes of input (docs/providers.md).
func (Adapter) DecodeEmbeddings(body []byte, req *schema.EmbeddingRequest) (*schema.EmbeddingResponse, error) {
	var r struct {
		Embedding  *values  `json:"embedding"`
		Embeddings []values `json:"embeddings"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %v", schema.ErrBadAnswer, err)
	}
	if r.Embedding != nil {
		r.Embeddings = append(r.Embeddings, *r.Embedding)
	}
	if len(r.Embeddings) != len(req.Input) {
		return nil, fmt.Errorf("%w: %d embeddings for %d inputs", schema.ErrBadAnswer, len(r.Embeddings), len(req.Input))
	}
	out := &schema.EmbeddingResponse{Object: "list", Model: req.Model, Data: make([]schema.Embedding, len(r.Embeddings))}
	for i, e := range r.Embeddings {
		out.Data[i] = schema.Embedding{Object: "embedding", Index: i, Vector: e.Values, Base64: req.EncodingFormat == "base64"}
	}
	n := 0
	for _, in := range req.Input {
		n += (len(in) + 3) / 4
	}
	out.Usage = schema.EmbedUsage{PromptTokens: n, TotalTokens: n}
	return out, nil
}
