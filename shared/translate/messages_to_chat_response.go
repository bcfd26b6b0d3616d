package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// ---- Anthropic response (input) ----

type anthResponse struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Model      string          `json:"model"`
	Content    []anthRespBlock `json:"content"`
	StopReason *string         `json:"stop_reason"`
	Usage      anthUsage       `json:"usage"`
	Error      *anthropicError `json:"error"`
}

type anthRespBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type anthUsage struct {
	InputTokens              *int64 `json:"input_tokens"`
	OutputTokens             *int64 `json:"output_tokens"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
}

func val(p *int64) int64 {
	if p == nil || *p < 0 {
		return 0
	}
	return *p
}

// ---- OpenAI response (output) ----

type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *chatUsage   `json:"usage,omitempty"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      chatRespMessage `json:"message"`
	Logprobs     *struct{}       `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type chatRespMessage struct {
	Role      string            `json:"role"`
	Content   *string           `json:"content"`
	Refusal   *string           `json:"refusal"`
	ToolCalls []chatToolCallOut `json:"tool_calls,omitempty"`
}

type chatToolCallOut struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type chatUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

func newChatUsage(input, cacheCreate, cacheRead, output int64) *chatUsage {
	u := &chatUsage{PromptTokens: input + cacheCreate + cacheRead, CompletionTokens: output}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	u.PromptTokensDetails.CachedTokens = cacheRead
	return u
}

// MessagesToChatResponse translates a non-streaming Anthropic Messages
// response into an OpenAI chat.completion, stamped with the current time.
// See MessagesToChatResponseAt.
func MessagesToChatResponse(body []byte, requestModel string) ([]byte, error) {
	return MessagesToChatResponseAt(body, requestModel, time.Now().Unix())
}

// MessagesToChatResponseAt is MessagesToChatResponse with an explicit
// "created" Unix time. Text blocks are concatenated into message.content,
// tool_use blocks become tool_calls, stop_reason becomes finish_reason, and
// usage becomes prompt/completion/total tokens, where prompt_tokens counts
// input plus cache-creation plus cache-read tokens and
// prompt_tokens_details.cached_tokens the cache reads. The model reported is
// requestModel, or the upstream's when requestModel is empty. Thinking and
// server-tool blocks are dropped.
func MessagesToChatResponseAt(body []byte, requestModel string, created int64) ([]byte, error) {
	var in anthResponse
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, decodeError("upstream response", err)
	}
	if in.Type == "error" || in.Error != nil {
		return nil, errors.New("upstream response is an error")
	}
	if in.Type != "" && in.Type != "message" {
		return nil, errors.New("upstream response is not a message")
	}
	model := requestModel
	if model == "" {
		model = in.Model
	}
	msg := chatRespMessage{Role: "assistant"}
	var text strings.Builder
	hasText := false
	for _, b := range in.Content {
		switch b.Type {
		case "text":
			hasText = true
			text.WriteString(b.Text)
		case "tool_use":
			tc := chatToolCallOut{ID: b.ID, Type: "function"}
			tc.Function.Name = b.Name
			tc.Function.Arguments = compactArgs(b.Input)
			msg.ToolCalls = append(msg.ToolCalls, tc)
		}
	}
	if hasText || len(msg.ToolCalls) == 0 {
		s := text.String()
		msg.Content = &s
	}
	stop := ""
	if in.StopReason != nil {
		stop = *in.StopReason
	}
	out := chatResponse{
		ID:      "chatcmpl-" + in.ID,
		Object:  "chat.completion",
		Created: created,
		Model:   model,
		Choices: []chatChoice{{Message: msg, FinishReason: finishReasonFor(stop)}},
		Usage: newChatUsage(val(in.Usage.InputTokens), val(in.Usage.CacheCreationInputTokens),
			val(in.Usage.CacheReadInputTokens), val(in.Usage.OutputTokens)),
	}
	return marshal(out)
}

// compactArgs renders a tool input as the OpenAI arguments string.
func compactArgs(input json.RawMessage) string {
	if isNull(input) {
		return "{}"
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, input); err != nil {
		return "{}"
	}
	return buf.String()
}
