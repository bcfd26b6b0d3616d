package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ---- OpenAI response (input) ----

type oaiResponse struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Content   *string        `json:"content"`
			Refusal   *string        `json:"refusal"`
			ToolCalls []chatToolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *oaiUsage `json:"usage"`
	Error *struct{} `json:"error"`
}

type oaiUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// split returns Anthropic-style usage: uncached input, cache reads, output.
func (u *oaiUsage) split() (input, cacheRead, output int64) {
	if u == nil {
		return 0, 0, 0
	}
	prompt := max(u.PromptTokens, 0)
	if u.PromptTokensDetails != nil {
		cacheRead = min(max(u.PromptTokensDetails.CachedTokens, 0), prompt)
	}
	return prompt - cacheRead, cacheRead, max(u.CompletionTokens, 0)
}

// ---- Anthropic response (output) ----

type anthResponseOut struct {
	ID           string       `json:"id"`
	Type         string       `json:"type"`
	Role         string       `json:"role"`
	Model        string       `json:"model"`
	Content      []anthBlock  `json:"content"`
	StopReason   string       `json:"stop_reason"`
	StopSequence *string      `json:"stop_sequence"`
	Usage        anthUsageOut `json:"usage"`
}

type anthUsageOut struct {
	InputTokens              int64 `json:"input_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
}

// messageID derives an Anthropic-style message id from an OpenAI one.
func messageID(openaiID string) string {
	return "msg_" + strings.TrimPrefix(openaiID, "chatcmpl-")
}

// ChatToMessagesResponse translates a non-streaming OpenAI chat.completion
// (its first choice) into an Anthropic Messages response: content (and a
// refusal) → a text block, tool_calls → tool_use blocks (arguments parsed to
// an input object), finish_reason → stop_reason (stop → end_turn, length →
// max_tokens, tool_calls → tool_use, content_filter → refusal), usage →
// input_tokens (uncached prompt), cache_read_input_tokens (cached_tokens) and
// output_tokens. The model reported is requestModel, or the upstream's.
func ChatToMessagesResponse(body []byte, requestModel string) ([]byte, error) {
	var in oaiResponse
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, decodeError("upstream response", err)
	}
	if in.Error != nil {
		return nil, errors.New("upstream response is an error")
	}
	if len(in.Choices) == 0 {
		return nil, errors.New("upstream response has no choices")
	}
	model := requestModel
	if model == "" {
		model = in.Model
	}
	ch := &in.Choices[0]
	for i := range in.Choices {
		if in.Choices[i].Index == 0 {
			ch = &in.Choices[i]
			break
		}
	}
	out := anthResponseOut{ID: messageID(in.ID), Type: "message", Role: "assistant", Model: model,
		Content: []anthBlock{}}
	finish := ""
	if ch.FinishReason != nil {
		finish = *ch.FinishReason
	}
	out.StopReason = stopReasonFor(finish)
	if c := ch.Message.Content; c != nil && *c != "" {
		out.Content = append(out.Content, anthBlock{Type: "text", Text: *c})
	}
	if r := ch.Message.Refusal; r != nil && *r != "" {
		out.Content = append(out.Content, anthBlock{Type: "text", Text: *r})
		out.StopReason = "refusal"
	}
	for j, tc := range ch.Message.ToolCalls {
		args := bytes.TrimSpace([]byte(tc.Function.Arguments))
		if len(args) == 0 {
			args = []byte("{}")
		}
		if !json.Valid(args) || args[0] != '{' {
			return nil, fmt.Errorf("upstream tool call %d has arguments that are not a JSON object", j)
		}
		out.Content = append(out.Content, anthBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: args})
	}
	in0, cached, output := in.Usage.split()
	out.Usage = anthUsageOut{InputTokens: in0, CacheReadInputTokens: cached, OutputTokens: output}
	return marshal(out)
}
