// Package google is the Gemini API adapter (https://ai.google.dev/api):
// generateContent, streamGenerateContent?alt=sse, embedContent and
// batchEmbedContents, the key only ever in the x-goog-api-key header.
package google

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/synthstack/byok/shared/provider/schema"
)

// Name is the provider's identifier.
const Name schema.Name = "google"

// DefaultBaseURL is GOOGLE_BASE_URL's default (no version segment).
const DefaultBaseURL = "https://generativelanguage.googleapis.com"

// Adapter is the Gemini adapter; the zero value is ready.
type Adapter struct{}

func (Adapter) Name() schema.Name { return Name }

// CheckFormat: Google API keys are "AIza" followed by 35 characters of
// [A-Za-z0-9_-].
func (Adapter) CheckFormat(key string) error {
	if len(key) != 39 || !strings.HasPrefix(key, "AIza") {
		return &schema.FormatError{Msg: "Google API keys are AIza followed by 35 characters"}
	}
	for i := 4; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return &schema.FormatError{Msg: "Google API keys hold only letters, digits, - and _"}
		}
	}
	return nil
}

func (Adapter) PriceModel(model string) string { return strings.TrimPrefix(model, "models/") }

func base(cred schema.Credential) string { return schema.BaseURL(cred, DefaultBaseURL) }

// modelPath checks a model name before it becomes a path segment.
func modelPath(model string) (string, error) {
	model = strings.TrimPrefix(model, "models/")
	if model == "" || len(model) > 128 {
		return "", &schema.FeatureError{Provider: Name, Feature: "an empty or over-long model name"}
	}
	for i := 0; i < len(model); i++ {
		c := model[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", &schema.FeatureError{Provider: Name, Feature: "model names with characters other than letters, digits, '-', '.' and '_'"}
		}
	}
	return url.PathEscape(model), nil
}

func authorize(req *http.Request, key string) { req.Header.Set("x-goog-api-key", key) }

func (Adapter) ValidationRequest(ctx context.Context, cred schema.Credential) (*http.Request, error) {
	return schema.NewKeyedGet(ctx, base(cred)+"/v1beta/models?pageSize=1", cred.Key, authorize)
}

func (a Adapter) ClassifyValidation(status int, h http.Header, body []byte) schema.Verdict {
	return a.Classify(status, h, body)
}

// apiError is Google's error envelope (https://ai.google.dev/gemini-api/docs/troubleshooting).
type apiError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type       string `json:"@type"`
			Reason     string `json:"reason"`
			RetryDelay string `json:"retryDelay"`
			Violations []struct {
				QuotaID string `json:"quotaId"`
			} `json:"violations"`
		} `json:"details"`
	} `json:"error"`
}

// Classify reads Gemini's error vocabulary:
//
//	400 API_KEY_INVALID                      → auth / unauthorized
//	400 "location is not supported"          → auth / forbidden (detail)
//	400 free tier unavailable, enable billing → billing / no_billing
//	403 (API not enabled, IP/referrer block) → auth / forbidden (detail)
//	429 RESOURCE_EXHAUSTED on a per-day quota → billing / quota_exceeded
//	other 429                                → rate limit (RetryInfo → Retry-After)
//	5xx                                      → unavailable
func (Adapter) Classify(status int, h http.Header, body []byte) schema.Verdict {
	c, s, r := schema.ClassByStatus(status)
	v := schema.MakeVerdict(c, s, r)
	var e apiError
	_ = json.Unmarshal(body, &e)
	v.Type, v.Message = e.Error.Status, e.Error.Message
	reasons := ""
	for _, d := range e.Error.Details {
		if d.Reason != "" {
			v.Code = d.Reason
			reasons += d.Reason + " "
		}
		if d.RetryDelay != "" && v.RetryAfter == "" {
			v.RetryAfter = seconds(d.RetryDelay)
		}
		for _, q := range d.Violations {
			reasons += q.QuotaID + " "
		}
	}
	if ra := h.Get("Retry-After"); ra != "" {
		v.RetryAfter = ra
	}
	msg := strings.ToLower(e.Error.Message)
	switch {
	case status == http.StatusBadRequest && (strings.Contains(reasons, "API_KEY_INVALID") || strings.Contains(msg, "api key not valid")):
		v.Class, v.Status, v.Reason = schema.ClassAuth, schema.StatusInvalid, schema.ReasonUnauthorized
	case status == http.StatusBadRequest && strings.Contains(msg, "enable billing"):
		v.Class, v.Status, v.Reason = schema.ClassBilling, schema.StatusInvalid, schema.ReasonNoBilling
		v.Detail = e.Error.Message
	case status == http.StatusBadRequest && strings.Contains(msg, "location is not supported"):
		v.Class, v.Status, v.Reason = schema.ClassAuth, schema.StatusInvalid, schema.ReasonForbidden
		v.Detail = e.Error.Message
	case status == http.StatusForbidden:
		v.Detail = e.Error.Message
	case status == http.StatusTooManyRequests && (strings.Contains(reasons, "PerDay") || strings.Contains(msg, "prepayment credits are depleted")):
		v.Class, v.Status, v.Reason = schema.ClassBilling, schema.StatusInvalid, schema.ReasonQuotaExceeded
	}
	return v
}

// seconds turns a protobuf Duration ("32s", "1.5s") into whole seconds.
func seconds(d string) string {
	d = strings.TrimSuffix(d, "s")
	if i := strings.IndexByte(d, '.'); i >= 0 {
		d = d[:i]
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return ""
		}
	}
	if d == "" || d == "0" {
		return "1"
	}
	return d
}

// Native request shapes (https://ai.google.dev/api/generate-content).

type part struct {
	Text             string            `json:"text,omitempty"`
	Thought          bool              `json:"thought,omitempty"`
	InlineData       *blob             `json:"inlineData,omitempty"`
	FunctionCall     *functionCall     `json:"functionCall,omitempty"`
	FunctionResponse *functionResponse `json:"functionResponse,omitempty"`
}

type blob struct {
	MimeType string `json:"mimeType"`
	Data     string `json:"data"`
}

type functionCall struct {
	ID   string          `json:"id,omitempty"`
	Name string          `json:"name"`
	Args json.RawMessage `json:"args,omitempty"`
}

type functionResponse struct {
	ID       string          `json:"id,omitempty"`
	Name     string          `json:"name"`
	Response json.RawMessage `json:"response"`
}

type content struct {
	Role  string `json:"role,omitempty"`
	Parts []part `json:"parts"`
}

type functionDecl struct {
	Name                 string          `json:"name"`
	Description          string          `json:"description,omitempty"`
	ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema,omitempty"`
}

type tool struct {
	FunctionDeclarations []functionDecl `json:"functionDeclarations"`
}

type toolConfig struct {
	FunctionCallingConfig struct {
		Mode                 string   `json:"mode"`
		AllowedFunctionNames []string `json:"allowedFunctionNames,omitempty"`
	} `json:"functionCallingConfig"`
}

type thinkingConfig struct {
	ThinkingBudget int `json:"thinkingBudget"`
}

type generationConfig struct {
	StopSequences      []string        `json:"stopSequences,omitempty"`
	ResponseMimeType   string          `json:"responseMimeType,omitempty"`
	ResponseJSONSchema json.RawMessage `json:"responseJsonSchema,omitempty"`
	CandidateCount     *int            `json:"candidateCount,omitempty"`
	MaxOutputTokens    *int            `json:"maxOutputTokens,omitempty"`
	Temperature        *float64        `json:"temperature,omitempty"`
	TopP               *float64        `json:"topP,omitempty"`
	Seed               *int64          `json:"seed,omitempty"`
	PresencePenalty    *float64        `json:"presencePenalty,omitempty"`
	FrequencyPenalty   *float64        `json:"frequencyPenalty,omitempty"`
	ThinkingConfig     *thinkingConfig `json:"thinkingConfig,omitempty"`
}

type generateRequest struct {
	Contents          []content         `json:"contents"`
	SystemInstruction *content          `json:"systemInstruction,omitempty"`
	Tools             []tool            `json:"tools,omitempty"`
	ToolConfig        *toolConfig       `json:"toolConfig,omitempty"`
	GenerationConfig  *generationConfig `json:"generationConfig,omitempty"`
}

// thinkingBudgets maps reasoning_effort to a thinking budget in tokens.
var thinkingBudgets = map[string]int{"minimal": 0, "low": 1024, "medium": 8192, "high": 24576}

// Native builds the generateContent body for req (exported for goldens and benchmarks).
func Native(req *schema.ChatRequest) (*generateRequest, error) {
	switch {
	case req.Choices() < 1 || req.Choices() > 8:
		return nil, schema.Unsupported(Name, "n outside 1..8")
	case req.Logprobs != nil && *req.Logprobs, req.TopLogprobs != nil:
		return nil, schema.Unsupported(Name, "logprobs")
	case len(req.LogitBias) > 0 && string(req.LogitBias) != "null":
		return nil, schema.Unsupported(Name, "logit_bias")
	case len(req.Stop) > 5:
		return nil, schema.Unsupported(Name, "more than 5 stop sequences")
	}
	for _, m := range req.Modalities {
		if m != "text" {
			return nil, schema.Unsupported(Name, "output modality "+m)
		}
	}
	out := &generateRequest{Contents: make([]content, 0, len(req.Messages))}
	names := map[string]string{} // tool call id → function name
	var system []part
	for _, m := range req.Messages {
		switch m.Role {
		case "system", "developer":
			system = append(system, part{Text: m.Content.String()})
		case "user":
			parts, err := userParts(m.Content)
			if err != nil {
				return nil, err
			}
			out.Contents = append(out.Contents, content{Role: "user", Parts: parts})
		case "assistant":
			var parts []part
			if t := m.Content.String(); t != "" {
				parts = append(parts, part{Text: t})
			}
			for _, tc := range m.ToolCalls {
				names[tc.ID] = tc.Function.Name
				args := json.RawMessage(tc.Function.Arguments)
				if !json.Valid(args) || len(args) == 0 {
					args = json.RawMessage("{}")
				}
				parts = append(parts, part{FunctionCall: &functionCall{Name: tc.Function.Name, Args: args}})
			}
			if len(parts) == 0 {
				parts = []part{{Text: ""}}
			}
			out.Contents = append(out.Contents, content{Role: "model", Parts: parts})
		case "tool", "function":
			name := names[m.ToolCallID]
			if name == "" {
				name = m.Name
			}
			if name == "" {
				return nil, &schema.FeatureError{Provider: Name, Feature: "a tool result whose tool_call_id matches no earlier tool call"}
			}
			p := part{FunctionResponse: &functionResponse{Name: name, Response: toolResult(m.Content.String())}}
			// Gemini wants all results of one turn in one user content.
			if n := len(out.Contents); n > 0 && out.Contents[n-1].Role == "user" && out.Contents[n-1].Parts[0].FunctionResponse != nil {
				out.Contents[n-1].Parts = append(out.Contents[n-1].Parts, p)
			} else {
				out.Contents = append(out.Contents, content{Role: "user", Parts: []part{p}})
			}
		default:
			return nil, &schema.FeatureError{Provider: Name, Feature: fmt.Sprintf("message role %q", m.Role)}
		}
	}
	if len(system) > 0 {
		out.SystemInstruction = &content{Parts: system}
	}
	if len(req.Tools) > 0 {
		decls := make([]functionDecl, 0, len(req.Tools))
		for _, t := range req.Tools {
			if t.Type != "function" {
				return nil, schema.Unsupported(Name, "tools of type "+t.Type)
			}
			decls = append(decls, functionDecl{Name: t.Function.Name, Description: t.Function.Description, ParametersJSONSchema: t.Function.Parameters})
		}
		out.Tools = []tool{{FunctionDeclarations: decls}}
	}
	if tc := req.ToolChoice; tc != nil {
		cfg := &toolConfig{}
		switch tc.Mode {
		case "auto":
			cfg.FunctionCallingConfig.Mode = "AUTO"
		case "none":
			cfg.FunctionCallingConfig.Mode = "NONE"
		case "required":
			cfg.FunctionCallingConfig.Mode = "ANY"
		case "function":
			cfg.FunctionCallingConfig.Mode = "ANY"
			cfg.FunctionCallingConfig.AllowedFunctionNames = []string{tc.Function}
		default:
			return nil, schema.Unsupported(Name, "tool_choice "+tc.Mode)
		}
		out.ToolConfig = cfg
	}
	g := generationConfig{
		StopSequences: req.Stop, MaxOutputTokens: req.OutputCap(), Temperature: req.Temperature, TopP: req.TopP,
		Seed: req.Seed, PresencePenalty: req.PresencePenalty, FrequencyPenalty: req.FrequencyPenalty,
	}
	if req.N != nil && *req.N != 1 {
		g.CandidateCount = req.N
	}
	if rf := req.ResponseFormat; rf != nil {
		switch rf.Type {
		case "json_object":
			g.ResponseMimeType = "application/json"
		case "json_schema":
			g.ResponseMimeType = "application/json"
			if rf.JSONSchema != nil {
				g.ResponseJSONSchema = rf.JSONSchema.Schema
			}
		case "text", "":
		default:
			return nil, schema.Unsupported(Name, "response_format "+rf.Type)
		}
	}
	if b, ok := thinkingBudgets[req.ReasoningEffort]; ok {
		g.ThinkingConfig = &thinkingConfig{ThinkingBudget: b}
	}
	if b, _ := json.Marshal(g); string(b) != "{}" {
		out.GenerationConfig = &g
	}
	return out, nil
}

func userParts(c schema.Content) ([]part, error) {
	if c.Parts == nil {
		return []part{{Text: c.String()}}, nil
	}
	parts := make([]part, 0, len(c.Parts))
	for _, p := range c.Parts {
		switch p.Type {
		case "text":
			parts = append(parts, part{Text: p.Text})
		case "image_url":
			if p.ImageURL == nil {
				return nil, schema.Unsupported(Name, "an image_url part without a url")
			}
			b, ok := dataURL(p.ImageURL.URL)
			if !ok {
				return nil, schema.Unsupported(Name, "image URLs other than base64 data: URLs")
			}
			parts = append(parts, part{InlineData: b})
		default:
			return nil, schema.Unsupported(Name, "content parts of type "+p.Type)
		}
	}
	if len(parts) == 0 {
		parts = []part{{Text: ""}}
	}
	return parts, nil
}

// dataURL splits "data:<mime>;base64,<data>".
func dataURL(u string) (*blob, bool) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return nil, false
	}
	meta, data, ok := strings.Cut(rest, ",")
	mime, isB64 := strings.CutSuffix(meta, ";base64")
	if !ok || !isB64 || mime == "" {
		return nil, false
	}
	return &blob{MimeType: mime, Data: data}, true
}

// toolResult is a functionResponse.response: Gemini wants an object, so a
// result that is not a JSON object is wrapped as {"content": ...}.
func toolResult(s string) json.RawMessage {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "{") && json.Valid([]byte(t)) {
		return json.RawMessage(t)
	}
	b, _ := json.Marshal(map[string]string{"content": s})
	return b
}

func (Adapter) ChatRequest(ctx context.Context, cred schema.Credential, req *schema.ChatRequest) (*http.Request, error) {
	m, err := modelPath(req.Model)
	if err != nil {
		return nil, err
	}
	body, err := Native(req)
	if err != nil {
		return nil, err
	}
	u := base(cred) + "/v1beta/models/" + m + ":generateContent"
	if req.Stream {
		u = base(cred) + "/v1beta/models/" + m + ":streamGenerateContent?alt=sse"
	}
	return schema.NewCall(ctx, u, body, req.Stream, cred.Key, authorize)
}
