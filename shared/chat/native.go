package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/provider/schema"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/translate"
	sse "github.com/tmaxmax/go-sse"
)

// One attempt through a provider adapter (shared/provider/<name>), for the
// providers whose protocol is neither caller's: the canonical request is
// read into the neutral form (Anthropic callers through translate's
// Messages→Chat step), the adapter builds the upstream call, decodes its
// answer and stream, and classifies its failures (docs/providers.md).
// OpenAI and Anthropic keep their byte-faithful pass-through paths.

// providers is the registry of adapters.
func (x *Executor) providers() *provider.Registry {
	if x.Providers != nil {
		return x.Providers
	}
	return provider.NewRegistry(x.Endpoints)
}

// nativeAdapter returns the adapter when c's provider goes through one.
func (c *call) nativeAdapter() (provider.Adapter, bool) {
	if c.prov == provider.OpenAI || c.prov == provider.Anthropic {
		return nil, false
	}
	return c.x.providers().Adapter(c.prov)
}

// nativeRequest builds the upstream request from the canonical request.
func (c *call) nativeRequest(ctx context.Context, a provider.Adapter, apiKey string) (*http.Request, error) {
	cred := c.x.providers().Credential(c.prov, apiKey)
	if c.key != nil && apiKey != c.x.InternalKeys[c.prov] {
		// The key's own row: Azure's endpoint, api_version and deployments.
		cred = keys.Credential(*c.key, apiKey)
		if cred.BaseURL == "" {
			cred.BaseURL = c.x.providers().Credential(c.prov, "").BaseURL
		}
	}
	r := c.req
	if r.Op == opEmbeddings {
		var er schema.EmbeddingRequest
		if err := json.Unmarshal(r.openAIBody(), &er); err != nil {
			return nil, &schema.FeatureError{Provider: c.prov, Feature: "this embeddings input (" + err.Error() + ")"}
		}
		er.Model = r.UpstreamModel
		c.nEmbed = &er
		return a.EmbeddingsRequest(ctx, cred, &er)
	}
	body := r.openAIBody()
	if r.Op == opMessages {
		b, err := translate.MessagesToChat(r.canonical(), r.UpstreamModel)
		if err != nil {
			return nil, &schema.FeatureError{Provider: c.prov, Feature: err.Error()}
		}
		body = b
	}
	var cr schema.ChatRequest
	if err := json.Unmarshal(body, &cr); err != nil {
		return nil, &schema.FeatureError{Provider: c.prov, Feature: "this request (" + err.Error() + ")"}
	}
	cr.Model = r.UpstreamModel
	c.nChat = &cr
	return a.ChatRequest(ctx, cred, &cr)
}

// nativeFailure classifies a provider's error answer through its adapter and
// rebuilds it (type, code, message; scrubbed) for the caller.
func (c *call) nativeFailure(a provider.Adapter, resp *http.Response, body []byte, apiKey string) *outcome {
	v := a.Classify(resp.StatusCode, resp.Header, body)
	msg := v.Message
	if msg == "" {
		msg = fmt.Sprintf("the %s provider answered with status %d", c.prov, resp.StatusCode)
	}
	typ := v.Type
	if typ == "" {
		typ = "api_error"
	}
	eb := mustJSON(map[string]any{"error": map[string]string{"type": typ, "code": v.Code, "message": msg}})
	scrub := c.scrubberFor(apiKey).scrub
	detail := v.Detail
	if detail == "" {
		detail = v.Message
	}
	if detail = scrub(detail); len(detail) > 500 {
		detail = detail[:500] + "..."
	}
	return &outcome{status: resp.StatusCode, class: routing.FailureClass(v.Class), retryAfter: v.RetryAfter, errBody: body,
		vetted: translate.VetError(resp.StatusCode, eb, false, c.req.Op.anthropicCaller(), scrub), detail: detail}
}

// nativeAnswer decodes a whole answer into the caller's protocol.
func (c *call) nativeAnswer(a provider.Adapter, raw []byte) ([]byte, tokens, error) {
	if c.nEmbed != nil {
		out, err := a.DecodeEmbeddings(raw, c.nEmbed)
		if err != nil {
			return nil, tokens{}, err
		}
		out.Model = c.req.Model
		b, err := json.Marshal(out)
		return b, tokens{input: int64(out.Usage.PromptTokens)}, err
	}
	out, err := a.DecodeChat(raw, c.nChat)
	if err != nil {
		return nil, tokens{}, err
	}
	out.Created, out.Model = c.start.Unix(), c.req.Model
	u := usageTokens(out.Usage)
	b, err := json.Marshal(out)
	if err == nil && c.req.Op == opMessages {
		b, err = translate.ChatToMessagesResponse(b, c.req.Model)
	}
	return b, u, err
}

func usageTokens(u *schema.Usage) tokens {
	if u == nil {
		return tokens{}
	}
	t := tokens{input: int64(u.PromptTokens), output: int64(u.CompletionTokens)}
	if u.PromptTokensDetails != nil {
		t.cacheRead = int64(u.PromptTokensDetails.CachedTokens)
	}
	return t
}

// nativeStream relays a provider's stream as OpenAI chunks (or, for an
// Anthropic caller, through the reverse stream translator).
func (c *call) nativeStream(a provider.Adapter, sw *sseWriter) func(sse.Event) (bool, bool, error) {
	dec := a.NewStream(c.nChat)
	var rev *translate.ReverseStreamTranslator
	if c.req.Op == opMessages {
		rev = translate.NewReverseStreamTranslator(c.req.Model)
	}
	emit := func(b []byte) (bool, error) {
		if rev == nil {
			return sw.write("", b), nil
		}
		evs, err := rev.Chunk(b)
		if err != nil {
			return true, err
		}
		for _, e := range evs {
			if !sw.write(e.Event, e.Data) {
				return false, nil
			}
		}
		return true, nil
	}
	var reported bool
	return func(ev sse.Event) (bool, bool, error) {
		chunks, done, err := dec.Event(ev.Type, []byte(ev.Data))
		if err != nil {
			return false, true, err
		}
		for _, ch := range chunks {
			ch.Created, ch.Model = c.start.Unix(), c.req.Model
			if ch.Usage != nil {
				sw.out.usage, reported = usageTokens(ch.Usage), true
				if len(ch.Choices) == 0 && rev == nil && !c.req.IncludeUsage {
					continue // the client did not ask for the usage chunk
				}
			} else if !reported {
				for _, cc := range ch.Choices {
					if cc.Delta.Content != nil && *cc.Delta.Content != "" || len(cc.Delta.ToolCalls) > 0 {
						sw.out.usage.output++ // delivered output, for a stream cut short
					}
				}
			}
			b, err := json.Marshal(ch)
			if err != nil {
				return false, true, err
			}
			ok, err := emit(b)
			if !ok || err != nil {
				return false, ok, err
			}
		}
		if done {
			ok, err := emit([]byte("[DONE]"))
			return true, ok, err
		}
		return false, true, nil
	}
}

// client is the HTTP client for c's provider: Azure's requests only through
// the guarded client (nil when none is configured).
func (c *call) client() *http.Client {
	if c.prov == provider.AzureOpenAI {
		return c.x.AzureHTTP
	}
	return c.x.HTTP
}

// nativeBuildError is the outcome of a request the adapter refused to build.
func nativeBuildError(err error) *outcome {
	var fe *schema.FeatureError
	if errors.As(err, &fe) {
		return badRequest(err)
	}
	return &outcome{class: routing.FailUnavailable}
}
