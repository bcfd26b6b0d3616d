package chat

import (
	"github.com/synthstack/byok/shared/apperr"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// chatRequest is what the router needs from an OpenAI-format chat request;
// the body itself travels on with unknown fields intact.
type chatRequest struct {
	Body          []byte
	Model         string // as requested
	UpstreamModel string // without a provider/ prefix
	Stream        bool
	IncludeUsage  bool // the client asked for the usage chunk
	MaxTokens     int64
}

// parseChatRequest checks the fields the router relies on, with clear
// errors for wrong JSON and wrong types.
func parseChatRequest(body []byte) (*chatRequest, error) {
	if len(body) == 0 {
		return nil, apperr.New(apperr.InvalidRequest, "request body is empty; a JSON object is required")
	}
	if !gjson.ValidBytes(body) {
		return nil, apperr.New(apperr.InvalidRequest, "request body is not valid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, apperr.New(apperr.InvalidRequest, "request body must be a JSON object")
	}
	f := root.Get("model")
	if !f.Exists() {
		return nil, apperr.New(apperr.InvalidRequest, "field \"model\" is required")
	}
	if f.Type != gjson.String {
		return nil, apperr.New(apperr.InvalidRequest, "field \"model\" must be a string")
	}
	req := &chatRequest{Body: body, Model: f.String()}
	m := root.Get("messages")
	if !m.IsArray() || len(m.Array()) == 0 {
		return nil, apperr.New(apperr.InvalidRequest, "field \"messages\" must be a non-empty array")
	}
	if s := root.Get("stream"); s.Exists() && s.Type != gjson.Null {
		if s.Type != gjson.True && s.Type != gjson.False {
			return nil, apperr.New(apperr.InvalidRequest, "field \"stream\" must be a boolean")
		}
		req.Stream = s.Bool()
	}
	for _, name := range []string{"max_tokens", "max_completion_tokens"} {
		if v := root.Get(name); v.Exists() && v.Type != gjson.Null {
			if v.Type != gjson.Number || v.Int() < 1 || float64(v.Int()) != v.Num {
				return nil, apperr.New(apperr.InvalidRequest, "field %q must be a positive integer", name)
			}
			req.MaxTokens = v.Int()
		}
	}
	if v := root.Get("stream_options.include_usage"); v.Exists() {
		req.IncludeUsage = v.Bool()
	}
	return req, nil
}

// openAIBody returns the body for an OpenAI upstream: the model without its
// provider/ prefix and, for streams, usage reporting switched on. Every
// other field is passed through untouched.
func (r *chatRequest) openAIBody() ([]byte, error) {
	body := r.Body
	var err error
	if r.UpstreamModel != r.Model {
		if body, err = sjson.SetBytes(body, "model", r.UpstreamModel); err != nil {
			return nil, err
		}
	}
	if r.Stream && !r.IncludeUsage {
		if body, err = sjson.SetBytes(body, "stream_options.include_usage", true); err != nil {
			return nil, err
		}
	}
	return body, nil
}
