package chat

import (
	"bytes"
	"mime"
	"mime/multipart"
	"net/http"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// operation is the kind of AI request.
type operation int

const (
	opChat          operation = iota // OpenAI Chat Completions
	opMessages                       // Anthropic Messages
	opEmbeddings                     // OpenAI embeddings
	opTranscription                  // OpenAI audio transcription (multipart)
)

func (o operation) endpoint() string {
	switch o {
	case opMessages:
		return "messages"
	case opEmbeddings:
		return "embeddings"
	case opTranscription:
		return "audio.transcriptions"
	}
	return "chat.completions"
}

// anthropicCaller reports whether the caller speaks the Anthropic protocol
// (errors and responses in its shape).
func (o operation) anthropicCaller() bool { return o == opMessages }

// apiRequest is what the router needs from a request; the body itself
// travels on with unknown fields intact.
type apiRequest struct {
	Op            operation
	Body          []byte
	ContentType   string // multipart requests keep theirs (boundary)
	Model         string // as requested
	UpstreamModel string // without a provider/ prefix
	Stream        bool
	IncludeUsage  bool // the client asked for the OpenAI usage chunk
	MaxTokens     int64
	// Header holds the client headers forwarded to an Anthropic upstream
	// (anthropic-version, anthropic-beta): never credentials.
	Header http.Header
}

func jsonRoot(body []byte) (gjson.Result, error) {
	if len(body) == 0 {
		return gjson.Result{}, apperr.New(apperr.InvalidRequest, "request body is empty; a JSON object is required")
	}
	if !gjson.ValidBytes(body) {
		return gjson.Result{}, apperr.New(apperr.InvalidRequest, "request body is not valid JSON")
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return gjson.Result{}, apperr.New(apperr.InvalidRequest, "request body must be a JSON object")
	}
	return root, nil
}

func modelField(root gjson.Result) (string, error) {
	f := root.Get("model")
	if !f.Exists() {
		return "", apperr.New(apperr.InvalidRequest, "field \"model\" is required")
	}
	if f.Type != gjson.String {
		return "", apperr.New(apperr.InvalidRequest, "field \"model\" must be a string")
	}
	if f.Str == "" {
		return "", apperr.New(apperr.InvalidRequest, "field \"model\" must not be empty")
	}
	return f.String(), nil
}

func streamField(root gjson.Result) (bool, error) {
	s := root.Get("stream")
	if !s.Exists() || s.Type == gjson.Null {
		return false, nil
	}
	if s.Type != gjson.True && s.Type != gjson.False {
		return false, apperr.New(apperr.InvalidRequest, "field \"stream\" must be a boolean")
	}
	return s.Bool(), nil
}

func positiveInt(root gjson.Result, name string) (int64, error) {
	v := root.Get(name)
	if !v.Exists() || v.Type == gjson.Null {
		return 0, nil
	}
	if v.Type != gjson.Number || v.Int() < 1 || float64(v.Int()) != v.Num {
		return 0, apperr.New(apperr.InvalidRequest, "field %q must be a positive integer", name)
	}
	return v.Int(), nil
}

// parseChatRequest checks the fields the router relies on in an OpenAI
// chat request, with clear errors for wrong JSON and wrong types.
func parseChatRequest(body []byte) (*apiRequest, error) {
	root, err := jsonRoot(body)
	if err != nil {
		return nil, err
	}
	model, err := modelField(root)
	if err != nil {
		return nil, err
	}
	req := &apiRequest{Op: opChat, Body: body, Model: model}
	m := root.Get("messages")
	if !m.IsArray() || !m.Get("0").Exists() {
		return nil, apperr.New(apperr.InvalidRequest, "field \"messages\" must be a non-empty array")
	}
	if req.Stream, err = streamField(root); err != nil {
		return nil, err
	}
	for _, name := range []string{"max_tokens", "max_completion_tokens"} {
		n, err := positiveInt(root, name)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			req.MaxTokens = n
		}
	}
	if v := root.Get("stream_options.include_usage"); v.Exists() {
		req.IncludeUsage = v.Bool()
	}
	return req, nil
}

// parseMessagesRequest checks an Anthropic Messages request.
func parseMessagesRequest(body []byte, h http.Header) (*apiRequest, error) {
	root, err := jsonRoot(body)
	if err != nil {
		return nil, err
	}
	model, err := modelField(root)
	if err != nil {
		return nil, err
	}
	req := &apiRequest{Op: opMessages, Body: body, Model: model, Header: http.Header{}}
	m := root.Get("messages")
	if !m.IsArray() || !m.Get("0").Exists() {
		return nil, apperr.New(apperr.InvalidRequest, "field \"messages\" must be a non-empty array")
	}
	if req.MaxTokens, err = positiveInt(root, "max_tokens"); err != nil {
		return nil, err
	}
	if req.MaxTokens == 0 {
		return nil, apperr.New(apperr.InvalidRequest, "field \"max_tokens\" is required")
	}
	if req.Stream, err = streamField(root); err != nil {
		return nil, err
	}
	for _, k := range []string{"anthropic-version", "anthropic-beta"} {
		if v := h.Get(k); v != "" && len(v) < 256 {
			req.Header.Set(k, v)
		}
	}
	return req, nil
}

// parseEmbeddingsRequest checks an OpenAI embeddings request.
func parseEmbeddingsRequest(body []byte) (*apiRequest, error) {
	root, err := jsonRoot(body)
	if err != nil {
		return nil, err
	}
	model, err := modelField(root)
	if err != nil {
		return nil, err
	}
	in := root.Get("input")
	if !in.Exists() || (in.Type != gjson.String && !in.IsArray()) || (in.IsArray() && !in.Get("0").Exists()) || (in.Type == gjson.String && in.Str == "") {
		return nil, apperr.New(apperr.InvalidRequest, "field \"input\" must be a non-empty string or array")
	}
	return &apiRequest{Op: opEmbeddings, Body: body, Model: model}, nil
}

// parseTranscriptionRequest checks a multipart transcription upload held in
// body (read once, bounded): it needs a "file" part and a "model" field.
// The body is forwarded as it is, without a second copy.
func parseTranscriptionRequest(body []byte, contentType string) (*apiRequest, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, apperr.New(apperr.InvalidRequest, "Content-Type must be multipart/form-data with a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	req := &apiRequest{Op: opTranscription, Body: body, ContentType: contentType}
	hasFile := false
	for {
		p, err := mr.NextPart()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			return nil, apperr.New(apperr.InvalidRequest, "the multipart body is malformed")
		}
		switch p.FormName() {
		case "file":
			if p.FileName() == "" {
				return nil, apperr.New(apperr.InvalidRequest, "part \"file\" must be a file upload")
			}
			hasFile = true
		case "model":
			var b bytes.Buffer
			if _, err := b.ReadFrom(http.MaxBytesReader(nil, p, 256)); err != nil {
				return nil, apperr.New(apperr.InvalidRequest, "field \"model\" is too long")
			}
			req.Model = b.String()
		case "stream":
			var b bytes.Buffer
			_, _ = b.ReadFrom(http.MaxBytesReader(nil, p, 16))
			if b.String() == "true" {
				return nil, apperr.New(apperr.InvalidRequest, "streamed transcription is not supported; omit \"stream\"")
			}
		}
		p.Close()
	}
	if !hasFile {
		return nil, apperr.New(apperr.InvalidRequest, "a \"file\" part is required")
	}
	if req.Model == "" {
		return nil, apperr.New(apperr.InvalidRequest, "field \"model\" is required")
	}
	return req, nil
}

// openAIBody returns the body for an OpenAI upstream: the model without its
// provider/ prefix and, for chat streams, usage reporting switched on. Every
// other field is passed through untouched.
func (r *apiRequest) openAIBody() ([]byte, error) {
	body := r.Body
	var err error
	if r.UpstreamModel != r.Model {
		if body, err = sjson.SetBytes(body, "model", r.UpstreamModel); err != nil {
			return nil, err
		}
	}
	if r.Op == opChat && r.Stream && !r.IncludeUsage {
		if body, err = sjson.SetBytes(body, "stream_options.include_usage", true); err != nil {
			return nil, err
		}
	}
	return body, nil
}

// anthropicBody returns a Messages body for an Anthropic upstream, passed
// through with only the model's provider/ prefix removed.
func (r *apiRequest) anthropicBody() ([]byte, error) {
	if r.UpstreamModel == r.Model {
		return r.Body, nil
	}
	return sjson.SetBytes(r.Body, "model", r.UpstreamModel)
}

func mimeType(ct string) (string, map[string]string, error) { return mime.ParseMediaType(ct) }
