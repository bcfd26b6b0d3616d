package fakeprovider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Gemini API shapes (https://ai.google.dev/api/generate-content,
// https://ai.google.dev/api/embeddings). Like the real API (proto JSON), the
// fake rejects unknown field names with 400 INVALID_ARGUMENT.

type gPart struct {
	Text       *string `json:"text,omitempty"`
	Thought    bool    `json:"thought,omitempty"`
	InlineData *struct {
		MimeType string `json:"mimeType"`
		Data     string `json:"data"`
	} `json:"inlineData,omitempty"`
	FileData *struct {
		MimeType string `json:"mimeType"`
		FileURI  string `json:"fileUri"`
	} `json:"fileData,omitempty"`
	FunctionCall *struct {
		ID   string          `json:"id,omitempty"`
		Name string          `json:"name"`
		Args json.RawMessage `json:"args,omitempty"`
	} `json:"functionCall,omitempty"`
	FunctionResponse *struct {
		ID       string          `json:"id,omitempty"`
		Name     string          `json:"name"`
		Response json.RawMessage `json:"response"`
	} `json:"functionResponse,omitempty"`
	ThoughtSignature string `json:"thoughtSignature,omitempty"`
}

type gContent struct {
	Role  string  `json:"role,omitempty"`
	Parts []gPart `json:"parts"`
}

type gGenerateRequest struct {
	Contents          []gContent `json:"contents"`
	SystemInstruction *gContent  `json:"systemInstruction"`
	Tools             []struct {
		FunctionDeclarations []struct {
			Name                 string          `json:"name"`
			Description          string          `json:"description"`
			Parameters           json.RawMessage `json:"parameters"`
			ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema"`
			Response             json.RawMessage `json:"response"`
		} `json:"functionDeclarations"`
		GoogleSearch  json.RawMessage `json:"googleSearch"`
		CodeExecution json.RawMessage `json:"codeExecution"`
	} `json:"tools"`
	ToolConfig *struct {
		FunctionCallingConfig struct {
			Mode                 string   `json:"mode"`
			AllowedFunctionNames []string `json:"allowedFunctionNames"`
		} `json:"functionCallingConfig"`
	} `json:"toolConfig"`
	SafetySettings   json.RawMessage `json:"safetySettings"`
	CachedContent    string          `json:"cachedContent"`
	GenerationConfig *struct {
		StopSequences      []string        `json:"stopSequences"`
		ResponseMimeType   string          `json:"responseMimeType"`
		ResponseSchema     json.RawMessage `json:"responseSchema"`
		ResponseJSONSchema json.RawMessage `json:"responseJsonSchema"`
		CandidateCount     *int            `json:"candidateCount"`
		MaxOutputTokens    *int            `json:"maxOutputTokens"`
		Temperature        *float64        `json:"temperature"`
		TopP               *float64        `json:"topP"`
		TopK               *int            `json:"topK"`
		Seed               *int64          `json:"seed"`
		PresencePenalty    *float64        `json:"presencePenalty"`
		FrequencyPenalty   *float64        `json:"frequencyPenalty"`
		ResponseLogprobs   *bool           `json:"responseLogprobs"`
		Logprobs           *int            `json:"logprobs"`
		ThinkingConfig     *struct {
			ThinkingBudget  *int  `json:"thinkingBudget"`
			IncludeThoughts *bool `json:"includeThoughts"`
		} `json:"thinkingConfig"`
	} `json:"generationConfig"`
}

// GoogleError is Google's error body {"error":{"code","message","status",
// "details"}}; reason, when set, adds a google.rpc.ErrorInfo detail.
func GoogleError(code int, status, message, reason string, details ...map[string]any) string {
	ds := []map[string]any{}
	if reason != "" {
		ds = append(ds, map[string]any{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
			"domain": "googleapis.com", "metadata": map[string]string{"service": "generativelanguage.googleapis.com"}})
	}
	ds = append(ds, details...)
	e := map[string]any{"code": code, "message": message, "status": status}
	if len(ds) > 0 {
		e["details"] = ds
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return string(b)
}

// GoogleKeyInvalid is Gemini's answer to a bad key: 400 API_KEY_INVALID.
func GoogleKeyInvalid() Behavior {
	return Behavior{Status: http.StatusBadRequest, Body: GoogleError(400, "INVALID_ARGUMENT",
		"API key not valid. Please pass a valid API key.", "API_KEY_INVALID")}
}

// GoogleAPIDisabled is Gemini's 403 for a project without the API enabled.
func GoogleAPIDisabled() Behavior {
	return Behavior{Status: http.StatusForbidden, Body: GoogleError(403, "PERMISSION_DENIED",
		"Generative Language API has not been used in project 000000000000 before or it is disabled. Enable it by visiting "+
			"https://console.developers.google.com/apis/api/generativelanguage.googleapis.com/overview?project=000000000000 then retry.",
		"SERVICE_DISABLED")}
}

// GoogleDailyQuota is Gemini's 429 for an exhausted per-day quota.
func GoogleDailyQuota() Behavior {
	return Behavior{Status: http.StatusTooManyRequests, Body: googleQuota("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "3600")}
}

// GoogleLocationUnsupported is Gemini's 400 for a region it does not serve.
func GoogleLocationUnsupported() Behavior {
	return Behavior{Status: http.StatusBadRequest, Body: GoogleError(400, "FAILED_PRECONDITION", "User location is not supported for the API use.", "")}
}

func googleQuota(quotaID, retry string) string {
	return GoogleError(429, "RESOURCE_EXHAUSTED",
		"You exceeded your current quota, please check your plan and billing details. For more information on this error, "+
			"head to: https://ai.google.dev/gemini-api/docs/rate-limits.", "",
		map[string]any{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []map[string]any{{
			"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": quotaID}}},
		map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry + "s"})
}

func googleDefaultError(status int, c *call) string {
	switch status {
	case http.StatusBadRequest:
		return GoogleError(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", "")
	case http.StatusUnauthorized:
		return GoogleError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, "+
			"login cookie or other valid authentication credential.", "")
	case http.StatusForbidden:
		return GoogleError(403, "PERMISSION_DENIED", "Permission denied: Consumer 'api_key:' has been suspended.", "CONSUMER_SUSPENDED")
	case http.StatusNotFound:
		return GoogleError(404, "NOT_FOUND", "Requested entity was not found: "+c.r.Method+" "+c.r.URL.Path, "")
	case http.StatusTooManyRequests:
		retry := c.b.RetryAfter
		if retry == "" {
			retry = "7"
		}
		return googleQuota("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", retry)
	case http.StatusServiceUnavailable:
		return GoogleError(503, "UNAVAILABLE", "The model is overloaded. Please try again later.", "")
	case http.StatusGatewayTimeout:
		return GoogleError(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.", "")
	}
	if status >= 500 {
		return GoogleError(status, "INTERNAL", "An internal error has occurred. Please retry or report in "+
			"https://developers.generativeai.google/guide/troubleshooting", "")
	}
	return GoogleError(status, "FAILED_PRECONDITION", "Precondition check failed.", "")
}

func googleBad(w http.ResponseWriter, msg string) {
	writeRaw(w, http.StatusBadRequest, GoogleError(400, "INVALID_ARGUMENT", msg, ""))
}

// strictDecode decodes body into v refusing unknown fields.
func strictDecode(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func googleRoute(method, path string) handler {
	if method == http.MethodGet && path == "/v1beta/models" {
		return (*Server).googleModels
	}
	rest, ok := strings.CutPrefix(path, "/v1beta/models/")
	if !ok || method != http.MethodPost {
		return nil
	}
	_, op, ok := strings.Cut(rest, ":")
	if !ok {
		return nil
	}
	switch op {
	case "generateContent", "streamGenerateContent":
		return (*Server).googleGenerate
	case "embedContent", "batchEmbedContents":
		return (*Server).googleEmbed
	}
	return nil
}

func (s *Server) googleModels(w http.ResponseWriter, c *call) {
	writeJSON(w, c.status, map[string]any{"models": []map[string]any{
		{"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash", "supportedGenerationMethods": []string{"generateContent", "countTokens"}},
		{"name": "models/gemini-embedding-001", "displayName": "Gemini Embedding 001", "supportedGenerationMethods": []string{"embedContent"}},
	}, "nextPageToken": ""})
}

func googleModel(c *call) (model, op string) {
	rest := strings.TrimPrefix(strings.TrimPrefix(c.r.URL.Path, "/google"), "/v1beta/models/")
	model, op, _ = strings.Cut(rest, ":")
	return model, op
}

func (s *Server) googleGenerate(w http.ResponseWriter, c *call) {
	model, op := googleModel(c)
	var q gGenerateRequest
	if err := strictDecode(c.rec.Body, &q); err != nil {
		googleBad(w, "Invalid JSON payload received. "+err.Error())
		return
	}
	if len(q.Contents) == 0 {
		googleBad(w, "* GenerateContentRequest.contents: contents is not specified")
		return
	}
	for i, ct := range q.Contents {
		if ct.Role != "" && ct.Role != "user" && ct.Role != "model" {
			googleBad(w, fmt.Sprintf("Please use a valid role: user, model. (contents[%d])", i))
			return
		}
		if len(ct.Parts) == 0 {
			googleBad(w, fmt.Sprintf("* GenerateContentRequest.contents[%d].parts: contents.parts must not be empty.", i))
			return
		}
	}
	cq := googlePlanReq(&q)
	p := makePlan(c.rec.Body, &cq, c.b)
	c.usage = &p.usage
	respID := "fake" + Digest(c.rec.Body)
	finish := "STOP"
	if p.truncated {
		finish = "MAX_TOKENS"
	}
	usage := func(out int) map[string]int {
		return map[string]int{"promptTokenCount": p.usage.Input, "candidatesTokenCount": out, "totalTokenCount": p.usage.Input + out}
	}
	candidate := func(parts []map[string]any, fin string) map[string]any {
		m := map[string]any{"content": map[string]any{"role": "model", "parts": parts}, "index": 0}
		if fin != "" {
			m["finishReason"] = fin
		}
		return m
	}
	textParts := func(t string) []map[string]any { return []map[string]any{{"text": t}} }
	callParts := func() []map[string]any {
		args := json.RawMessage(p.text())
		if !json.Valid(args) {
			args = json.RawMessage("{}")
		}
		return []map[string]any{{"functionCall": map[string]any{"name": p.tool, "args": args}}}
	}
	resp := func(parts []map[string]any, fin string, out int) map[string]any {
		return map[string]any{"candidates": []any{candidate(parts, fin)}, "usageMetadata": usage(out),
			"modelVersion": model, "responseId": respID}
	}

	if op == "generateContent" {
		parts := textParts(p.text())
		if p.tool != "" {
			parts = callParts()
		}
		c.delivered = len(p.pieces)
		writeJSON(w, c.status, resp(parts, finish, p.usage.Output))
		return
	}
	if c.r.URL.Query().Get("alt") != "sse" {
		// Without alt=sse Gemini streams one JSON array; the fake sends it whole.
		c.delivered = len(p.pieces)
		writeJSON(w, c.status, []any{resp(textParts(p.text()), finish, p.usage.Output)})
		return
	}
	e := s.startSSE(w, c)
	if p.tool != "" { // Gemini sends a function call whole, in one event
		if e.content([]string{p.text()}, func(string) bool { return e.send("", resp(callParts(), finish, p.usage.Output)) }) {
			c.delivered = len(p.pieces)
		}
		return
	}
	n := 0
	e.content(p.pieces, func(piece string) bool {
		n++
		fin := ""
		if n == len(p.pieces) {
			fin = finish
		}
		return e.send("", resp(textParts(piece), fin, min(n, p.usage.Output)))
	})
}

// googlePlanReq is what the answer plan reads from a generateContent request.
func googlePlanReq(q *gGenerateRequest) chatReq {
	cq := chatReq{Messages: make([]json.RawMessage, len(q.Contents))}
	if len(q.Tools) > 0 && len(q.Tools[0].FunctionDeclarations) > 0 {
		cq.Tools = append(cq.Tools, toolRef{Name: q.Tools[0].FunctionDeclarations[0].Name})
	}
	if g := q.GenerationConfig; g != nil {
		cq.MaxTokens = g.MaxOutputTokens
	}
	return cq
}

func (s *Server) googleEmbed(w http.ResponseWriter, c *call) {
	model, op := googleModel(c)
	type embedReq struct {
		Model                string   `json:"model"`
		Content              gContent `json:"content"`
		TaskType             string   `json:"taskType"`
		Title                string   `json:"title"`
		OutputDimensionality *int     `json:"outputDimensionality"`
	}
	var reqs []embedReq
	if op == "embedContent" {
		var q embedReq
		if err := strictDecode(c.rec.Body, &q); err != nil {
			googleBad(w, "Invalid JSON payload received. "+err.Error())
			return
		}
		reqs = []embedReq{q}
	} else {
		var q struct {
			Requests []embedReq `json:"requests"`
		}
		if err := strictDecode(c.rec.Body, &q); err != nil {
			googleBad(w, "Invalid JSON payload received. "+err.Error())
			return
		}
		if len(q.Requests) == 0 {
			googleBad(w, "* BatchEmbedContentsRequest.requests: requests is not specified")
			return
		}
		for i, r := range q.Requests {
			if r.Model != "models/"+model {
				googleBad(w, fmt.Sprintf("Model mismatch: requests[%d].model %q differs from models/%s", i, r.Model, model))
				return
			}
		}
		reqs = q.Requests
	}
	vals := make([]map[string]any, len(reqs))
	for i, r := range reqs {
		if len(r.Content.Parts) == 0 {
			googleBad(w, "* EmbedContentRequest.content: contents is not specified")
			return
		}
		var text strings.Builder
		for _, p := range r.Content.Parts {
			if p.Text != nil {
				text.WriteString(*p.Text)
			}
		}
		vals[i] = map[string]any{"values": embedding(text.String())}
	}
	c.delivered = len(vals)
	if op == "embedContent" {
		writeJSON(w, c.status, map[string]any{"embedding": vals[0]})
		return
	}
	writeJSON(w, c.status, map[string]any{"embeddings": vals})
}
