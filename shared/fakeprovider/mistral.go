package fakeprovider

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Mistral shapes (https://docs.mistral.ai/api/). Mistral validates bodies
// with pydantic and refuses unknown fields: 422 extra_forbidden.

type mMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  []mToolCall     `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
	Name       string          `json:"name"`
	Prefix     bool            `json:"prefix"`
}

type mToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Index    *int   `json:"index,omitempty"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type mChatRequest struct {
	Model          string          `json:"model"`
	Messages       []mMessage      `json:"messages"`
	Temperature    *float64        `json:"temperature"`
	TopP           *float64        `json:"top_p"`
	MaxTokens      *int            `json:"max_tokens"`
	Stream         bool            `json:"stream"`
	Stop           json.RawMessage `json:"stop"`
	RandomSeed     *int64          `json:"random_seed"`
	ResponseFormat json.RawMessage `json:"response_format"`
	Tools          []struct {
		Type     string `json:"type"`
		Function struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
			Strict      *bool           `json:"strict"`
		} `json:"function"`
	} `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	PresencePenalty   *float64        `json:"presence_penalty"`
	FrequencyPenalty  *float64        `json:"frequency_penalty"`
	N                 *int            `json:"n"`
	Prediction        json.RawMessage `json:"prediction"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	SafePrompt        *bool           `json:"safe_prompt"`
	PromptMode        *string         `json:"prompt_mode"`
}

// MistralError is Mistral's error body for a request it refused.
func MistralError(message, typ string) string {
	b, _ := json.Marshal(map[string]any{"object": "error", "message": message, "type": typ, "param": nil, "code": nil})
	return string(b)
}

// MistralUsageLimit is a 429 naming an exhausted workspace usage limit.
func MistralUsageLimit() Behavior {
	return Behavior{Status: http.StatusTooManyRequests, Body: `{"message":"You have reached your monthly usage limit. Upgrade your plan or wait for the next billing period.","request_id":"fake"}`}
}

func mistralDefaultError(status int, r *http.Request) string {
	switch status {
	case http.StatusUnauthorized:
		return `{"message":"Unauthorized","request_id":"fake"}`
	case http.StatusForbidden:
		return `{"message":"Forbidden","request_id":"fake"}`
	case http.StatusTooManyRequests:
		return `{"message":"Requests rate limit exceeded","request_id":"fake"}`
	case http.StatusNotFound:
		return `{"detail":"Not Found"}`
	case http.StatusPaymentRequired:
		return MistralError("Payment required: no active subscription for this workspace", "payment_required")
	}
	if status >= 500 {
		return MistralError("Internal server error", "internal_server_error")
	}
	return MistralError("Invalid request", "invalid_request_error")
}

// mistral422 is pydantic's extra_forbidden answer for an unknown field.
func mistral422(w http.ResponseWriter, err error) {
	field := "body"
	if s := err.Error(); strings.Contains(s, "unknown field ") {
		field = strings.Trim(s[strings.Index(s, "unknown field ")+len("unknown field "):], `"`)
	}
	b, _ := json.Marshal(map[string]any{"object": "error", "message": map[string]any{"detail": []map[string]any{{
		"type": "extra_forbidden", "loc": []string{"body", field}, "msg": "Extra inputs are not permitted"}}},
		"type": "invalid_request_error", "param": nil, "code": nil})
	writeRaw(w, http.StatusUnprocessableEntity, string(b))
}

func mistralRoute(method, path string) handler {
	switch {
	case method == http.MethodGet && path == "/v1/models":
		return (*Server).mistralModels
	case method == http.MethodPost && path == "/v1/chat/completions":
		return (*Server).mistralChat
	case method == http.MethodPost && path == "/v1/embeddings":
		return (*Server).mistralEmbeddings
	}
	return nil
}

func (s *Server) mistralModels(w http.ResponseWriter, c *call) {
	writeJSON(w, c.status, map[string]any{"object": "list", "data": []map[string]any{
		{"id": "mistral-large-latest", "object": "model", "created": 1732000000, "owned_by": "mistralai"},
		{"id": "mistral-embed", "object": "model", "created": 1732000000, "owned_by": "mistralai"},
	}})
}

func validMistralID(id string) bool {
	if len(id) != 9 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (s *Server) mistralChat(w http.ResponseWriter, c *call) {
	var q mChatRequest
	if err := strictDecode(c.rec.Body, &q); err != nil {
		mistral422(w, err)
		return
	}
	if q.Model == "" || len(q.Messages) == 0 {
		writeRaw(w, http.StatusUnprocessableEntity, `{"object":"error","message":{"detail":[{"type":"missing","loc":["body","model or messages"],"msg":"Field required"}]},"type":"invalid_request_error","param":null,"code":null}`)
		return
	}
	for _, m := range q.Messages {
		if m.Role != "system" && m.Role != "user" && m.Role != "assistant" && m.Role != "tool" {
			writeRaw(w, http.StatusUnprocessableEntity, MistralError("Input tag '"+m.Role+"' found using 'role' does not match any of the expected tags", "invalid_request_error"))
			return
		}
		ids := []string{m.ToolCallID}
		for _, tc := range m.ToolCalls {
			ids = append(ids, tc.ID)
		}
		for _, id := range ids {
			if id != "" && !validMistralID(id) {
				writeRaw(w, http.StatusBadRequest, MistralError("Tool call id was "+id+" but must be a-z, A-Z, 0-9, with a length of 9.", "invalid_request_message"))
				return
			}
		}
	}
	cq := mistralPlanReq(&q)
	p := makePlan(c.rec.Body, &cq, c.b)
	c.usage = &p.usage
	id := "fake" + Digest(c.rec.Body)
	callID := strings.ToUpper(Digest(c.rec.Body))[:8] + "x"
	created := time.Now().Unix()
	finish := "stop"
	switch {
	case p.truncated:
		finish = "length"
	case p.tool != "":
		finish = "tool_calls"
	}
	usage := map[string]int{"prompt_tokens": p.usage.Input, "completion_tokens": p.usage.Output, "total_tokens": p.usage.Input + p.usage.Output}
	toolCalls := func() []map[string]any {
		return []map[string]any{{"id": callID, "type": "function", "index": 0,
			"function": map[string]string{"name": p.tool, "arguments": p.text()}}}
	}
	if !q.Stream {
		msg := map[string]any{"role": "assistant", "content": p.text(), "tool_calls": nil, "prefix": false}
		if p.tool != "" {
			msg["content"], msg["tool_calls"] = "", toolCalls()
		}
		c.delivered = len(p.pieces)
		writeJSON(w, c.status, map[string]any{"id": id, "object": "chat.completion", "created": created, "model": q.Model,
			"choices": []map[string]any{{"index": 0, "message": msg, "finish_reason": finish}}, "usage": usage})
		return
	}
	chunk := func(delta map[string]any, fin any, u any) map[string]any {
		m := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": q.Model,
			"choices": []map[string]any{{"index": 0, "delta": delta, "finish_reason": fin}}}
		if u != nil {
			m["usage"] = u
		}
		return m
	}
	e := s.startSSE(w, c)
	if !e.send("", chunk(map[string]any{"role": "assistant", "content": ""}, nil, nil)) {
		return
	}
	if p.tool != "" {
		if !e.content([]string{p.text()}, func(string) bool {
			return e.send("", chunk(map[string]any{"content": "", "tool_calls": toolCalls()}, finish, usage))
		}) {
			return
		}
		c.delivered = len(p.pieces)
		e.send("", "[DONE]")
		return
	}
	n := 0
	if !e.content(p.pieces, func(piece string) bool {
		n++
		if n == len(p.pieces) { // Mistral's last content chunk carries finish_reason and usage
			return e.send("", chunk(map[string]any{"content": piece}, finish, usage))
		}
		return e.send("", chunk(map[string]any{"content": piece}, nil, nil))
	}) {
		return
	}
	e.send("", "[DONE]")
}

// mistralPlanReq is what the answer plan reads from a chat request.
func mistralPlanReq(q *mChatRequest) chatReq {
	cq := chatReq{Messages: make([]json.RawMessage, len(q.Messages)), MaxTokens: q.MaxTokens}
	if len(q.Tools) > 0 {
		cq.Tools = []toolRef{{}}
		cq.Tools[0].Function.Name = q.Tools[0].Function.Name
	}
	return cq
}

func (s *Server) mistralEmbeddings(w http.ResponseWriter, c *call) {
	var q struct {
		Model           string          `json:"model"`
		Input           json.RawMessage `json:"input"`
		OutputDimension *int            `json:"output_dimension"`
		OutputDtype     *string         `json:"output_dtype"`
		EncodingFormat  *string         `json:"encoding_format"`
	}
	if err := strictDecode(c.rec.Body, &q); err != nil {
		mistral422(w, err)
		return
	}
	inputs, ok := embeddingInputs(q.Input)
	if !ok || q.Model == "" {
		writeRaw(w, http.StatusUnprocessableEntity, MistralError("input and model are required", "invalid_request_error"))
		return
	}
	data := make([]map[string]any, len(inputs))
	for i, in := range inputs {
		var s string
		if json.Unmarshal([]byte(in), &s) == nil {
			in = s
		}
		data[i] = map[string]any{"object": "embedding", "embedding": embedding(in), "index": i}
	}
	u := Usage{Input: PromptTokens(c.rec.Body)}
	if c.b.Usage != nil {
		u = *c.b.Usage
	}
	c.usage = &u
	c.delivered = len(data)
	writeJSON(w, c.status, map[string]any{"id": fmt.Sprintf("fake%s", Digest(c.rec.Body)), "object": "list", "data": data, "model": q.Model,
		"usage": map[string]int{"prompt_tokens": u.Input, "total_tokens": u.Input, "completion_tokens": 0}})
}
