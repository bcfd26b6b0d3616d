package translate

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ---- Anthropic request (input) ----

type msgRequest struct {
	Model     string          `json:"model"`
	Messages  []msgMessage    `json:"messages"`
	System    json.RawMessage `json:"system"`
	MaxTokens *int64          `json:"max_tokens"`
	Metadata  *struct {
		UserID *string `json:"user_id"`
	} `json:"metadata"`
	StopSequences []string  `json:"stop_sequences"`
	Stream        *bool     `json:"stream"`
	Temperature   *float64  `json:"temperature"`
	TopP          *float64  `json:"top_p"`
	Tools         []msgTool `json:"tools"`
	ToolChoice    *struct {
		Type                   string `json:"type"`
		Name                   string `json:"name"`
		DisableParallelToolUse *bool  `json:"disable_parallel_tool_use"`
	} `json:"tool_choice"`
}

type msgMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type msgBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	Source    *msgSource      `json:"source"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	Title     string          `json:"title"`
}

type msgSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type"`
	Data      string `json:"data"`
	URL       string `json:"url"`
}

type msgTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// ---- OpenAI request (output) ----

type oaiRequest struct {
	Model               string         `json:"model"`
	Messages            []oaiMessage   `json:"messages"`
	MaxCompletionTokens *int64         `json:"max_completion_tokens,omitempty"`
	Temperature         *float64       `json:"temperature,omitempty"`
	TopP                *float64       `json:"top_p,omitempty"`
	Stop                []string       `json:"stop,omitempty"`
	Stream              bool           `json:"stream,omitempty"`
	StreamOptions       *oaiStreamOpts `json:"stream_options,omitempty"`
	User                string         `json:"user,omitempty"`
	Tools               []oaiTool      `json:"tools,omitempty"`
	ToolChoice          any            `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool          `json:"parallel_tool_calls,omitempty"`
}

type oaiStreamOpts struct {
	IncludeUsage bool `json:"include_usage"`
}

type oaiMessage struct {
	Role       string            `json:"role"`
	Content    any               `json:"content"` // string, []oaiPart or nil
	ToolCalls  []chatToolCallOut `json:"tool_calls,omitempty"`
	ToolCallID string            `json:"tool_call_id,omitempty"`
}

type oaiPart struct {
	Type     string       `json:"type"`
	Text     *string      `json:"text,omitempty"`
	ImageURL *oaiImageURL `json:"image_url,omitempty"`
	File     *oaiFile     `json:"file,omitempty"`
}

type oaiImageURL struct {
	URL string `json:"url"`
}

type oaiFile struct {
	Filename string `json:"filename,omitempty"`
	FileData string `json:"file_data"`
}

type oaiTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

type oaiNamedChoice struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

// MessagesToChat translates an Anthropic Messages request body into an
// OpenAI Chat Completions request body for model (the body's model when
// empty): system → a leading system message; tool_use blocks → assistant
// tool_calls; tool_result blocks → tool messages (images in them follow in a
// user message); images and PDF documents → image_url and file parts; tools
// and tool_choice mapped; max_tokens → max_completion_tokens; stop_sequences →
// stop; metadata.user_id → user; stream adds stream_options.include_usage.
// top_k, thinking and cache_control are dropped; Anthropic built-in tools are
// rejected.
func MessagesToChat(body []byte, model string) ([]byte, error) {
	var req msgRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, decodeError("request", err)
	}
	if model == "" {
		model = req.Model
	}
	if model == "" {
		return nil, errors.New("model is required")
	}
	out := oaiRequest{Model: model, Temperature: req.Temperature, TopP: req.TopP}
	if req.MaxTokens != nil {
		if *req.MaxTokens <= 0 {
			return nil, errors.New("max_tokens must be a positive integer")
		}
		out.MaxCompletionTokens = req.MaxTokens
	}
	for _, s := range req.StopSequences {
		if s != "" {
			out.Stop = append(out.Stop, s)
		}
	}
	if req.Stream != nil && *req.Stream {
		out.Stream = true
		out.StreamOptions = &oaiStreamOpts{IncludeUsage: true}
	}
	if req.Metadata != nil && req.Metadata.UserID != nil {
		out.User = *req.Metadata.UserID
	}

	if err := reverseTools(&req, &out); err != nil {
		return nil, err
	}

	sys, err := systemText(req.System)
	if err != nil {
		return nil, err
	}
	if sys != nil {
		out.Messages = append(out.Messages, oaiMessage{Role: "system", Content: sys})
	}
	for i := range req.Messages {
		msgs, err := reverseMessage(&req.Messages[i], i)
		if err != nil {
			return nil, err
		}
		out.Messages = append(out.Messages, msgs...)
	}
	if len(req.Messages) == 0 {
		return nil, errors.New("messages must not be empty")
	}
	return marshal(out)
}

func reverseTools(req *msgRequest, out *oaiRequest) error {
	for i, t := range req.Tools {
		if t.Type != "" && t.Type != "custom" {
			return fmt.Errorf("tools[%d]: Anthropic built-in tools are not supported for OpenAI models", i)
		}
		if t.Name == "" {
			return fmt.Errorf("tools[%d].name is required", i)
		}
		schema := t.InputSchema
		if isNull(schema) {
			schema = emptySchema()
		} else if firstByte(schema) != '{' {
			return fmt.Errorf("tools[%d].input_schema must be a JSON object", i)
		}
		var ot oaiTool
		ot.Type = "function"
		ot.Function.Name = t.Name
		ot.Function.Description = t.Description
		ot.Function.Parameters = schema
		out.Tools = append(out.Tools, ot)
	}
	tc := req.ToolChoice
	if tc == nil || len(out.Tools) == 0 {
		if tc != nil && (tc.Type == "any" || tc.Type == "tool") {
			return errors.New("tool_choice needs tools")
		}
		return nil
	}
	switch tc.Type {
	case "auto", "":
		out.ToolChoice = "auto"
	case "any":
		out.ToolChoice = "required"
	case "none":
		out.ToolChoice = "none"
	case "tool":
		if tc.Name == "" {
			return errors.New("tool_choice.name is required")
		}
		var nc oaiNamedChoice
		nc.Type = "function"
		nc.Function.Name = tc.Name
		out.ToolChoice = nc
	default:
		return errors.New("tool_choice.type must be auto, any, tool or none")
	}
	if tc.DisableParallelToolUse != nil && *tc.DisableParallelToolUse && tc.Type != "none" {
		f := false
		out.ParallelToolCalls = &f
	}
	return nil
}

// systemText returns the system prompt as a string (one block) or text parts.
func systemText(raw json.RawMessage) (any, error) {
	switch firstByte(raw) {
	case 0:
		return nil, nil
	case 'n':
		if isNull(raw) {
			return nil, nil
		}
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if s == "" {
				return nil, nil
			}
			return s, nil
		}
	case '[':
		var blocks []msgBlock
		if err := json.Unmarshal(raw, &blocks); err != nil {
			return nil, decodeError("system", err)
		}
		var parts []oaiPart
		for i, b := range blocks {
			if b.Type != "text" {
				return nil, fmt.Errorf("system[%d]: only text blocks are allowed", i)
			}
			if b.Text != "" {
				parts = append(parts, textPart(b.Text))
			}
		}
		return simplifyParts(parts), nil
	}
	return nil, errors.New("system must be a string or an array of text blocks")
}

func textPart(s string) oaiPart { return oaiPart{Type: "text", Text: &s} }

// simplifyParts returns nil for no parts, a string for one text part, else parts.
func simplifyParts(parts []oaiPart) any {
	switch {
	case len(parts) == 0:
		return nil
	case len(parts) == 1 && parts[0].Type == "text":
		return *parts[0].Text
	}
	return parts
}

func parseBlocks(raw json.RawMessage, what string) (text string, isString bool, blocks []msgBlock, err error) {
	switch firstByte(raw) {
	case '"':
		if json.Unmarshal(raw, &text) == nil {
			return text, true, nil, nil
		}
	case '[':
		if e := json.Unmarshal(raw, &blocks); e != nil {
			return "", false, nil, decodeError(what, e)
		}
		return "", false, blocks, nil
	case 0, 'n':
		if isNull(raw) {
			return "", false, nil, nil
		}
	}
	return "", false, nil, fmt.Errorf("%s must be a string or an array of content blocks", what)
}

func reverseMessage(m *msgMessage, i int) ([]oaiMessage, error) {
	what := fmt.Sprintf("messages[%d].content", i)
	text, isString, blocks, err := parseBlocks(m.Content, what)
	if err != nil {
		return nil, err
	}
	switch m.Role {
	case "user":
		if isString {
			return []oaiMessage{{Role: "user", Content: text}}, nil
		}
		var out []oaiMessage
		var parts []oaiPart
		for j := range blocks {
			b := &blocks[j]
			switch b.Type {
			case "tool_result":
				if b.ToolUseID == "" {
					return nil, fmt.Errorf("%s[%d].tool_use_id is required", what, j)
				}
				content, images, err := toolResultContent(b.Content, fmt.Sprintf("%s[%d].content", what, j))
				if err != nil {
					return nil, err
				}
				out = append(out, oaiMessage{Role: "tool", ToolCallID: b.ToolUseID, Content: content})
				parts = append(parts, images...)
			default:
				p, skip, err := userPart(b, fmt.Sprintf("%s[%d]", what, j))
				if err != nil {
					return nil, err
				}
				if !skip {
					parts = append(parts, p)
				}
			}
		}
		if c := simplifyParts(parts); c != nil {
			out = append(out, oaiMessage{Role: "user", Content: c})
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%s must not be empty", what)
		}
		return out, nil

	case "assistant":
		msg := oaiMessage{Role: "assistant"}
		var sb strings.Builder
		sb.WriteString(text)
		for j := range blocks {
			b := &blocks[j]
			switch b.Type {
			case "text":
				sb.WriteString(b.Text)
			case "tool_use":
				if b.ID == "" || b.Name == "" {
					return nil, fmt.Errorf("%s[%d]: tool_use needs id and name", what, j)
				}
				if !isNull(b.Input) && firstByte(b.Input) != '{' {
					return nil, fmt.Errorf("%s[%d].input must be a JSON object", what, j)
				}
				tc := chatToolCallOut{ID: b.ID, Type: "function"}
				tc.Function.Name = b.Name
				tc.Function.Arguments = compactArgs(b.Input)
				msg.ToolCalls = append(msg.ToolCalls, tc)
			case "thinking", "redacted_thinking":
				// Anthropic-only reasoning; OpenAI has no place for it.
			default:
				return nil, fmt.Errorf("%s[%d]: block type %s is not supported for OpenAI models", what, j, quoteIdent(b.Type))
			}
		}
		if sb.Len() > 0 {
			msg.Content = sb.String()
		} else if len(msg.ToolCalls) == 0 {
			return nil, nil // an empty assistant turn says nothing
		}
		return []oaiMessage{msg}, nil
	}
	return nil, fmt.Errorf("messages[%d]: role must be user or assistant", i)
}

// userPart converts one non-tool-result block of a user message.
func userPart(b *msgBlock, where string) (p oaiPart, skip bool, err error) {
	switch b.Type {
	case "text":
		if b.Text == "" {
			return p, true, nil
		}
		return textPart(b.Text), false, nil
	case "image":
		if b.Source == nil {
			return p, false, fmt.Errorf("%s.source is required", where)
		}
		switch b.Source.Type {
		case "base64":
			if b.Source.MediaType == "" || b.Source.Data == "" {
				return p, false, fmt.Errorf("%s.source needs media_type and data", where)
			}
			return oaiPart{Type: "image_url", ImageURL: &oaiImageURL{URL: "data:" + b.Source.MediaType + ";base64," + b.Source.Data}}, false, nil
		case "url":
			if b.Source.URL == "" {
				return p, false, fmt.Errorf("%s.source.url is required", where)
			}
			return oaiPart{Type: "image_url", ImageURL: &oaiImageURL{URL: b.Source.URL}}, false, nil
		}
		return p, false, fmt.Errorf("%s: image source must be base64 or url for OpenAI models", where)
	case "document":
		if b.Source != nil && b.Source.Type == "base64" && b.Source.MediaType == "application/pdf" && b.Source.Data != "" {
			name := b.Title
			if name == "" {
				name = "document.pdf"
			}
			return oaiPart{Type: "file", File: &oaiFile{Filename: name, FileData: "data:application/pdf;base64," + b.Source.Data}}, false, nil
		}
		if b.Source != nil && b.Source.Type == "text" {
			if b.Source.Data == "" {
				return p, true, nil
			}
			return textPart(b.Source.Data), false, nil
		}
		return p, false, fmt.Errorf("%s: only base64 PDF and text documents are supported for OpenAI models", where)
	}
	return p, false, fmt.Errorf("%s: block type %s is not supported for OpenAI models", where, quoteIdent(b.Type))
}

// toolResultContent returns a tool message's content (string or text parts)
// and the images of the result, which OpenAI tool messages cannot hold.
func toolResultContent(raw json.RawMessage, what string) (any, []oaiPart, error) {
	text, isString, blocks, err := parseBlocks(raw, what)
	if err != nil {
		return nil, nil, err
	}
	if isString || len(blocks) == 0 {
		return text, nil, nil
	}
	var parts, images []oaiPart
	for j := range blocks {
		b := &blocks[j]
		p, skip, err := userPart(b, fmt.Sprintf("%s[%d]", what, j))
		if err != nil {
			return nil, nil, err
		}
		switch {
		case skip:
		case p.Type == "text":
			parts = append(parts, p)
		default:
			images = append(images, p)
		}
	}
	c := simplifyParts(parts)
	if c == nil {
		c = ""
	}
	return c, images, nil
}
