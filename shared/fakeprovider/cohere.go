package fakeprovider

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Cohere v2 shapes (https://docs.cohere.com/reference/chat,
// https://docs.cohere.com/reference/chat-stream, https://docs.cohere.com/reference/embed).
// Errors are {"id","message"}.

type coMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  []mToolCall     `json:"tool_calls"`
	ToolPlan   string          `json:"tool_plan"`
	ToolCallID string          `json:"tool_call_id"`
	Citations  json.RawMessage `json:"citations"`
}

type coChatRequest struct {
	Model    string      `json:"model"`
	Messages []coMessage `json:"messages"`
	Tools    []struct {
		Type     string `json:"type"`
		Function struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	} `json:"tools"`
	StrictTools      *bool           `json:"strict_tools"`
	Documents        json.RawMessage `json:"documents"`
	CitationOptions  json.RawMessage `json:"citation_options"`
	ResponseFormat   json.RawMessage `json:"response_format"`
	SafetyMode       string          `json:"safety_mode"`
	MaxTokens        *int            `json:"max_tokens"`
	StopSequences    []string        `json:"stop_sequences"`
	Temperature      *float64        `json:"temperature"`
	Seed             *int64          `json:"seed"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	K                *int            `json:"k"`
	P                *float64        `json:"p"`
	Logprobs         *bool           `json:"logprobs"`
	ToolChoice       string          `json:"tool_choice"`
	Thinking         json.RawMessage `json:"thinking"`
	Stream           bool            `json:"stream"`
}

// CohereError is Cohere's error body.
func CohereError(message string) string {
	b, _ := json.Marshal(map[string]string{"id": "00000000-0000-4000-8000-000000000000", "message": message})
	return string(b)
}

// CohereTrialMonthly is Cohere's 429 for a trial key past its monthly calls.
func CohereTrialMonthly() Behavior {
	return Behavior{Status: http.StatusTooManyRequests, Body: CohereError("You are using a Trial key, which is limited to 1000 API calls / month. " +
		"You can continue to use the Trial key for free or upgrade to a Production key with higher rate limits at 'https://dashboard.cohere.com/api-keys'.")}
}

func cohereDefaultError(status int, _ int) string {
	switch status {
	case http.StatusUnauthorized, 498:
		return CohereError("invalid api token")
	case http.StatusForbidden:
		return CohereError("You are not authorized to use this model")
	case http.StatusPaymentRequired:
		return CohereError("Please add a payment method to your account to continue: https://dashboard.cohere.com/billing")
	case http.StatusNotFound:
		return CohereError("model not found, make sure the correct model ID was used and that you have access to the model.")
	case http.StatusTooManyRequests:
		return CohereError("You are using a Trial key, which is limited to 20 API calls / minute. You can continue to use the Trial key for free " +
			"or upgrade to a Production key with higher rate limits at 'https://dashboard.cohere.com/api-keys'.")
	case http.StatusServiceUnavailable:
		return CohereError("service unavailable")
	}
	if status >= 500 {
		return CohereError("internal server error, this has been reported to our developers")
	}
	return CohereError("invalid request")
}

func cohereBad(w http.ResponseWriter, msg string) {
	writeRaw(w, http.StatusBadRequest, CohereError("invalid request: "+msg))
}

func cohereRoute(method, path string) handler {
	switch {
	case method == http.MethodPost && path == "/v1/check-api-key":
		return (*Server).cohereCheckKey
	case method == http.MethodGet && path == "/v1/models":
		return (*Server).cohereModels
	case method == http.MethodPost && path == "/v2/chat":
		return (*Server).cohereChat
	case method == http.MethodPost && path == "/v2/embed":
		return (*Server).cohereEmbed
	}
	return nil
}

func (s *Server) cohereCheckKey(w http.ResponseWriter, c *call) {
	writeJSON(w, c.status, map[string]any{"valid": true, "organization_id": "fake-org", "owner_id": "fake-owner"})
}

func (s *Server) cohereModels(w http.ResponseWriter, c *call) {
	writeJSON(w, c.status, map[string]any{"models": []map[string]any{
		{"name": "command-a-03-2025", "endpoints": []string{"chat"}, "context_length": 256000},
		{"name": "embed-v4.0", "endpoints": []string{"embed"}, "context_length": 128000},
	}})
}

func (s *Server) cohereChat(w http.ResponseWriter, c *call) {
	var q coChatRequest
	if err := strictDecode(c.rec.Body, &q); err != nil {
		cohereBad(w, err.Error())
		return
	}
	if q.Model == "" {
		cohereBad(w, "model must be specified")
		return
	}
	if len(q.Messages) == 0 {
		cohereBad(w, "messages must not be empty")
		return
	}
	for _, m := range q.Messages {
		switch m.Role {
		case "system", "user":
		case "assistant":
			if len(m.ToolCalls) == 0 && (len(m.Content) == 0 || string(m.Content) == `""`) {
				cohereBad(w, "assistant message must have either content or tool_calls")
				return
			}
		case "tool":
			if m.ToolCallID == "" {
				cohereBad(w, "tool message must have a tool_call_id")
				return
			}
		default:
			cohereBad(w, "invalid role "+m.Role)
			return
		}
	}
	cq := coherePlanReq(&q)
	p := makePlan(c.rec.Body, &cq, c.b)
	c.usage = &p.usage
	id := "fake-" + Digest(c.rec.Body)
	callID := p.tool + "_fake" + Digest(c.rec.Body)
	plan := "I will use the " + p.tool + " tool."
	finish := "COMPLETE"
	switch {
	case p.truncated:
		finish = "MAX_TOKENS"
	case p.tool != "":
		finish = "TOOL_CALL"
	}
	usage := map[string]any{
		"billed_units": map[string]int{"input_tokens": p.usage.Input, "output_tokens": p.usage.Output},
		"tokens":       map[string]int{"input_tokens": p.usage.Input + 10, "output_tokens": p.usage.Output},
	}
	if !q.Stream {
		msg := map[string]any{"role": "assistant", "content": []map[string]string{{"type": "text", "text": p.text()}}}
		if p.tool != "" {
			msg = map[string]any{"role": "assistant", "tool_plan": plan, "tool_calls": []map[string]any{{
				"id": callID, "type": "function", "function": map[string]string{"name": p.tool, "arguments": p.text()}}}}
		}
		c.delivered = len(p.pieces)
		writeJSON(w, c.status, map[string]any{"id": id, "finish_reason": finish, "message": msg, "usage": usage})
		return
	}
	type m = map[string]any
	e := s.startSSE(w, c)
	if !e.send("message-start", m{"id": id, "type": "message-start", "delta": m{"message": m{
		"role": "assistant", "content": []any{}, "tool_plan": "", "tool_calls": []any{}, "citations": []any{}}}}) {
		return
	}
	if p.tool != "" {
		if !e.send("tool-plan-delta", m{"type": "tool-plan-delta", "delta": m{"message": m{"tool_plan": plan}}}) ||
			!e.send("tool-call-start", m{"type": "tool-call-start", "index": 0, "delta": m{"message": m{"tool_calls": m{
				"id": callID, "type": "function", "function": m{"name": p.tool, "arguments": ""}}}}}) {
			return
		}
		if !e.content(p.pieces, func(piece string) bool {
			return e.send("tool-call-delta", m{"type": "tool-call-delta", "index": 0, "delta": m{"message": m{"tool_calls": m{
				"function": m{"arguments": piece}}}}})
		}) || !e.send("tool-call-end", m{"type": "tool-call-end", "index": 0}) {
			return
		}
	} else {
		if !e.send("content-start", m{"type": "content-start", "index": 0, "delta": m{"message": m{"content": m{"type": "text", "text": ""}}}}) {
			return
		}
		if !e.content(p.pieces, func(piece string) bool {
			return e.send("content-delta", m{"type": "content-delta", "index": 0, "delta": m{"message": m{"content": m{"text": piece}}}})
		}) || !e.send("content-end", m{"type": "content-end", "index": 0}) {
			return
		}
	}
	e.send("message-end", m{"type": "message-end", "delta": m{"finish_reason": finish, "usage": usage}})
}

// coherePlanReq is what the answer plan reads from a chat request.
func coherePlanReq(q *coChatRequest) chatReq {
	cq := chatReq{Messages: make([]json.RawMessage, len(q.Messages)), MaxTokens: q.MaxTokens}
	if len(q.Tools) > 0 {
		cq.Tools = []toolRef{{}}
		cq.Tools[0].Function.Name = q.Tools[0].Function.Name
	}
	return cq
}

func (s *Server) cohereEmbed(w http.ResponseWriter, c *call) {
	var q struct {
		Model           string          `json:"model"`
		Texts           []string        `json:"texts"`
		Images          json.RawMessage `json:"images"`
		Inputs          json.RawMessage `json:"inputs"`
		InputType       string          `json:"input_type"`
		EmbeddingTypes  []string        `json:"embedding_types"`
		OutputDimension *int            `json:"output_dimension"`
		MaxTokens       *int            `json:"max_tokens"`
		Truncate        string          `json:"truncate"`
	}
	if err := strictDecode(c.rec.Body, &q); err != nil {
		cohereBad(w, err.Error())
		return
	}
	switch {
	case q.Model == "":
		cohereBad(w, "model must be specified")
		return
	case q.InputType == "" && !strings.HasPrefix(q.Model, "embed-english-v2") && !strings.HasPrefix(q.Model, "embed-multilingual-v2"):
		cohereBad(w, "input_type is required for embed models v3 and higher.")
		return
	case len(q.Texts) == 0 || len(q.Texts) > 96:
		cohereBad(w, "texts must contain between 1 and 96 items")
		return
	}
	vecs := make([][]float32, len(q.Texts))
	for i, t := range q.Texts {
		vecs[i] = embedding(t)
	}
	u := Usage{Input: PromptTokens(c.rec.Body)}
	if c.b.Usage != nil {
		u = *c.b.Usage
	}
	c.usage = &u
	c.delivered = len(vecs)
	writeJSON(w, c.status, map[string]any{"id": "fake-" + Digest(c.rec.Body), "embeddings": map[string]any{"float": vecs},
		"texts": q.Texts, "meta": map[string]any{"api_version": map[string]string{"version": "2"}, "billed_units": map[string]int{"input_tokens": u.Input}},
		"response_type": "embeddings_by_type"})
}
