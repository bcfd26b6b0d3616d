package fakeprovider

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
)

// EmbeddingDim is the length of every embedding the fake returns.
const EmbeddingDim = 8

// openAIBadRequest writes a 400 invalid_request_error; param "" is sent as null.
func openAIBadRequest(w http.ResponseWriter, message, param, code string) {
	var p, c any
	if param != "" {
		p = param
	}
	if code != "" {
		c = code
	}
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
		"message": message, "type": "invalid_request_error", "param": p, "code": c,
	}})
}

const openAIParseError = "We could not parse the JSON body of your request. (HINT: This likely means you aren't " +
	"using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. " +
	"If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"

// OpenAI chat.completion shapes (https://platform.openai.com/docs/api-reference/chat/object).

type oaFunction struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type oaToolCall struct {
	Index    *int       `json:"index,omitempty"` // stream deltas only
	ID       string     `json:"id,omitempty"`
	Type     string     `json:"type,omitempty"`
	Function oaFunction `json:"function"`
}

type oaMessage struct {
	Role        string       `json:"role"`
	Content     *string      `json:"content"`
	Refusal     *string      `json:"refusal"`
	ToolCalls   []oaToolCall `json:"tool_calls,omitempty"`
	Annotations []any        `json:"annotations"`
}

type oaChoice struct {
	Index        int       `json:"index"`
	Message      oaMessage `json:"message"`
	Logprobs     any       `json:"logprobs"`
	FinishReason string    `json:"finish_reason"`
}

type oaUsage struct {
	PromptTokens            int            `json:"prompt_tokens"`
	CompletionTokens        int            `json:"completion_tokens"`
	TotalTokens             int            `json:"total_tokens"`
	PromptTokensDetails     map[string]int `json:"prompt_tokens_details"`
	CompletionTokensDetails map[string]int `json:"completion_tokens_details"`
}

func newOAUsage(u Usage) *oaUsage {
	return &oaUsage{
		PromptTokens: u.Input, CompletionTokens: u.Output, TotalTokens: u.Input + u.Output,
		PromptTokensDetails: map[string]int{"cached_tokens": 0, "audio_tokens": 0},
		CompletionTokensDetails: map[string]int{
			"reasoning_tokens": 0, "audio_tokens": 0,
			"accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
		},
	}
}

type oaCompletion struct {
	ID                string     `json:"id"`
	Object            string     `json:"object"`
	Created           int64      `json:"created"`
	Model             string     `json:"model"`
	Choices           []oaChoice `json:"choices"`
	Usage             *oaUsage   `json:"usage"`
	ServiceTier       string     `json:"service_tier"`
	SystemFingerprint string     `json:"system_fingerprint"`
}

type oaDelta struct {
	Role      string       `json:"role,omitempty"`
	Content   *string      `json:"content,omitempty"`
	Refusal   *string      `json:"refusal,omitempty"`
	ToolCalls []oaToolCall `json:"tool_calls,omitempty"`
}

type oaChunkChoice struct {
	Index        int     `json:"index"`
	Delta        oaDelta `json:"delta"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

// oaChunk is a chat.completion.chunk. Usage is always present (null) when
// the request set stream_options.include_usage, and absent otherwise.
type oaChunk struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	ServiceTier       string          `json:"service_tier"`
	SystemFingerprint string          `json:"system_fingerprint"`
	Choices           []oaChunkChoice `json:"choices"`
	Usage             json.RawMessage `json:"usage,omitempty"`
}

func ptr[T any](v T) *T { return &v }

func (s *Server) openAIChat(w http.ResponseWriter, c *call) {
	var q chatReq
	if err := json.Unmarshal(c.rec.Body, &q); err != nil {
		openAIBadRequest(w, openAIParseError, "", "")
		return
	}
	switch {
	case q.model() == "":
		openAIBadRequest(w, "you must provide a model parameter", "", "")
		return
	case q.Messages == nil:
		openAIBadRequest(w, "Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
		return
	case len(q.Messages) == 0:
		openAIBadRequest(w, "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
			"messages", "empty_array")
		return
	case q.StreamOptions != nil && !q.Stream:
		openAIBadRequest(w, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options", "")
		return
	}

	p := makePlan(c.rec.Body, &q, c.b)
	c.usage = &p.usage
	id := fmt.Sprintf("chatcmpl-fake%s%06d", Digest(c.rec.Body), c.rec.Seq)
	callID := fmt.Sprintf("call_fake%s%06d", Digest(c.rec.Body), c.rec.Seq)
	created := time.Now().Unix()
	finish := "stop"
	switch {
	case p.truncated:
		finish = "length"
	case p.tool != "":
		finish = "tool_calls"
	}

	if !q.Stream {
		msg := oaMessage{Role: "assistant", Annotations: []any{}}
		if p.tool != "" {
			msg.ToolCalls = []oaToolCall{{ID: callID, Type: "function",
				Function: oaFunction{Name: p.tool, Arguments: p.text()}}}
		} else {
			msg.Content = ptr(p.text())
		}
		c.delivered = len(p.pieces)
		writeJSON(w, c.status, oaCompletion{
			ID: id, Object: "chat.completion", Created: created, Model: q.model(),
			Choices:     []oaChoice{{Index: 0, Message: msg, FinishReason: finish}},
			Usage:       newOAUsage(p.usage),
			ServiceTier: "default", SystemFingerprint: "fp_fake",
		})
		return
	}

	includeUsage := q.StreamOptions != nil && q.StreamOptions.IncludeUsage
	chunk := func(d oaDelta, fin *string) oaChunk {
		ch := oaChunk{
			ID: id, Object: "chat.completion.chunk", Created: created, Model: q.model(),
			ServiceTier: "default", SystemFingerprint: "fp_fake",
			Choices: []oaChunkChoice{{Index: 0, Delta: d, FinishReason: fin}},
		}
		if includeUsage {
			ch.Usage = json.RawMessage("null")
		}
		return ch
	}

	e := s.startSSE(w, c)
	first := oaDelta{Role: "assistant", Content: ptr(""), Refusal: nil}
	if p.tool != "" {
		first.Content = nil
		first.ToolCalls = []oaToolCall{{Index: ptr(0), ID: callID, Type: "function",
			Function: oaFunction{Name: p.tool, Arguments: ""}}}
	}
	if !e.send("", chunk(first, nil)) {
		return
	}
	ok := e.content(p.pieces, func(piece string) bool {
		d := oaDelta{Content: ptr(piece)}
		if p.tool != "" {
			d = oaDelta{ToolCalls: []oaToolCall{{Index: ptr(0), Function: oaFunction{Arguments: piece}}}}
		}
		return e.send("", chunk(d, nil))
	})
	if !ok || !e.send("", chunk(oaDelta{}, &finish)) {
		return
	}
	if includeUsage {
		u := chunk(oaDelta{}, nil)
		u.Choices = []oaChunkChoice{}
		u.Usage, _ = json.Marshal(newOAUsage(p.usage))
		if !e.send("", u) {
			return
		}
	}
	e.send("", "[DONE]")
}

// embeddingInputs counts the inputs of an embeddings request and returns one
// string per input to derive its vector from; ok is false for a bad input.
func embeddingInputs(raw json.RawMessage) (in []string, ok bool) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, true
	}
	var many []json.RawMessage
	if json.Unmarshal(raw, &many) != nil || len(many) == 0 {
		return nil, false
	}
	var n int
	if json.Unmarshal(many[0], &n) == nil { // one token array
		return []string{string(raw)}, true
	}
	for _, m := range many {
		in = append(in, string(m))
	}
	return in, true
}

// embedding derives a deterministic unit-length-ish vector from seed.
func embedding(seed string) []float32 {
	sum := sha256.Sum256([]byte(seed))
	v := make([]float32, EmbeddingDim)
	for i := range v {
		v[i] = float32(int(sum[i])-128) / 128
	}
	return v
}

func (s *Server) openAIEmbeddings(w http.ResponseWriter, c *call) {
	var q struct {
		Model          *string         `json:"model"`
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
	}
	if err := json.Unmarshal(c.rec.Body, &q); err != nil {
		openAIBadRequest(w, openAIParseError, "", "")
		return
	}
	if q.Model == nil || *q.Model == "" {
		openAIBadRequest(w, "you must provide a model parameter", "", "")
		return
	}
	if len(q.Input) == 0 || string(q.Input) == "null" {
		openAIBadRequest(w, "Missing required parameter: 'input'.", "input", "missing_required_parameter")
		return
	}
	inputs, ok := embeddingInputs(q.Input)
	if !ok {
		openAIBadRequest(w, "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", "", "")
		return
	}
	if q.EncodingFormat != "" && q.EncodingFormat != "float" && q.EncodingFormat != "base64" {
		openAIBadRequest(w, "Invalid value for 'encoding_format': must be 'float' or 'base64'.", "encoding_format", "")
		return
	}
	type item struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	}
	data := make([]item, len(inputs))
	for i, in := range inputs {
		vec := embedding(in)
		var e any = vec
		if q.EncodingFormat == "base64" {
			raw := make([]byte, 0, 4*len(vec))
			for _, f := range vec {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
			e = base64.StdEncoding.EncodeToString(raw)
		}
		data[i] = item{"embedding", i, e}
	}
	u := Usage{Input: PromptTokens(c.rec.Body)}
	if c.b.Usage != nil {
		u = *c.b.Usage
	}
	c.usage = &u
	c.delivered = len(data)
	writeJSON(w, c.status, map[string]any{
		"object": "list", "data": data, "model": *q.Model,
		"usage": map[string]int{"prompt_tokens": u.Input, "total_tokens": u.Input},
	})
}

// Transcript is the text the fake transcribes an audio file to: it names
// the file's size and Digest, never its content.
func Transcript(audio []byte) string {
	return "Fake transcript of " + strconv.Itoa(len(audio)) + " bytes " + Digest(audio) + "."
}

func (s *Server) openAITranscriptions(w http.ResponseWriter, c *call) {
	r := c.r
	r.Body = io.NopCloser(bytes.NewReader(c.rec.Body))
	if err := r.ParseMultipartForm(MaxBody); err != nil {
		openAIBadRequest(w, "Could not parse multipart form", "", "")
		return
	}
	defer func() { _ = r.MultipartForm.RemoveAll() }()
	f, _, err := r.FormFile("file")
	if err != nil {
		openAIBadRequest(w, "Missing required parameter: 'file'.", "file", "missing_required_parameter")
		return
	}
	audio, _ := io.ReadAll(f)
	_ = f.Close()
	if r.FormValue("model") == "" {
		openAIBadRequest(w, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
		return
	}
	text := Transcript(audio)
	if c.b.Reply != "" {
		text = c.b.Reply
	}
	c.delivered = 1
	switch format := r.FormValue("response_format"); format {
	case "", "json":
		writeJSON(w, c.status, map[string]string{"text": text})
	case "verbose_json":
		writeJSON(w, c.status, map[string]any{
			"task": "transcribe", "language": "english", "duration": 1.0, "text": text,
			"segments": []map[string]any{{"id": 0, "start": 0.0, "end": 1.0, "text": text}},
		})
	case "text", "srt", "vtt":
		body := text + "\n"
		if format == "srt" {
			body = "1\n00:00:00,000 --> 00:00:01,000\n" + text + "\n\n"
		} else if format == "vtt" {
			body = "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n" + text + "\n\n"
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(c.status)
		_, _ = io.WriteString(w, body)
	default:
		openAIBadRequest(w, "Invalid value for 'response_format': must be one of json, text, srt, verbose_json or vtt.",
			"response_format", "")
	}
}
