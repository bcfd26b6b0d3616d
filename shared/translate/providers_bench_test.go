package translate_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/provider/schema"
)

// Benchmarks of the provider adapters' translations (shared/provider/<name>),
// next to the OpenAI ↔ Anthropic ones: the same request, answer and stream
// delta as those, bytes in and bytes out.

var providerBenchRequest = []byte(`{"model":"MODEL","messages":[
{"role":"system","content":"You are a helpful assistant. Answer concisely and cite sources when you can."},
{"role":"user","content":"What is the capital of France, and roughly how many people live there?"},
{"role":"assistant","content":"Paris is the capital of France; about 2.1 million people live in the city proper."}],
"max_tokens":1024,"temperature":0.7,"stream":true,"user":"u-123"}`)

type benchCase struct {
	p     provider.Name
	model string
	resp  string
	event string // one streamed text delta: event name, data
	data  string
}

var benchCases = []benchCase{
	{provider.Google, "gemini-2.5-flash",
		`{"candidates":[{"content":{"parts":[{"text":"Paris is the capital of France; about 2.1 million people live in the city proper."}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":40,"candidatesTokenCount":20,"totalTokenCount":60},"modelVersion":"gemini-2.5-flash","responseId":"abc"}`,
		"", `{"candidates":[{"content":{"parts":[{"text":"Hello, this is a typical streamed text delta."}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":40,"totalTokenCount":40},"modelVersion":"gemini-2.5-flash","responseId":"abc"}`},
	{provider.Mistral, "mistral-large-latest",
		`{"id":"cmpl-1","object":"chat.completion","created":1,"model":"mistral-large-latest","choices":[{"index":0,"message":{"role":"assistant","content":"Paris is the capital of France; about 2.1 million people live in the city proper.","tool_calls":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":40,"completion_tokens":20,"total_tokens":60}}`,
		"", `{"id":"cmpl-1","object":"chat.completion.chunk","created":1,"model":"mistral-large-latest","choices":[{"index":0,"delta":{"content":"Hello, this is a typical streamed text delta."},"finish_reason":null}]}`},
	{provider.Cohere, "command-a-03-2025",
		`{"id":"c1","finish_reason":"COMPLETE","message":{"role":"assistant","content":[{"type":"text","text":"Paris is the capital of France; about 2.1 million people live in the city proper."}]},"usage":{"billed_units":{"input_tokens":40,"output_tokens":20},"tokens":{"input_tokens":60,"output_tokens":20}}}`,
		"content-delta", `{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hello, this is a typical streamed text delta."}}}}`},
	{provider.AzureOpenAI, "gpt-4o",
		`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Paris is the capital of France; about 2.1 million people live in the city proper."},"finish_reason":"stop","content_filter_results":{}}],"usage":{"prompt_tokens":40,"completion_tokens":20,"total_tokens":60}}`,
		"", `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"Hello, this is a typical streamed text delta."},"finish_reason":null,"content_filter_results":{}}]}`},
}

func benchCred(p provider.Name) schema.Credential {
	if p == provider.AzureOpenAI {
		return schema.Credential{Key: "0123456789abcdef0123456789abcdef", BaseURL: "https://r.openai.azure.com", APIVersion: "2024-10-21"}
	}
	return schema.Credential{Key: "key", BaseURL: "https://upstream.example"}
}

// BenchmarkChatToNative: OpenAI Chat bytes → neutral parse → the provider's
// upstream request (URL, headers, body).
func BenchmarkChatToNative(b *testing.B) {
	reg := provider.NewRegistry(provider.Endpoints{})
	for _, c := range benchCases {
		a, _ := reg.Adapter(c.p)
		cred := benchCred(c.p)
		b.Run(string(c.p), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(providerBenchRequest)))
			for b.Loop() {
				var req schema.ChatRequest
				if err := json.Unmarshal(providerBenchRequest, &req); err != nil {
					b.Fatal(err)
				}
				req.Model = c.model
				if _, err := a.ChatRequest(context.Background(), cred, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNativeToChatResponse: the provider's answer → OpenAI chat.completion bytes.
func BenchmarkNativeToChatResponse(b *testing.B) {
	reg := provider.NewRegistry(provider.Endpoints{})
	for _, c := range benchCases {
		a, _ := reg.Adapter(c.p)
		req := &schema.ChatRequest{Model: c.model}
		body := []byte(c.resp)
		b.Run(string(c.p), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := a.DecodeChat(body, req)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := json.Marshal(out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkNativeStreamEvent: one streamed text delta → chat.completion.chunk bytes.
func BenchmarkNativeStreamEvent(b *testing.B) {
	reg := provider.NewRegistry(provider.Endpoints{})
	for _, c := range benchCases {
		a, _ := reg.Adapter(c.p)
		d := a.NewStream(&schema.ChatRequest{Model: c.model})
		data := []byte(c.data)
		_, _, _ = d.Event(c.event, data) // past the first event's role chunk
		b.Run(string(c.p), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				chunks, _, err := d.Event(c.event, data)
				if err != nil || len(chunks) == 0 {
					b.Fatal(err, len(chunks))
				}
				for _, ch := range chunks {
					if _, err := json.Marshal(ch); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
