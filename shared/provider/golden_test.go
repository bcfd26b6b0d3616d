package provider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/provider/schema"
	"github.com/synthstack/byok/shared/translate"
)

var update = flag.Bool("update", false, "rewrite the *.golden files of testdata/")

// Golden pairs per provider and direction (testdata/<provider>/): the native
// inputs are the providers' documented examples; the goldens were reviewed
// by hand. Directions: neutral request → native request (URL, headers,
// body); Anthropic Messages request → neutral (shared/translate) → native;
// native answer → neutral; native answer → neutral → Anthropic Messages;
// native stream → neutral chunks; embeddings both ways.

const goldenKey = "KEY-PLACEHOLDER"

func goldenCred(p provider.Name) schema.Credential {
	if p == provider.AzureOpenAI {
		return schema.Credential{Key: goldenKey, BaseURL: "https://myres.openai.azure.com", APIVersion: "2024-10-21",
			Deployments: map[string]string{"gpt-4o": "prod-4o", "text-embedding-3-small": "embed-small"}}
	}
	return schema.Credential{Key: goldenKey, BaseURL: "https://upstream.example"}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func check(t *testing.T, path string, got []byte) {
	t.Helper()
	var pretty bytes.Buffer
	if json.Valid(got) {
		_ = json.Indent(&pretty, got, "", "  ")
		pretty.WriteByte('\n')
		got = pretty.Bytes()
	}
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want := read(t, path)
	if !bytes.Equal(bytes.TrimSpace(got), bytes.TrimSpace(want)) {
		t.Errorf("%s differs (go test -run Golden -update to rewrite, then review):\n got: %s\nwant: %s", path, got, want)
	}
}

// described renders an upstream request: method, URL, the headers we set
// and the body.
func described(t *testing.T, req interface {
	Context() context.Context
}, method, url string, h map[string][]string, body io.Reader) []byte {
	t.Helper()
	b, _ := io.ReadAll(body)
	hs := map[string]string{}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		hs[k] = strings.Join(h[k], ",")
	}
	out, _ := json.Marshal(map[string]any{"method": method, "url": url, "headers": hs, "body": json.RawMessage(b)})
	return out
}

func TestGolden(t *testing.T) {
	reg := provider.NewRegistry(provider.Endpoints{})
	for _, p := range []provider.Name{provider.Google, provider.Mistral, provider.Cohere, provider.AzureOpenAI} {
		dir := filepath.Join("testdata", string(p))
		a, _ := reg.Adapter(p)
		cred := goldenCred(p)
		t.Run(string(p), func(t *testing.T) {
			for _, stream := range []bool{false, true} {
				var req schema.ChatRequest
				if err := json.Unmarshal(read(t, filepath.Join(dir, "chat_request.neutral.json")), &req); err != nil {
					t.Fatal(err)
				}
				req.Stream = stream
				hr, err := a.ChatRequest(context.Background(), cred, &req)
				if err != nil {
					t.Fatal(err)
				}
				name := "chat_request.native.golden.json"
				if stream {
					name = "chat_stream_request.native.golden.json"
				}
				check(t, filepath.Join(dir, name), described(t, hr, hr.Method, hr.URL.String(), hr.Header, hr.Body))
			}

			// Anthropic Messages callers reach the provider through translate.
			anth := read(t, filepath.Join(dir, "messages_request.anthropic.json"))
			var model struct {
				Model string `json:"model"`
			}
			_ = json.Unmarshal(anth, &model)
			chat, err := translate.MessagesToChat(anth, model.Model)
			if err != nil {
				t.Fatal(err)
			}
			var areq schema.ChatRequest
			if err := json.Unmarshal(chat, &areq); err != nil {
				t.Fatal(err)
			}
			hr, err := a.ChatRequest(context.Background(), cred, &areq)
			if err != nil {
				t.Fatal(err)
			}
			check(t, filepath.Join(dir, "messages_request.native.golden.json"), described(t, hr, hr.Method, hr.URL.String(), hr.Header, hr.Body))

			var req schema.ChatRequest
			_ = json.Unmarshal(read(t, filepath.Join(dir, "chat_request.neutral.json")), &req)
			for _, base := range []string{"chat_response", "chat_tool_response"} {
				out, err := a.DecodeChat(read(t, filepath.Join(dir, base+".native.json")), &req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(out)
				check(t, filepath.Join(dir, base+".neutral.golden.json"), b)
				ab, err := translate.ChatToMessagesResponse(b, req.Model)
				if err != nil {
					t.Fatal(err)
				}
				check(t, filepath.Join(dir, base+".anthropic.golden.json"), ab)
			}

			d := a.NewStream(&req)
			var lines bytes.Buffer
			done := false
			err = schema.ReadSSE(bytes.NewReader(read(t, filepath.Join(dir, "stream.native.sse"))), func(name string, data []byte) error {
				chunks, end, err := d.Event(name, data)
				for _, c := range chunks {
					b, _ := json.Marshal(c)
					lines.Write(b)
					lines.WriteByte('\n')
				}
				done = done || end
				return err
			})
			if err != nil || !done {
				t.Fatalf("stream: err %v, done %v", err, done)
			}
			check(t, filepath.Join(dir, "stream.neutral.golden.jsonl"), lines.Bytes())

			var ereq schema.EmbeddingRequest
			_ = json.Unmarshal(read(t, filepath.Join(dir, "embed_request.neutral.json")), &ereq)
			hr, err = a.EmbeddingsRequest(context.Background(), cred, &ereq)
			if err != nil {
				t.Fatal(err)
			}
			check(t, filepath.Join(dir, "embed_request.native.golden.json"), described(t, hr, hr.Method, hr.URL.String(), hr.Header, hr.Body))
			eout, err := a.DecodeEmbeddings(read(t, filepath.Join(dir, "embed_response.native.json")), &ereq)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(eout)
			check(t, filepath.Join(dir, "embed_response.neutral.golden.json"), b)
		})
	}
}
