package chat

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/jsondec"
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

// apiRequest is a request parsed once: what billing, limits, routing and
// logs read, and the parse the upstream body is re-encoded from.
type apiRequest struct {
	Op            operation
	Body          []byte     // as received (its size is the input estimate)
	obj           jsonObject // the one parse of a JSON body
	ContentType   string     // multipart requests keep theirs (boundary)
	Model         string     // as requested
	UpstreamModel string     // without a provider/ prefix
	Stream        bool
	IncludeUsage  bool  // the client asked for the OpenAI usage chunk
	MaxTokens     int64 // the output cap asked for (0: none given)
	// SendCap, when set and the client named no cap, is sent as
	// max_completion_tokens: the credits route reserves for a default cap,
	// so that cap is what the provider gets (docs/api.md, credits).
	SendCap int64
	// Choices is how many answers the request asks for (n, best_of; 1 if
	// neither): the reservation covers each.
	Choices int64
	// Header holds the client headers forwarded to an Anthropic upstream
	// (anthropic-version, anthropic-beta): never credentials.
	Header http.Header
	// UploadID names a large-audio upload sent in place of the "file" part
	// (docs/api.md, "Large audio"); Body is rebuilt around its bytes.
	UploadID string
}

func modelField(o jsonObject) (string, error) {
	s, present, err := o.str("model")
	if err != nil {
		return "", err
	}
	if !present {
		if _, ok := o.get("model"); ok {
			return "", apperr.New(apperr.InvalidRequest, "field \"model\" must be a string")
		}
		return "", apperr.New(apperr.InvalidRequest, "field \"model\" is required")
	}
	if s == "" {
		return "", apperr.New(apperr.InvalidRequest, "field \"model\" must not be empty")
	}
	return s, nil
}

func messagesField(o jsonObject) error {
	if v, _ := o.get("messages"); !nonEmptyArray(v) {
		return apperr.New(apperr.InvalidRequest, "field \"messages\" must be a non-empty array")
	}
	return nil
}

// choices reads n and best_of (the larger wins; 1 when neither is given).
func choices(o jsonObject) (int64, error) {
	c := int64(1)
	for _, name := range []string{"n", "best_of"} {
		v, err := o.posInt(name)
		if err != nil {
			return 0, err
		}
		c = max(c, v)
	}
	return c, nil
}

// parseChatRequest parses an OpenAI chat request once, with clear errors
// for wrong JSON, duplicate keys and wrong types.
func parseChatRequest(p *jsondec.Pool, body []byte) (*apiRequest, error) {
	o, err := parseObject(p, body)
	if err != nil {
		return nil, err
	}
	model, err := modelField(o)
	if err != nil {
		return nil, err
	}
	req := &apiRequest{Op: opChat, Body: body, obj: o, Model: model}
	if err := messagesField(o); err != nil {
		return nil, err
	}
	if req.Stream, err = o.boolean("stream"); err != nil {
		return nil, err
	}
	for _, name := range []string{"max_tokens", "max_completion_tokens"} {
		n, err := o.posInt(name)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			req.MaxTokens = max(req.MaxTokens, n) // both given: the provider may honour either
		}
	}
	if req.Choices, err = choices(o); err != nil {
		return nil, err
	}
	if v, ok := o.get("stream_options"); ok && !isNull(v) {
		so, err := parseObject(p, v)
		if err != nil || v[0] != '{' {
			return nil, apperr.New(apperr.InvalidRequest, "field \"stream_options\" must be an object")
		}
		if req.IncludeUsage, err = so.boolean("include_usage"); err != nil {
			return nil, apperr.New(apperr.InvalidRequest, "field \"stream_options.include_usage\" must be a boolean")
		}
	}
	return req, nil
}

// parseMessagesRequest parses an Anthropic Messages request once.
func parseMessagesRequest(p *jsondec.Pool, body []byte, h http.Header) (*apiRequest, error) {
	o, err := parseObject(p, body)
	if err != nil {
		return nil, err
	}
	model, err := modelField(o)
	if err != nil {
		return nil, err
	}
	req := &apiRequest{Op: opMessages, Body: body, obj: o, Model: model, Header: http.Header{}, Choices: 1}
	if err := messagesField(o); err != nil {
		return nil, err
	}
	if req.MaxTokens, err = o.posInt("max_tokens"); err != nil {
		return nil, err
	}
	if req.MaxTokens == 0 {
		return nil, apperr.New(apperr.InvalidRequest, "field \"max_tokens\" is required")
	}
	if req.Stream, err = o.boolean("stream"); err != nil {
		return nil, err
	}
	for _, k := range []string{"anthropic-version", "anthropic-beta"} {
		if v := h.Get(k); v != "" && len(v) < 256 {
			req.Header.Set(k, v)
		}
	}
	return req, nil
}

// parseEmbeddingsRequest parses an OpenAI embeddings request once.
func parseEmbeddingsRequest(p *jsondec.Pool, body []byte) (*apiRequest, error) {
	o, err := parseObject(p, body)
	if err != nil {
		return nil, err
	}
	model, err := modelField(o)
	if err != nil {
		return nil, err
	}
	in, _ := o.get("input")
	s, isStr, serr := o.str("input")
	if !nonEmptyArray(in) && (serr != nil || !isStr || s == "") {
		return nil, apperr.New(apperr.InvalidRequest, "field \"input\" must be a non-empty string or array")
	}
	return &apiRequest{Op: opEmbeddings, Body: body, obj: o, Model: model, Choices: 1}, nil
}

// parseTranscriptionRequest checks a multipart transcription upload held in
// body (read once, bounded): it needs a "model" field and either a "file"
// part or an "upload_id" field (large audio stored first), not both.
// The body is forwarded as it is, without a second copy.
func parseTranscriptionRequest(body []byte, contentType string) (*apiRequest, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, apperr.New(apperr.InvalidRequest, "Content-Type must be multipart/form-data with a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	req := &apiRequest{Op: opTranscription, Body: body, ContentType: contentType, Choices: 1}
	hasFile, hasUpload := false, false
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
		case "upload_id":
			if hasUpload {
				return nil, apperr.New(apperr.InvalidRequest, "field \"upload_id\" is given twice")
			}
			var b bytes.Buffer
			if _, err := b.ReadFrom(http.MaxBytesReader(nil, p, 64)); err != nil {
				return nil, apperr.New(apperr.InvalidRequest, "field \"upload_id\" is too long: pass the upload_id returned by POST /v1/audio/uploads")
			}
			if b.Len() == 0 {
				return nil, apperr.New(apperr.InvalidRequest, "field \"upload_id\" must not be empty")
			}
			hasUpload = true
			req.UploadID = b.String()
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
	if hasFile && hasUpload {
		return nil, apperr.New(apperr.InvalidRequest, "send either a \"file\" part or an \"upload_id\" field, not both")
	}
	if !hasFile && !hasUpload {
		return nil, apperr.New(apperr.InvalidRequest, "a \"file\" part is required (or an \"upload_id\" from POST /v1/audio/uploads for large audio)")
	}
	if req.Model == "" {
		return nil, apperr.New(apperr.InvalidRequest, "field \"model\" is required")
	}
	return req, nil
}

// withUploadedFile rebuilds r's multipart body with a "file" part holding
// audio in place of the "upload_id" field, every other part copied, so the
// body billed and sent upstream is the audio itself. The part is named by
// the sniffed format: OpenAI tells the format from the file name.
func (r *apiRequest) withUploadedFile(audio []byte) error {
	_, params, err := mime.ParseMediaType(r.ContentType)
	if err != nil {
		return apperr.New(apperr.InvalidRequest, "Content-Type must be multipart/form-data with a boundary")
	}
	mr := multipart.NewReader(bytes.NewReader(r.Body), params["boundary"])
	var out bytes.Buffer
	out.Grow(len(r.Body) + len(audio) + 512)
	mw := multipart.NewWriter(&out)
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return apperr.New(apperr.InvalidRequest, "the multipart body is malformed")
		}
		var w io.Writer
		if p.FormName() == "upload_id" {
			name, ctype := audioFileName(audio)
			h := textproto.MIMEHeader{}
			h.Set("Content-Disposition", mime.FormatMediaType("form-data", map[string]string{"name": "file", "filename": name}))
			h.Set("Content-Type", ctype)
			if w, err = mw.CreatePart(h); err == nil {
				_, err = w.Write(audio)
			}
		} else if w, err = mw.CreatePart(p.Header); err == nil {
			_, err = io.Copy(w, p)
		}
		p.Close()
		if err != nil {
			return apperr.New(apperr.InvalidRequest, "the multipart body is malformed")
		}
	}
	if err := mw.Close(); err != nil {
		return apperr.Wrap(err, apperr.Internal, "rebuilding the transcription request failed")
	}
	r.Body, r.ContentType = out.Bytes(), mw.FormDataContentType()
	return nil
}

// audioFileName names uploaded audio by its magic bytes (the formats
// OpenAI transcribes); unknown data is sent as "audio" and left to the
// provider to refuse.
func audioFileName(b []byte) (name, contentType string) {
	switch {
	case bytes.HasPrefix(b, []byte("fLaC")):
		return "audio.flac", "audio/flac"
	case len(b) >= 12 && bytes.HasPrefix(b, []byte("RIFF")) && string(b[8:12]) == "WAVE":
		return "audio.wav", "audio/wav"
	case bytes.HasPrefix(b, []byte("OggS")):
		return "audio.ogg", "audio/ogg"
	case bytes.HasPrefix(b, []byte{0x1A, 0x45, 0xDF, 0xA3}):
		return "audio.webm", "audio/webm"
	case len(b) >= 8 && string(b[4:8]) == "ftyp":
		return "audio.m4a", "audio/mp4"
	case bytes.HasPrefix(b, []byte("ID3")), len(b) >= 2 && b[0] == 0xFF && b[1]&0xE0 == 0xE0:
		return "audio.mp3", "audio/mpeg"
	}
	return "audio", "application/octet-stream"
}

// openAIBody returns the body for an OpenAI upstream, re-encoded from the
// one parse: the model without its provider/ prefix and, for chat streams,
// usage reporting switched on. Every other member keeps its raw value.
func (r *apiRequest) openAIBody() []byte {
	set := make([]jsonMember, 0, 2)
	if r.UpstreamModel != r.Model {
		set = append(set, jsonMember{name: "model", value: jsonString(r.UpstreamModel)})
	}
	if r.Op == opChat && r.MaxTokens == 0 && r.SendCap > 0 {
		set = append(set, jsonMember{name: "max_completion_tokens", value: strconv.AppendInt(nil, r.SendCap, 10)})
	}
	if r.Op == opChat && r.Stream && !r.IncludeUsage {
		so := jsonObject{}
		if v, ok := r.obj.get("stream_options"); ok && !isNull(v) {
			so, _ = parseObject(nil, v) // checked when the request was parsed; a rare path
		}
		set = append(set, jsonMember{name: "stream_options", value: so.encode(jsonMember{name: "include_usage", value: jsonBool(true)})})
	}
	return r.obj.encode(set...)
}

// anthropicBody returns a Messages body for an Anthropic upstream,
// re-encoded from the one parse with only the model's provider/ prefix
// removed.
func (r *apiRequest) anthropicBody() []byte {
	if r.UpstreamModel == r.Model {
		return r.obj.encode()
	}
	return r.obj.encode(jsonMember{name: "model", value: jsonString(r.UpstreamModel)})
}

// canonical is the body re-encoded from the one parse, for the translators.
func (r *apiRequest) canonical() []byte { return r.obj.encode() }

func mimeType(ct string) (string, map[string]string, error) { return mime.ParseMediaType(ct) }
