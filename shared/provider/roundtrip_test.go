package provider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/provider/azure"
	"github.com/synthstack/byok/shared/provider/schema"
)

// Keys in each provider's format (never real).
const (
	googleKey  = "AIzaSyFAKE0000000000000000000000000000a"
	mistralKey = "FAKEmistral0000000000000000000ab"
	cohereKey  = "FAKEcohere000000000000000000000000000abc"
	azureKey   = "0123456789abcdef0123456789abcdef"
)

// rig is the fake upstream's native handler over plain HTTP (Google,
// Mistral, Cohere) and over TLS (Azure, whose endpoints must be https).
type rig struct {
	fp        *fakeprovider.Server
	plain     *httptest.Server
	tls       *httptest.Server
	reg       *provider.Registry
	client    *http.Client
	azure     *http.Client
	azureCred schema.Credential
}

func newRig(t *testing.T) *rig {
	t.Helper()
	fp := fakeprovider.New()
	plain := httptest.NewServer(fp.NativeHandler())
	ts := httptest.NewTLSServer(fp.NativeHandler())
	t.Cleanup(func() { plain.Close(); ts.Close(); fp.Close() })
	ep := provider.Endpoints{
		Google: fakeprovider.GoogleBaseURL(plain.URL), Mistral: fakeprovider.MistralBaseURL(plain.URL),
		Cohere: fakeprovider.CohereBaseURL(plain.URL), AzureSuffixes: []string{"127.0.0.1"},
	}
	g := &azure.Guard{Suffixes: ep.AzureSuffixes}
	return &rig{
		fp: fp, plain: plain, tls: ts, reg: provider.NewRegistry(ep), client: plain.Client(),
		azure:     g.Client(ts.Client().Transport.(*http.Transport), 10*time.Second),
		azureCred: schema.Credential{Key: azureKey, BaseURL: ts.URL, APIVersion: "2024-10-21", Deployments: map[string]string{"gpt-4o": "prod-4o"}},
	}
}

type target struct {
	name  provider.Name
	key   string
	model string
	embed string
}

var targets = []target{
	{provider.Google, googleKey, "gemini-2.5-flash", "gemini-embedding-001"},
	{provider.Mistral, mistralKey, "mistral-large-latest", "mistral-embed"},
	{provider.Cohere, cohereKey, "command-a-03-2025", "embed-v4.0"},
	{provider.AzureOpenAI, azureKey, "gpt-4o", "embeddings-small"},
}

func (r *rig) cred(tg target) (schema.Credential, *http.Client) {
	if tg.name == provider.AzureOpenAI {
		return r.azureCred, r.azure
	}
	return r.reg.Credential(tg.name, tg.key), r.client
}

func (r *rig) send(t *testing.T, tg target, build func(a provider.Adapter, cred schema.Credential) (*http.Request, error)) (*http.Response, []byte) {
	t.Helper()
	a, _ := r.reg.Adapter(tg.name)
	cred, client := r.cred(tg)
	req, err := build(a, cred)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("do: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func chatReq(model string, stream, tools bool) *schema.ChatRequest {
	req := &schema.ChatRequest{Model: model, Stream: stream, MaxTokens: schema.Ptr(100),
		Messages: []schema.Message{
			{Role: "system", Content: schema.TextContent("Be brief.")},
			{Role: "user", Content: schema.TextContent("What is the weather in Paris?")},
		}}
	if tools {
		req.Tools = []schema.Tool{{Type: "function", Function: schema.FunctionDef{Name: "get_weather", Description: "Weather by city",
			Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`)}}}
	}
	return req
}

func TestChatRoundTrip(t *testing.T) {
	r := newRig(t)
	for _, tg := range targets {
		for _, tools := range []bool{false, true} {
			name := string(tg.name)
			if tools {
				name += "/tools"
			}
			t.Run(name, func(t *testing.T) {
				r.fp.SetKey(tg.key, fakeprovider.Behavior{ToolCall: tools})
				req := chatReq(tg.model, false, tools)
				resp, body := r.send(t, tg, func(a provider.Adapter, c schema.Credential) (*http.Request, error) {
					return a.ChatRequest(context.Background(), c, req)
				})
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				a, _ := r.reg.Adapter(tg.name)
				out, err := a.DecodeChat(body, req)
				if err != nil {
					t.Fatal(err)
				}
				rec := r.fp.LastRequest()
				want := fakeprovider.ExpectedNativeReply(rec, fakeprovider.Behavior{ToolCall: tools})
				ch := out.Choices[0]
				if tools {
					if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Name != "get_weather" {
						t.Fatalf("tool answer = %+v", ch)
					}
					var args, wantArgs any
					if json.Unmarshal([]byte(ch.Message.ToolCalls[0].Function.Arguments), &args) != nil || json.Unmarshal([]byte(want), &wantArgs) != nil {
						t.Fatalf("arguments %q, want %q", ch.Message.ToolCalls[0].Function.Arguments, want)
					}
					if ch.Message.ToolCalls[0].ID == "" {
						t.Fatal("tool call without id")
					}
				} else if ch.Message.Content == nil || *ch.Message.Content != want || ch.FinishReason != "stop" {
					t.Fatalf("answer = %+v, want %q", ch, want)
				}
				u := fakeprovider.ExpectedNativeUsage(rec, fakeprovider.Behavior{ToolCall: tools})
				if out.Usage == nil || out.Usage.PromptTokens != u.Input || out.Usage.CompletionTokens != u.Output {
					t.Fatalf("usage = %+v, want %+v", out.Usage, u)
				}
			})
		}
	}
}

// stream reads an SSE answer through the adapter's decoder.
func stream(t *testing.T, a provider.Adapter, req *schema.ChatRequest, body []byte) (text string, calls []schema.ToolCall, finish string, usage *schema.Usage, done bool) {
	t.Helper()
	d := a.NewStream(req)
	var b strings.Builder
	err := schema.ReadSSE(bytes.NewReader(body), func(name string, data []byte) error {
		chunks, end, err := d.Event(name, data)
		if err != nil {
			return err
		}
		for _, c := range chunks {
			if c.Usage != nil {
				usage = c.Usage
			}
			for _, ch := range c.Choices {
				if ch.Delta.Content != nil {
					b.WriteString(*ch.Delta.Content)
				}
				for _, tc := range ch.Delta.ToolCalls {
					if tc.ID != "" {
						calls = append(calls, tc)
					} else if len(calls) > 0 {
						calls[len(calls)-1].Function.Arguments += tc.Function.Arguments
					}
				}
				if ch.FinishReason != nil {
					finish = *ch.FinishReason
				}
			}
		}
		done = done || end
		return nil
	})
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	return b.String(), calls, finish, usage, done
}

func TestStreamRoundTrip(t *testing.T) {
	r := newRig(t)
	for _, tg := range targets {
		for _, tools := range []bool{false, true} {
			name := string(tg.name)
			if tools {
				name += "/tools"
			}
			t.Run(name, func(t *testing.T) {
				b := fakeprovider.Behavior{ToolCall: tools, Chunks: 4}
				r.fp.SetKey(tg.key, b)
				req := chatReq(tg.model, true, tools)
				resp, body := r.send(t, tg, func(a provider.Adapter, c schema.Credential) (*http.Request, error) {
					return a.ChatRequest(context.Background(), c, req)
				})
				if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
					t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
				}
				a, _ := r.reg.Adapter(tg.name)
				text, calls, finish, usage, done := stream(t, a, req, body)
				rec := r.fp.LastRequest()
				want := fakeprovider.ExpectedNativeReply(rec, b)
				if !done {
					t.Fatal("stream decoder never saw the end")
				}
				if tools {
					if finish != "tool_calls" || len(calls) != 1 || calls[0].Function.Name != "get_weather" || !json.Valid([]byte(calls[0].Function.Arguments)) {
						t.Fatalf("calls %+v finish %q", calls, finish)
					}
				} else if text != want || finish != "stop" {
					t.Fatalf("text %q finish %q, want %q", text, finish, want)
				}
				u := fakeprovider.ExpectedNativeUsage(rec, b)
				if usage == nil || usage.PromptTokens != u.Input || usage.CompletionTokens != u.Output {
					t.Fatalf("usage %+v, want %+v", usage, u)
				}
			})
		}
	}
}

// A stream cut before its end is never "done": the caller can tell a cut
// from a finished answer.
func TestStreamCutIsNotDone(t *testing.T) {
	r := newRig(t)
	for _, tg := range targets {
		t.Run(string(tg.name), func(t *testing.T) {
			r.fp.SetKey(tg.key, fakeprovider.Behavior{Chunks: 4, CutAfter: 2})
			req := chatReq(tg.model, true, false)
			a, _ := r.reg.Adapter(tg.name)
			cred, client := r.cred(tg)
			hr, err := a.ChatRequest(context.Background(), cred, req)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			d := a.NewStream(req)
			done := false
			_ = schema.ReadSSE(resp.Body, func(name string, data []byte) error {
				_, end, err := d.Event(name, data)
				done = done || end
				return err
			})
			if done {
				t.Fatal("a cut stream was reported done")
			}
		})
	}
}

func TestEmbeddingsRoundTrip(t *testing.T) {
	r := newRig(t)
	for _, tg := range targets {
		for _, inputs := range [][]string{{"one text"}, {"first", "second", "third"}} {
			t.Run(string(tg.name), func(t *testing.T) {
				r.fp.SetKey(tg.key, fakeprovider.OK())
				req := &schema.EmbeddingRequest{Model: tg.embed, Input: inputs}
				resp, body := r.send(t, tg, func(a provider.Adapter, c schema.Credential) (*http.Request, error) {
					return a.EmbeddingsRequest(context.Background(), c, req)
				})
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				a, _ := r.reg.Adapter(tg.name)
				out, err := a.DecodeEmbeddings(body, req)
				if err != nil {
					t.Fatal(err)
				}
				if len(out.Data) != len(inputs) || len(out.Data[0].Vector) != fakeprovider.EmbeddingDim || out.Usage.PromptTokens == 0 {
					t.Fatalf("embeddings = %+v", out)
				}
				for i, d := range out.Data {
					if d.Index != i {
						t.Fatalf("index %d at %d", d.Index, i)
					}
				}
			})
		}
	}
}

// Each provider's failure vocabulary, as the fake speaks it, feeds the
// routing classes of docs/providers.md: auth, quota (billing), rate limit,
// unavailable, request.
func TestClassifyThroughFake(t *testing.T) {
	r := newRig(t)
	type c struct {
		b     fakeprovider.Behavior
		class schema.Class
		retry bool
	}
	common := []c{
		{fakeprovider.Unauthorized(), schema.ClassAuth, false},
		{fakeprovider.Forbidden(), schema.ClassAuth, false},
		{fakeprovider.RateLimited(), schema.ClassRateLimit, true},
		{fakeprovider.ServerError(), schema.ClassUnavailable, false},
		{fakeprovider.Behavior{Status: 503}, schema.ClassUnavailable, false},
		{fakeprovider.Behavior{Status: 400}, schema.ClassRequest, false},
	}
	quota := map[provider.Name]c{
		provider.Google:      {fakeprovider.GoogleDailyQuota(), schema.ClassBilling, true},
		provider.Mistral:     {fakeprovider.MistralUsageLimit(), schema.ClassBilling, false},
		provider.Cohere:      {fakeprovider.CohereTrialMonthly(), schema.ClassBilling, false},
		provider.AzureOpenAI: {fakeprovider.InsufficientQuota(), schema.ClassBilling, false},
	}
	extra := map[provider.Name][]c{
		provider.Google:      {{fakeprovider.GoogleKeyInvalid(), schema.ClassAuth, false}, {fakeprovider.GoogleAPIDisabled(), schema.ClassAuth, false}},
		provider.Cohere:      {{fakeprovider.Behavior{Status: 498}, schema.ClassAuth, false}, {fakeprovider.PaymentRequired(), schema.ClassBilling, false}},
		provider.AzureOpenAI: {{fakeprovider.AzureDeploymentNotFound(), schema.ClassRequest, false}},
	}
	for _, tg := range targets {
		cases := append(append(append([]c{}, common...), quota[tg.name]), extra[tg.name]...)
		for _, cc := range cases {
			t.Run(string(tg.name), func(t *testing.T) {
				r.fp.SetKey(tg.key, cc.b)
				req := chatReq(tg.model, false, false)
				resp, body := r.send(t, tg, func(a provider.Adapter, cr schema.Credential) (*http.Request, error) {
					return a.ChatRequest(context.Background(), cr, req)
				})
				a, _ := r.reg.Adapter(tg.name)
				v := a.Classify(resp.StatusCode, resp.Header, body)
				if v.Class != cc.class {
					t.Fatalf("status %d %s → class %q, want %q", resp.StatusCode, body, v.Class, cc.class)
				}
				if cc.retry && v.RetryAfter == "" {
					t.Fatalf("rate limit without Retry-After: %+v", v)
				}
				if v.Message == "" && resp.StatusCode != 404 {
					t.Fatalf("no message parsed from %s", body)
				}
			})
		}
	}
}

// Keys travel in headers only: no recorded request carries a key in its URL.
func TestKeyNeverInURL(t *testing.T) {
	r := newRig(t)
	exercise(t, r)
	for _, rec := range r.fp.Requests() {
		for _, tg := range targets {
			if strings.Contains(rec.Path+"?"+rec.RawQuery, tg.key) {
				t.Fatalf("%s key in URL %s?%s", tg.name, rec.Path, rec.RawQuery)
			}
		}
		if rec.Protocol == fakeprovider.ProtocolGoogle && rec.Header.Get("x-goog-api-key") == "" {
			t.Fatalf("google request without x-goog-api-key: %s", rec.Path)
		}
	}
	if len(r.fp.Requests()) < len(targets) {
		t.Fatal("nothing recorded")
	}
}

// exercise sends chats, streams, validations and embeddings for every
// provider through rg (for the URL scan).
func exercise(t *testing.T, rg *rig) {
	r := []*rig{rg}
	for _, tg := range targets {
		r[0].fp.SetKey(tg.key, fakeprovider.OK())
		for _, s := range []bool{false, true} {
			req := chatReq(tg.model, s, true)
			r[0].send(t, tg, func(a provider.Adapter, c schema.Credential) (*http.Request, error) {
				return a.ChatRequest(context.Background(), c, req)
			})
		}
		a, _ := r[0].reg.Adapter(tg.name)
		cred, client := r[0].cred(tg)
		if hr, err := a.ValidationRequest(context.Background(), cred); err == nil {
			if resp, err := client.Do(hr); err == nil {
				resp.Body.Close()
			}
		}
		er := &schema.EmbeddingRequest{Model: tg.embed, Input: []string{"a", "b"}}
		r[0].send(t, tg, func(a provider.Adapter, c schema.Credential) (*http.Request, error) {
			return a.EmbeddingsRequest(context.Background(), c, er)
		})
	}
}
