// Package anthropic is the Anthropic Messages adapter
// (https://docs.anthropic.com/en/api/messages). The neutral (OpenAI Chat)
// form is mapped by shared/translate, which owns that pair of protocols.
package anthropic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/synthstack/byok/shared/provider/schema"
	"github.com/synthstack/byok/shared/translate"
)

// Name is the provider's identifier.
const Name schema.Name = "anthropic"

// DefaultBaseURL is ANTHROPIC_BASE_URL's default (without /v1).
const DefaultBaseURL = "https://api.anthropic.com"

// Version is the anthropic-version header sent.
const Version = "2023-06-01"

// Adapter is the Anthropic adapter; the zero value is ready.
type Adapter struct{}

func (Adapter) Name() schema.Name { return Name }

func (Adapter) CheckFormat(key string) error {
	if !strings.HasPrefix(key, "sk-ant-") {
		return &schema.FormatError{Msg: "Anthropic keys start with sk-ant-"}
	}
	return nil
}

func (Adapter) PriceModel(model string) string { return model }

func base(cred schema.Credential) string { return schema.BaseURL(cred, DefaultBaseURL) }

func authorize(req *http.Request, key string) {
	req.Header.Set("x-api-key", key)
	req.Header.Set("anthropic-version", Version)
}

func (Adapter) ValidationRequest(ctx context.Context, cred schema.Credential) (*http.Request, error) {
	return schema.NewKeyedGet(ctx, base(cred)+"/v1/models", cred.Key, authorize)
}

func (a Adapter) ClassifyValidation(status int, h http.Header, body []byte) schema.Verdict {
	return a.Classify(status, h, body)
}

// Classify: Anthropic's {"type":"error","error":{"type","message"}};
// billing_error and a 400 about credit balance or billing are billing,
// a 400 about usage limits is quota; 529 overloaded is unavailable.
func (Adapter) Classify(status int, h http.Header, body []byte) schema.Verdict {
	v := schema.ClassifyOpenAIShaped(status, h, body)
	if status >= 400 && status < 500 && v.Type == "billing_error" {
		v.Class, v.Status, v.Reason = schema.ClassBilling, schema.StatusInvalid, schema.ReasonNoBilling
	}
	if status == http.StatusBadRequest {
		m := strings.ToLower(v.Message)
		switch {
		case strings.Contains(m, "credit balance"), strings.Contains(m, "billing"):
			v.Class, v.Status, v.Reason = schema.ClassBilling, schema.StatusInvalid, schema.ReasonNoBilling
		case strings.Contains(m, "usage limit"):
			v.Class, v.Status, v.Reason = schema.ClassBilling, schema.StatusInvalid, schema.ReasonQuotaExceeded
		}
	}
	return v
}

func (Adapter) ChatRequest(ctx context.Context, cred schema.Credential, req *schema.ChatRequest) (*http.Request, error) {
	neutral, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	body, err := translate.ChatToMessages(neutral, req.Model)
	if err != nil {
		return nil, &schema.FeatureError{Provider: Name, Feature: err.Error()}
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, base(cred)+"/v1/messages", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	authorize(hr, cred.Key)
	return hr, nil
}

func (Adapter) DecodeChat(body []byte, req *schema.ChatRequest) (*schema.ChatResponse, error) {
	b, err := translate.MessagesToChatResponseAt(body, req.Model, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", schema.ErrBadAnswer, err)
	}
	var out schema.ChatResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%w: %v", schema.ErrBadAnswer, err)
	}
	return &out, nil
}

type stream struct {
	t     *translate.StreamTranslator
	usage *schema.Usage
}

func (Adapter) NewStream(req *schema.ChatRequest) schema.StreamDecoder {
	return &stream{t: translate.NewStreamTranslator(req.Model, true, 0)}
}

func (s *stream) Usage() *schema.Usage { return s.usage }

func (s *stream) Event(name string, data []byte) ([]schema.ChatChunk, bool, error) {
	chunks, err := s.t.Event(name, data)
	if err != nil {
		return nil, false, err
	}
	out := make([]schema.ChatChunk, 0, len(chunks))
	for _, c := range chunks {
		var cc schema.ChatChunk
		if err := json.Unmarshal(c, &cc); err != nil {
			return nil, false, fmt.Errorf("%w: %v", schema.ErrBadAnswer, err)
		}
		if cc.Usage != nil {
			s.usage = cc.Usage
		}
		out = append(out, cc)
	}
	var ev struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(data, &ev)
	return out, ev.Type == "message_stop" || name == "message_stop", nil
}

var errNoEmbeddings = errors.New("anthropic has no embeddings")

func (Adapter) EmbeddingsRequest(context.Context, schema.Credential, *schema.EmbeddingRequest) (*http.Request, error) {
	return nil, schema.Unsupported(Name, "embeddings")
}

func (Adapter) DecodeEmbeddings([]byte, *schema.EmbeddingRequest) (*schema.EmbeddingResponse, error) {
	return nil, errNoEmbeddings
}
