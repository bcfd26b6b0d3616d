package fakeprovider

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Azure OpenAI shapes (https://learn.microsoft.com/azure/ai-services/openai/reference):
// OpenAI bodies under /openai/deployments/{deployment}/...?api-version=,
// the key in api-key, errors {"error":{"code","message"}} with string codes,
// and content-filter annotations on answers.

// AzureError is Azure OpenAI's error body.
func AzureError(code, message string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message}})
	return string(b)
}

// AzureDeploymentNotFound is Azure's 404 for a deployment name it does not know.
func AzureDeploymentNotFound() Behavior {
	return Behavior{Status: http.StatusNotFound, Body: AzureError("DeploymentNotFound",
		"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.")}
}

func azureDefaultError(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return AzureError("401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "+
			"for an active subscription and use a correct regional API endpoint for your resource.")
	case http.StatusForbidden:
		return AzureError("403", "Traffic is not from an approved private endpoint.")
	case http.StatusNotFound:
		return AzureError("404", "Resource not found")
	case http.StatusTooManyRequests:
		return AzureError("429", "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded "+
			"token rate limit of your current OpenAI S0 pricing tier. Please retry after 7 seconds. Please go here: "+
			"https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.")
	}
	if status >= 500 {
		return AzureError("InternalServerError", "The server had an error while processing your request. Sorry about that!")
	}
	return AzureError("BadRequest", "Invalid request.")
}

func azureRoute(method, path string) handler {
	if method == http.MethodGet && path == "/openai/models" {
		return (*Server).azureModels
	}
	rest, ok := strings.CutPrefix(path, "/openai/deployments/")
	if !ok || method != http.MethodPost {
		return nil
	}
	d, op, ok := strings.Cut(rest, "/")
	if !ok || d == "" {
		return nil
	}
	switch op {
	case "chat/completions":
		return (*Server).azureChat
	case "embeddings":
		return (*Server).azureEmbeddings
	}
	return nil
}

// azureVersion answers 404 when api-version is missing, as Azure does.
func azureVersion(w http.ResponseWriter, c *call) bool {
	if c.r.URL.Query().Get("api-version") == "" {
		writeRaw(w, http.StatusNotFound, AzureError("404", "Resource not found"))
		return false
	}
	return true
}

func (s *Server) azureModels(w http.ResponseWriter, c *call) {
	if !azureVersion(w, c) {
		return
	}
	writeJSON(w, c.status, map[string]any{"object": "list", "data": []map[string]any{
		{"id": "gpt-4o-2024-08-06", "object": "model", "status": "succeeded", "created_at": 1723000000},
		{"id": "text-embedding-3-small", "object": "model", "status": "succeeded", "created_at": 1706000000},
	}})
}

func azureFilter() map[string]any {
	return map[string]any{
		"hate": map[string]any{"filtered": false, "severity": "safe"}, "self_harm": map[string]any{"filtered": false, "severity": "safe"},
		"sexual": map[string]any{"filtered": false, "severity": "safe"}, "violence": map[string]any{"filtered": false, "severity": "safe"},
	}
}

func (s *Server) azureChat(w http.ResponseWriter, c *call) {
	if !azureVersion(w, c) {
		return
	}
	deployment := strings.Split(strings.TrimPrefix(c.r.URL.Path, "/openai/deployments/"), "/")[0]
	var q chatReq
	if err := json.Unmarshal(c.rec.Body, &q); err != nil {
		writeRaw(w, http.StatusBadRequest, AzureError("BadRequest", "Invalid JSON body"))
		return
	}
	if len(q.Messages) == 0 {
		writeRaw(w, http.StatusBadRequest, AzureError("BadRequest", "'messages' is a required property"))
		return
	}
	if q.StreamOptions != nil && !q.Stream {
		writeRaw(w, http.StatusBadRequest, AzureError("BadRequest", "The 'stream_options' parameter is only allowed when 'stream' is enabled."))
		return
	}
	p := makePlan(c.rec.Body, &q, c.b)
	c.usage = &p.usage
	id := "chatcmpl-fake" + Digest(c.rec.Body)
	callID := "call_fake" + Digest(c.rec.Body)
	created := time.Now().Unix()
	model := deployment + "-2024-08-06"
	finish := "stop"
	switch {
	case p.truncated:
		finish = "length"
	case p.tool != "":
		finish = "tool_calls"
	}
	usage := newOAUsage(p.usage)
	promptFilter := []map[string]any{{"prompt_index": 0, "content_filter_results": azureFilter()}}
	if !q.Stream {
		msg := map[string]any{"role": "assistant", "content": p.text()}
		if p.tool != "" {
			msg = map[string]any{"role": "assistant", "content": nil, "tool_calls": []map[string]any{{
				"id": callID, "type": "function", "function": map[string]string{"name": p.tool, "arguments": p.text()}}}}
		}
		c.delivered = len(p.pieces)
		writeJSON(w, c.status, map[string]any{"id": id, "object": "chat.completion", "created": created, "model": model,
			"prompt_filter_results": promptFilter, "system_fingerprint": "fp_fake",
			"choices": []map[string]any{{"index": 0, "message": msg, "finish_reason": finish, "logprobs": nil, "content_filter_results": azureFilter()}},
			"usage":   usage})
		return
	}
	includeUsage := q.StreamOptions != nil && q.StreamOptions.IncludeUsage
	type m = map[string]any
	chunk := func(delta m, fin any) m {
		return m{"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "system_fingerprint": "fp_fake",
			"choices": []m{{"index": 0, "delta": delta, "finish_reason": fin, "logprobs": nil, "content_filter_results": azureFilter()}}}
	}
	e := s.startSSE(w, c)
	// Azure's first event carries only the prompt's filter results.
	if !e.send("", m{"id": "", "object": "", "created": 0, "model": "", "choices": []any{}, "prompt_filter_results": promptFilter}) {
		return
	}
	first := m{"role": "assistant", "content": ""}
	if p.tool != "" {
		first = m{"role": "assistant", "content": nil, "tool_calls": []m{{"index": 0, "id": callID, "type": "function",
			"function": m{"name": p.tool, "arguments": ""}}}}
	}
	if !e.send("", chunk(first, nil)) {
		return
	}
	if !e.content(p.pieces, func(piece string) bool {
		if p.tool != "" {
			return e.send("", chunk(m{"tool_calls": []m{{"index": 0, "function": m{"arguments": piece}}}}, nil))
		}
		return e.send("", chunk(m{"content": piece}, nil))
	}) || !e.send("", chunk(m{}, finish)) {
		return
	}
	if includeUsage {
		if !e.send("", m{"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": []any{}, "usage": usage}) {
			return
		}
	}
	e.send("", "[DONE]")
}

func (s *Server) azureEmbeddings(w http.ResponseWriter, c *call) {
	if !azureVersion(w, c) {
		return
	}
	var q struct {
		Input json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(c.rec.Body, &q); err != nil {
		writeRaw(w, http.StatusBadRequest, AzureError("BadRequest", "Invalid JSON body"))
		return
	}
	inputs, ok := embeddingInputs(q.Input)
	if !ok {
		writeRaw(w, http.StatusBadRequest, AzureError("BadRequest", "'input' is a required property"))
		return
	}
	data := make([]map[string]any, len(inputs))
	for i, in := range inputs {
		var s string
		if json.Unmarshal([]byte(in), &s) == nil {
			in = s
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": embedding(in)}
	}
	u := Usage{Input: PromptTokens(c.rec.Body)}
	if c.b.Usage != nil {
		u = *c.b.Usage
	}
	c.usage = &u
	c.delivered = len(data)
	writeJSON(w, c.status, map[string]any{"object": "list", "data": data, "model": "text-embedding-3-small",
		"usage": map[string]int{"prompt_tokens": u.Input, "total_tokens": u.Input}})
}
