// Package azure is the Azure OpenAI adapter
// (https://learn.microsoft.com/azure/ai-services/openai/reference): the
// OpenAI wire format routed by deployment name and api-version on the user's
// own resource endpoint, which makes it a request forgery surface (guard.go).
package azure

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/synthstack/byok/shared/provider/schema"
)

// Name is the provider's identifier.
const Name schema.Name = "azure_openai"

// DefaultAPIVersion is used when a key was saved without one.
const DefaultAPIVersion = "2024-10-21"

// Adapter is the Azure OpenAI adapter. Guard re-checks the endpoint on
// every request built (the suffix list may have changed since the save).
type Adapter struct{ Guard *Guard }

func (Adapter) Name() schema.Name { return Name }

// CheckFormat: Azure keys are 32 hex characters, or 84 letters and digits
// in the newer format.
func (Adapter) CheckFormat(key string) error {
	switch len(key) {
	case 32:
		for i := 0; i < len(key); i++ {
			c := key[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return &schema.FormatError{Msg: "Azure OpenAI keys are 32 hexadecimal characters (or 84 letters and digits)"}
			}
		}
		return nil
	case 84:
		for i := 0; i < len(key); i++ {
			c := key[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return &schema.FormatError{Msg: "Azure OpenAI keys are 32 hexadecimal characters (or 84 letters and digits)"}
			}
		}
		return nil
	}
	return &schema.FormatError{Msg: "Azure OpenAI keys are 32 hexadecimal characters (or 84 letters and digits)"}
}

// CheckAPIVersion accepts "YYYY-MM-DD" with an optional "-preview".
func CheckAPIVersion(v string) error {
	d, _ := strings.CutSuffix(v, "-preview")
	if len(d) != 10 || d[4] != '-' || d[7] != '-' {
		return &schema.FeatureError{Provider: Name, Feature: "an api_version other than YYYY-MM-DD[-preview]"}
	}
	for i, c := range d {
		if i != 4 && i != 7 && (c < '0' || c > '9') {
			return &schema.FeatureError{Provider: Name, Feature: "an api_version other than YYYY-MM-DD[-preview]"}
		}
	}
	return nil
}

// CheckDeployment accepts Azure's deployment names: 1 to 64 letters,
// digits, '-', '_' and '.'.
func CheckDeployment(d string) error {
	if d == "" || len(d) > 64 {
		return &schema.FeatureError{Provider: Name, Feature: "a deployment name that is empty or longer than 64 characters"}
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') || d == "." || d == ".." {
			return &schema.FeatureError{Provider: Name, Feature: "deployment names with characters other than letters, digits, '-', '_' and '.'"}
		}
	}
	return nil
}

// PriceModel: a deployment is priced as the model it serves when the user
// mapped it, else by its own name (deployments are often named after models).
func (Adapter) PriceModel(model string) string { return strings.TrimPrefix(model, "azure/") }

// deployment resolves a requested model to a deployment name.
func deployment(cred schema.Credential, model string) (string, error) {
	model = strings.TrimPrefix(model, "azure/")
	d := model
	if m, ok := cred.Deployments[model]; ok {
		d = m
	}
	return d, CheckDeployment(d)
}

func (a Adapter) url(cred schema.Credential, path string) (string, error) {
	ep := cred.BaseURL
	if a.Guard != nil {
		var err error
		if ep, err = a.Guard.CheckEndpoint(ep); err != nil {
			return "", err
		}
	}
	v := cred.APIVersion
	if v == "" {
		v = DefaultAPIVersion
	}
	if err := CheckAPIVersion(v); err != nil {
		return "", err
	}
	return strings.TrimRight(ep, "/") + path + "?api-version=" + url.QueryEscape(v), nil
}

func authorize(req *http.Request, key string) { req.Header.Set("api-key", key) }

// ValidationRequest: with deployments configured, a 1-token chat call on
// the first (so a missing deployment shows up as DeploymentNotFound);
// without, GET /openai/models.
func (a Adapter) ValidationRequest(ctx context.Context, cred schema.Credential) (*http.Request, error) {
	if len(cred.Deployments) == 0 {
		u, err := a.url(cred, "/openai/models")
		if err != nil {
			return nil, err
		}
		return schema.NewKeyedGet(ctx, u, cred.Key, authorize)
	}
	names := make([]string, 0, len(cred.Deployments))
	for _, d := range cred.Deployments {
		names = append(names, d)
	}
	sort.Strings(names)
	if err := CheckDeployment(names[0]); err != nil {
		return nil, err
	}
	u, err := a.url(cred, "/openai/deployments/"+names[0]+"/chat/completions")
	if err != nil {
		return nil, err
	}
	return schema.NewCall(ctx, u, map[string]any{
		"messages": []map[string]string{{"role": "user", "content": "ping"}}, "max_tokens": 1,
	}, false, cred.Key, authorize)
}

// ClassifyValidation: a missing deployment makes the saved configuration
// unusable (invalid, deployment_not_found) though the key may be fine.
//
// A 400 comes after Azure took the key and found the deployment: the probe
// itself was refused (an embeddings deployment, a reasoning model wanting
// max_completion_tokens), so the key is valid.
func (a Adapter) ClassifyValidation(status int, h http.Header, body []byte) schema.Verdict {
	v := a.Classify(status, h, body)
	if status == http.StatusBadRequest {
		return schema.Verdict{Status: schema.StatusValid, Type: v.Type, Code: v.Code, Message: v.Message}
	}
	if v.Code == "DeploymentNotFound" {
		v.Status, v.Reason, v.Detail = schema.StatusInvalid, schema.ReasonDeploymentNotFound, v.Message
	}
	return v
}

// Classify: Azure answers {"error":{"code":"401"|"DeploymentNotFound"|...,
// "message"}}; 401 bad key, 403 network rules or disabled access (detail),
// 404 DeploymentNotFound a request error, 429 with retry-after (quota when
// the code says insufficient_quota), 5xx unavailable.
func (Adapter) Classify(status int, h http.Header, body []byte) schema.Verdict {
	v := schema.ClassifyOpenAIShaped(status, h, body)
	if v.Code == "DeploymentNotFound" {
		v.Detail = v.Message
	}
	return v
}

// chatBody is the OpenAI body Azure takes; model is implied by the deployment.
type chatBody struct {
	*schema.ChatRequest
	Model         string         `json:"model,omitempty"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// Native is the body sent for req (exported for goldens and benchmarks).
func Native(req *schema.ChatRequest) (*chatBody, error) {
	for _, m := range req.Modalities {
		if m != "text" {
			return nil, schema.Unsupported(Name, "output modality "+m)
		}
	}
	b := &chatBody{ChatRequest: req}
	if req.Stream {
		b.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	return b, nil
}

func (a Adapter) ChatRequest(ctx context.Context, cred schema.Credential, req *schema.ChatRequest) (*http.Request, error) {
	d, err := deployment(cred, req.Model)
	if err != nil {
		return nil, err
	}
	u, err := a.url(cred, "/openai/deployments/"+d+"/chat/completions")
	if err != nil {
		return nil, err
	}
	body, err := Native(req)
	if err != nil {
		return nil, err
	}
	return schema.NewCall(ctx, u, body, req.Stream, cred.Key, authorize)
}

func (Adapter) DecodeChat(body []byte, req *schema.ChatRequest) (*schema.ChatResponse, error) {
	return schema.DecodeOpenAIChat(body, req.Model, schema.SameFinish)
}

func (Adapter) NewStream(req *schema.ChatRequest) schema.StreamDecoder {
	return &schema.OpenAIStream{Model: req.Model, Finish: schema.SameFinish}
}

type embedBody struct {
	Input      []string `json:"input"`
	Dimensions *int     `json:"dimensions,omitempty"`
	User       string   `json:"user,omitempty"`
}

func (a Adapter) EmbeddingsRequest(ctx context.Context, cred schema.Credential, req *schema.EmbeddingRequest) (*http.Request, error) {
	d, err := deployment(cred, req.Model)
	if err != nil {
		return nil, err
	}
	u, err := a.url(cred, "/openai/deployments/"+d+"/embeddings")
	if err != nil {
		return nil, err
	}
	return schema.NewCall(ctx, u, embedBody{Input: req.Input, Dimensions: req.Dimensions, User: req.User}, false, cred.Key, authorize)
}

func (Adapter) DecodeEmbeddings(body []byte, req *schema.EmbeddingRequest) (*schema.EmbeddingResponse, error) {
	return schema.DecodeOpenAIEmbeddings(body, req)
}
