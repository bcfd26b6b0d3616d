// Package openai is the OpenAI adapter (https://platform.openai.com/docs/api-reference):
// the neutral form is OpenAI's own, so requests go out as they are.
package openai

import (
	"context"
	"net/http"
	"strings"

	"github.com/synthstack/byok/shared/provider/schema"
)

// Name is the provider's identifier.
const Name schema.Name = "openai"

// DefaultBaseURL is OPENAI_BASE_URL's default (with /v1).
const DefaultBaseURL = "https://api.openai.com/v1"

// Adapter is the OpenAI adapter; the zero value is ready.
type Adapter struct{}

func (Adapter) Name() schema.Name { return Name }

// CheckFormat: OpenAI keys start with sk- but not sk-ant- (Anthropic's).
func (Adapter) CheckFormat(key string) error {
	if strings.HasPrefix(key, "sk-ant-") {
		return &schema.FormatError{Msg: "this looks like an Anthropic key (sk-ant-); OpenAI keys start with sk- but not sk-ant-"}
	}
	if !strings.HasPrefix(key, "sk-") {
		return &schema.FormatError{Msg: "OpenAI keys start with sk-"}
	}
	return nil
}

func (Adapter) PriceModel(model string) string { return model }

func base(cred schema.Credential) string { return schema.BaseURL(cred, DefaultBaseURL) }

func authorize(req *http.Request, key string) { req.Header.Set("Authorization", "Bearer "+key) }

func (Adapter) ValidationRequest(ctx context.Context, cred schema.Credential) (*http.Request, error) {
	return schema.NewKeyedGet(ctx, base(cred)+"/models", cred.Key, authorize)
}

// ClassifyValidation adds OpenAI's 429 billing_not_active to the shared vocabulary.
func (a Adapter) ClassifyValidation(status int, h http.Header, body []byte) schema.Verdict {
	return a.Classify(status, h, body)
}

func (Adapter) Classify(status int, h http.Header, body []byte) schema.Verdict {
	v := schema.ClassifyOpenAIShaped(status, h, body)
	if status == http.StatusTooManyRequests && (v.Type == "billing_not_active" || v.Code == "billing_not_active") {
		v.Class, v.Status, v.Reason = schema.ClassBilling, schema.StatusInvalid, schema.ReasonNoBilling
	}
	if status >= 400 && status < 500 && v.Type == "billing_error" {
		v.Class, v.Status, v.Reason = schema.ClassBilling, schema.StatusInvalid, schema.ReasonNoBilling
	}
	return v
}

type chatBody struct {
	*schema.ChatRequest
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options,omitempty"`
}

func (Adapter) ChatRequest(ctx context.Context, cred schema.Credential, req *schema.ChatRequest) (*http.Request, error) {
	b := chatBody{ChatRequest: req}
	if req.Stream {
		b.StreamOptions = &struct {
			IncludeUsage bool `json:"include_usage"`
		}{true}
	}
	return schema.NewCall(ctx, base(cred)+"/chat/completions", b, false, cred.Key, authorize)
}

func (Adapter) DecodeChat(body []byte, req *schema.ChatRequest) (*schema.ChatResponse, error) {
	return schema.DecodeOpenAIChat(body, req.Model, schema.SameFinish)
}

func (Adapter) NewStream(req *schema.ChatRequest) schema.StreamDecoder {
	return &schema.OpenAIStream{Model: req.Model, Finish: schema.SameFinish}
}

type embedBody struct {
	Model      string   `json:"model"`
	Input      []string `json:"input"`
	Dimensions *int     `json:"dimensions,omitempty"`
	User       string   `json:"user,omitempty"`
}

func (Adapter) EmbeddingsRequest(ctx context.Context, cred schema.Credential, req *schema.EmbeddingRequest) (*http.Request, error) {
	return schema.NewCall(ctx, base(cred)+"/embeddings", embedBody{req.Model, req.Input, req.Dimensions, req.User}, false, cred.Key, authorize)
}

func (Adapter) DecodeEmbeddings(body []byte, req *schema.EmbeddingRequest) (*schema.EmbeddingResponse, error) {
	return schema.DecodeOpenAIEmbeddings(body, req)
}
