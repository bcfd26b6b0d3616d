package translate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// DefaultMaxTokens is the Anthropic max_tokens sent when an OpenAI request
// names neither max_tokens nor max_completion_tokens.
const DefaultMaxTokens = 4096

// ---- OpenAI request (input) ----

type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Stop                json.RawMessage `json:"stop"`
	Stream              *bool           `json:"stream"`
	User                *string         `json:"user"`
	N                   *int64          `json:"n"`
	Logprobs            *bool           `json:"logprobs"`
	TopLogprobs         *int64          `json:"top_logprobs"`
	ResponseFormat      *struct {
		Type string `json:"type"`
	} `json:"response_format"`
	Tools             []chatTool      `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	Functions         json.RawMessage `json:"functions"`
	FunctionCall      json.RawMessage `json:"function_call"`
	Modalities        []string        `json:"modalities"`
}

type chatMessage struct {
	Role         string          `json:"role"`
	Content      json.RawMessage `json:"content"`
	ToolCalls    []chatToolCall  `json:"tool_calls"`
	ToolCallID   *string         `json:"tool_call_id"`
	Refusal      *string         `json:"refusal"`
	FunctionCall json.RawMessage `json:"function_call"`
}

type chatToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type chatPart struct {
	Type     string          `json:"type"`
	Text     *string         `json:"text"`
	Refusal  *string         `json:"refusal"`
	ImageURL json.RawMessage `json:"image_url"`
	File     *struct {
		FileData string `json:"file_data"`
		FileID   string `json:"file_id"`
		Filename string `json:"filename"`
	} `json:"file"`
	CacheControl json.RawMessage `json:"cache_control"`
}

type chatTool struct {
	Type     string `json:"type"`
	Function *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// ---- Anthropic request (output) ----

type anthRequest struct {
	Model         string          `json:"model"`
	System        any             `json:"system,omitempty"` // string or []anthBlock
	Messages      []anthMessage   `json:"messages"`
	MaxTokens     int64           `json:"max_tokens"`
	Metadata      *anthMetadata   `json:"metadata,omitempty"`
	StopSequences []string        `json:"stop_sequences,omitempty"`
	Stream        bool            `json:"stream,omitempty"`
	Temperature   *float64        `json:"temperature,omitempty"`
	TopP          *float64        `json:"top_p,omitempty"`
	Tools         []anthTool      `json:"tools,omitempty"`
	ToolChoice    *anthToolChoice `json:"tool_choice,omitempty"`
}

type anthMetadata struct {
	UserID string `json:"user_id"`
}

type anthMessage struct {
	Role    string `json:"role"`
	Content any    `json:"content"` // string or []anthBlock
	blocks  []anthBlock
}

type anthBlock struct {
	Type         string          `json:"type"`
	Text         string          `json:"text,omitempty"`
	Source       *anthSource     `json:"source,omitempty"`
	ID           string          `json:"id,omitempty"`
	Name         string          `json:"name,omitempty"`
	Input        json.RawMessage `json:"input,omitempty"`
	ToolUseID    string          `json:"tool_use_id,omitempty"`
	Content      any             `json:"content,omitempty"` // tool_result: string or []anthBlock
	CacheControl json.RawMessage `json:"cache_control,omitempty"`
}

type anthSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type anthTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anthToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

// ChatToMessages translates an OpenAI Chat Completions request body into an
// Anthropic Messages request body for model (when model is empty, the body's
// own model is kept). System and developer messages become the top-level
// system; consecutive messages of one role are merged; tool messages become
// tool_result blocks; images, tools, tool_choice, stop, user and the sampling
// parameters are mapped; OpenAI-only fields are dropped or, where dropping
// would silently change the answer (n > 1, logprobs, json_schema, audio,
// legacy functions), rejected with a client-safe error.
func ChatToMessages(body []byte, model string) ([]byte, error) {
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, decodeError("request", err)
	}
	if model == "" {
		model = req.Model
	}
	if model == "" {
		return nil, errors.New("model is required")
	}
	if err := checkUnsupported(&req); err != nil {
		return nil, err
	}

	out := anthRequest{Model: model, Temperature: req.Temperature, TopP: req.TopP}

	switch {
	case req.MaxCompletionTokens != nil:
		out.MaxTokens = *req.MaxCompletionTokens
	case req.MaxTokens != nil:
		out.MaxTokens = *req.MaxTokens
	default:
		out.MaxTokens = DefaultMaxTokens
	}
	if out.MaxTokens <= 0 {
		return nil, errors.New("max_tokens must be a positive integer")
	}
	if req.Stream != nil && *req.Stream {
		out.Stream = true
	}
	if req.User != nil && *req.User != "" {
		out.Metadata = &anthMetadata{UserID: *req.User}
	}
	stops, err := parseStop(req.Stop)
	if err != nil {
		return nil, err
	}
	out.StopSequences = stops

	if err := convertTools(&req, &out); err != nil {
		return nil, err
	}
	if err := convertMessages(req.Messages, &out); err != nil {
		return nil, err
	}
	return marshal(out)
}

func checkUnsupported(req *chatRequest) error {
	if req.N != nil && *req.N != 1 {
		return errors.New("n must be 1 for Anthropic models")
	}
	if req.Logprobs != nil && *req.Logprobs {
		return errors.New("logprobs is not supported for Anthropic models")
	}
	if req.TopLogprobs != nil && *req.TopLogprobs > 0 {
		return errors.New("top_logprobs is not supported for Anthropic models")
	}
	if req.ResponseFormat != nil {
		switch req.ResponseFormat.Type {
		case "", "text", "json_object":
		case "json_schema":
			return errors.New("response_format json_schema is not supported for Anthropic models")
		default:
			return errors.New("response_format type is not supported")
		}
	}
	for _, m := range req.Modalities {
		if m != "text" {
			return errors.New("only the text modality is supported for Anthropic models")
		}
	}
	if !isNull(req.Functions) || !isNull(req.FunctionCall) {
		return errors.New("functions and function_call are not supported; use tools and tool_choice")
	}
	return nil
}

func parseStop(raw json.RawMessage) ([]string, error) {
	var list []string
	switch firstByte(raw) {
	case 0, 'n':
		if !isNull(raw) {
			return nil, errors.New("stop must be a string or an array of strings")
		}
		return nil, nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, errors.New("stop must be a string or an array of strings")
		}
		list = []string{s}
	case '[':
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, errors.New("stop must be a string or an array of strings")
		}
	default:
		return nil, errors.New("stop must be a string or an array of strings")
	}
	out := list[:0]
	for _, s := range list {
		if s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func convertTools(req *chatRequest, out *anthRequest) error {
	for i, t := range req.Tools {
		if t.Type != "function" && t.Type != "" {
			return fmt.Errorf("tools[%d]: only function tools are supported for Anthropic models", i)
		}
		if t.Function == nil || t.Function.Name == "" {
			return fmt.Errorf("tools[%d].function.name is required", i)
		}
		schema := t.Function.Parameters
		if isNull(schema) {
			schema = emptySchema()
		} else if firstByte(schema) != '{' {
			return fmt.Errorf("tools[%d].function.parameters must be a JSON object", i)
		}
		out.Tools = append(out.Tools, anthTool{
			Name:        t.Function.Name,
			Description: t.Function.Description,
			InputSchema: schema,
		})
	}

	var choice *anthToolChoice
	raw := req.ToolChoice
	switch firstByte(raw) {
	case 0, 'n':
		if !isNull(raw) {
			return errors.New("tool_choice is not valid")
		}
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return errors.New("tool_choice is not valid")
		}
		switch s {
		case "auto":
			choice = &anthToolChoice{Type: "auto"}
		case "none":
			choice = &anthToolChoice{Type: "none"}
		case "required":
			if len(out.Tools) == 0 {
				return errors.New("tool_choice \"required\" needs tools")
			}
			choice = &anthToolChoice{Type: "any"}
		default:
			return errors.New("tool_choice must be \"auto\", \"none\", \"required\" or a function")
		}
	case '{':
		var obj struct {
			Type     string `json:"type"`
			Function *struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return errors.New("tool_choice is not valid")
		}
		if obj.Type != "function" || obj.Function == nil || obj.Function.Name == "" {
			return errors.New("tool_choice must be \"auto\", \"none\", \"required\" or a function")
		}
		if len(out.Tools) == 0 {
			return errors.New("tool_choice names a function but no tools are given")
		}
		choice = &anthToolChoice{Type: "tool", Name: obj.Function.Name}
	default:
		return errors.New("tool_choice is not valid")
	}

	if len(out.Tools) == 0 {
		return nil // auto/none without tools: nothing to say
	}
	if req.ParallelToolCalls != nil && !*req.ParallelToolCalls {
		if choice == nil {
			choice = &anthToolChoice{Type: "auto"}
		}
		if choice.Type != "none" {
			choice.DisableParallelToolUse = true
		}
	}
	out.ToolChoice = choice
	return nil
}

// content is a parsed OpenAI message content: a string, parts, or nothing.
type content struct {
	isString bool
	text     string
	parts    []chatPart
}

func parseContent(raw json.RawMessage, i int) (content, error) {
	var c content
	switch firstByte(raw) {
	case 0:
		return c, nil
	case 'n':
		if isNull(raw) {
			return c, nil
		}
	case '"':
		c.isString = true
		if err := json.Unmarshal(raw, &c.text); err == nil {
			return c, nil
		}
	case '[':
		if err := json.Unmarshal(raw, &c.parts); err != nil {
			return c, decodeError(fmt.Sprintf("messages[%d].content", i), err)
		}
		return c, nil
	}
	return c, fmt.Errorf("messages[%d].content must be a string or an array of parts", i)
}

func convertMessages(msgs []chatMessage, out *anthRequest) error {
	var system []anthBlock
	var list []anthMessage
	add := func(role string, blocks []anthBlock) {
		if len(blocks) == 0 {
			return
		}
		if n := len(list); n > 0 && list[n-1].Role == role {
			list[n-1].blocks = append(list[n-1].blocks, blocks...)
			return
		}
		list = append(list, anthMessage{Role: role, blocks: blocks})
	}

	for i := range msgs {
		m := &msgs[i]
		c, err := parseContent(m.Content, i)
		if err != nil {
			return err
		}
		switch m.Role {
		case "system", "developer":
			blocks, err := textBlocks(c, i)
			if err != nil {
				return err
			}
			system = append(system, blocks...)
		case "user":
			blocks, err := userBlocks(c, i)
			if err != nil {
				return err
			}
			if len(blocks) == 0 {
				return fmt.Errorf("messages[%d]: content must not be empty", i)
			}
			add("user", blocks)
		case "assistant":
			if !isNull(m.FunctionCall) {
				return fmt.Errorf("messages[%d]: function_call is not supported; use tool_calls", i)
			}
			blocks, err := textBlocks(c, i)
			if err != nil {
				return err
			}
			if len(blocks) == 0 && m.Refusal != nil && *m.Refusal != "" {
				blocks = append(blocks, anthBlock{Type: "text", Text: *m.Refusal})
			}
			for j, tc := range m.ToolCalls {
				b, err := toolUseBlock(tc, i, j)
				if err != nil {
					return err
				}
				blocks = append(blocks, b)
			}
			add("assistant", blocks) // an empty assistant turn is dropped
		case "tool":
			if m.ToolCallID == nil || *m.ToolCallID == "" {
				return fmt.Errorf("messages[%d].tool_call_id is required", i)
			}
			b := anthBlock{Type: "tool_result", ToolUseID: toolID(*m.ToolCallID)}
			if c.isString {
				if c.text != "" {
					b.Content = c.text
				}
			} else if len(c.parts) > 0 {
				inner, err := textBlocks(c, i)
				if err != nil {
					return err
				}
				if len(inner) > 0 {
					b.Content = inner
				}
			}
			add("user", []anthBlock{b})
		case "function":
			return fmt.Errorf("messages[%d]: role \"function\" is not supported; use tool messages", i)
		default:
			return fmt.Errorf("messages[%d]: unsupported role", i)
		}
	}

	if len(list) == 0 {
		return errors.New("messages must contain at least one user or assistant message")
	}
	for i := range list {
		list[i].Content = simplify(list[i].blocks)
	}
	out.Messages = list
	if len(system) > 0 {
		out.System = simplify(system)
	}
	return nil
}

// simplify returns a lone plain text block as a string, else the blocks.
func simplify(blocks []anthBlock) any {
	if len(blocks) == 1 && blocks[0].Type == "text" && len(blocks[0].CacheControl) == 0 {
		return blocks[0].Text
	}
	return blocks
}

// textBlocks converts content that may only hold text (system, assistant,
// tool) to text blocks, skipping empty text.
func textBlocks(c content, i int) ([]anthBlock, error) {
	if c.isString {
		if c.text == "" {
			return nil, nil
		}
		return []anthBlock{{Type: "text", Text: c.text}}, nil
	}
	var blocks []anthBlock
	for j, p := range c.parts {
		var text string
		switch {
		case p.Type == "text" && p.Text != nil:
			text = *p.Text
		case p.Type == "refusal" && p.Refusal != nil:
			text = *p.Refusal
		default:
			return nil, fmt.Errorf("messages[%d].content[%d]: only text parts are allowed here", i, j)
		}
		if text != "" {
			blocks = append(blocks, anthBlock{Type: "text", Text: text, CacheControl: cacheControl(p.CacheControl)})
		}
	}
	return blocks, nil
}

func cacheControl(raw json.RawMessage) json.RawMessage {
	if firstByte(raw) == '{' {
		return raw
	}
	return nil
}

func userBlocks(c content, i int) ([]anthBlock, error) {
	if c.isString {
		if c.text == "" {
			return nil, nil
		}
		return []anthBlock{{Type: "text", Text: c.text}}, nil
	}
	var blocks []anthBlock
	for j, p := range c.parts {
		switch p.Type {
		case "text":
			if p.Text == nil {
				return nil, fmt.Errorf("messages[%d].content[%d].text is required", i, j)
			}
			if *p.Text != "" {
				blocks = append(blocks, anthBlock{Type: "text", Text: *p.Text, CacheControl: cacheControl(p.CacheControl)})
			}
		case "image_url":
			src, err := imageSource(p.ImageURL, i, j)
			if err != nil {
				return nil, err
			}
			blocks = append(blocks, anthBlock{Type: "image", Source: src, CacheControl: cacheControl(p.CacheControl)})
		case "file":
			if p.File == nil || p.File.FileData == "" {
				return nil, fmt.Errorf("messages[%d].content[%d]: only inline file_data is supported for Anthropic models", i, j)
			}
			mt, data, ok := parseDataURL(p.File.FileData)
			if !ok || mt != "application/pdf" {
				return nil, fmt.Errorf("messages[%d].content[%d]: file_data must be a base64 data: URL of a PDF", i, j)
			}
			blocks = append(blocks, anthBlock{Type: "document",
				Source:       &anthSource{Type: "base64", MediaType: mt, Data: data},
				CacheControl: cacheControl(p.CacheControl)})
		default:
			return nil, fmt.Errorf("messages[%d].content[%d]: part type %s is not supported for Anthropic models", i, j, quoteIdent(p.Type))
		}
	}
	return blocks, nil
}

// imageType returns the Anthropic media type for an image data URL's type.
func imageType(mediaType string) (string, bool) {
	switch mediaType {
	case "image/jpeg", "image/jpg":
		return "image/jpeg", true
	case "image/png", "image/gif", "image/webp":
		return mediaType, true
	}
	return "", false
}

func imageSource(raw json.RawMessage, i, j int) (*anthSource, error) {
	var url string
	switch firstByte(raw) {
	case '"':
		_ = json.Unmarshal(raw, &url)
	case '{':
		var obj struct {
			URL string `json:"url"`
		}
		_ = json.Unmarshal(raw, &obj)
		url = obj.URL
	}
	if url == "" {
		return nil, fmt.Errorf("messages[%d].content[%d].image_url.url is required", i, j)
	}
	if hasPrefixFold(url, "data:") {
		mt, data, ok := parseDataURL(url)
		if !ok {
			return nil, fmt.Errorf("messages[%d].content[%d]: image data URL must be base64-encoded", i, j)
		}
		norm, ok := imageType(mt)
		if !ok {
			return nil, fmt.Errorf("messages[%d].content[%d]: image type must be jpeg, png, gif or webp", i, j)
		}
		return &anthSource{Type: "base64", MediaType: norm, Data: data}, nil
	}
	if hasPrefixFold(url, "https://") || hasPrefixFold(url, "http://") {
		return &anthSource{Type: "url", URL: url}, nil
	}
	return nil, fmt.Errorf("messages[%d].content[%d]: image_url must be an http(s) or data: URL", i, j)
}

// parseDataURL splits "data:<media type>[;params];base64,<data>".
func parseDataURL(u string) (mediaType, data string, ok bool) {
	if !hasPrefixFold(u, "data:") {
		return "", "", false
	}
	meta, data, found := strings.Cut(u[len("data:"):], ",")
	if !found {
		return "", "", false
	}
	params := strings.Split(meta, ";")
	if len(params) < 2 || !strings.EqualFold(strings.TrimSpace(params[len(params)-1]), "base64") {
		return "", "", false
	}
	mediaType = strings.ToLower(strings.TrimSpace(params[0]))
	if mediaType == "" || data == "" {
		return "", "", false
	}
	return mediaType, data, true
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func toolUseBlock(tc chatToolCall, i, j int) (anthBlock, error) {
	if tc.ID == "" {
		return anthBlock{}, fmt.Errorf("messages[%d].tool_calls[%d].id is required", i, j)
	}
	if tc.Type != "" && tc.Type != "function" {
		return anthBlock{}, fmt.Errorf("messages[%d].tool_calls[%d]: only function tool calls are supported", i, j)
	}
	if tc.Function.Name == "" {
		return anthBlock{}, fmt.Errorf("messages[%d].tool_calls[%d].function.name is required", i, j)
	}
	args := bytes.TrimSpace([]byte(tc.Function.Arguments))
	if len(args) == 0 {
		args = []byte("{}")
	}
	if !json.Valid(args) {
		return anthBlock{}, fmt.Errorf("messages[%d].tool_calls[%d].function.arguments is not valid JSON", i, j)
	}
	if args[0] != '{' {
		return anthBlock{}, fmt.Errorf("messages[%d].tool_calls[%d].function.arguments must be a JSON object", i, j)
	}
	return anthBlock{Type: "tool_use", ID: toolID(tc.ID), Name: tc.Function.Name, Input: args}, nil
}

// toolID makes an OpenAI tool call id acceptable to Anthropic
// (^[a-zA-Z0-9_-]+$), mapping other bytes to '_' so that a tool_use id and
// the tool_result naming it stay equal.
func toolID(id string) string {
	ok := true
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			ok = false
			break
		}
	}
	if ok {
		return id
	}
	b := []byte(id)
	for i, c := range b {
		if !idByte(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
