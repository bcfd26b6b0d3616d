package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	openai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	oshared "github.com/openai/openai-go/v3/shared"
	goopenai "github.com/sashabaranov/go-openai"
	"github.com/synthstack/byok/shared/fakeprovider"
)

const tinyPNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

// anthropic-sdk-go against /v1/messages: an Anthropic model passes through,
// an OpenAI model is translated; stream and not; tools included.
func TestAnthropicSDKMessages(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	okey, akey := openAIKey(t), anthropicKey(t)
	e.saveKey("alice", "openai", okey)
	e.saveKey("alice", "anthropic", akey)
	ctx := context.Background()
	// The Anthropic SDK sends our token as x-api-key.
	client := anthropic.NewClient(aoption.WithBaseURL(e.srv.URL), aoption.WithAPIKey(e.token("alice", "")), aoption.WithMaxRetries(0))
	tool := anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{Name: "get_weather",
		InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}}}}
	for _, model := range []string{"claude-3-5-haiku-20241022", "gpt-4o-mini"} {
		key := akey
		if strings.HasPrefix(model, "gpt") {
			key = okey
		}
		for _, tools := range []bool{false, true} {
			e.fake.SetKey(key, fakeprovider.Behavior{ToolCall: tools})
			params := anthropic.MessageNewParams{
				Model: anthropic.Model(model), MaxTokens: 100,
				System:   []anthropic.TextBlockParam{{Text: "Be brief."}},
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))},
			}
			if tools {
				params.Tools = []anthropic.ToolUnionParam{tool}
			}
			msg, err := client.Messages.New(ctx, params)
			if err != nil {
				t.Fatalf("%s tools=%v: %v", model, tools, err)
			}
			if msg.Usage.InputTokens == 0 || msg.Usage.OutputTokens == 0 || len(msg.Content) == 0 {
				t.Fatalf("%s tools=%v: %+v", model, tools, msg)
			}
			if tools {
				if msg.StopReason != anthropic.StopReasonToolUse || msg.Content[0].Type != "tool_use" || msg.Content[0].Name != "get_weather" {
					t.Fatalf("%s: tool call not returned: %+v", model, msg.Content)
				}
			} else if msg.StopReason != anthropic.StopReasonEndTurn || !strings.HasPrefix(msg.Content[0].Text, "Fake reply") {
				t.Fatalf("%s: %+v", model, msg)
			}
			// what reached the upstream: our key only, the right protocol
			last := e.fake.LastRequest()
			if last.Key != key {
				t.Fatalf("%s: upstream saw another key", model)
			}
			if strings.HasPrefix(model, "claude") && (last.Path != "/v1/messages" || last.Header.Get("anthropic-version") == "") {
				t.Fatalf("%s: upstream %s %v", model, last.Path, last.Header)
			}
			if strings.HasPrefix(model, "gpt") && last.Path != "/v1/chat/completions" {
				t.Fatalf("%s: upstream path %s", model, last.Path)
			}
			// streamed
			st := client.Messages.NewStreaming(ctx, params)
			var acc anthropic.Message
			for st.Next() {
				if err := acc.Accumulate(st.Current()); err != nil {
					t.Fatalf("%s stream accumulate: %v", model, err)
				}
			}
			if err := st.Err(); err != nil {
				t.Fatalf("%s stream: %v", model, err)
			}
			if len(acc.Content) == 0 || acc.Usage.OutputTokens == 0 {
				t.Fatalf("%s stream tools=%v: %+v", model, tools, acc)
			}
			if tools {
				var in map[string]any
				if acc.Content[0].Type != "tool_use" || json.Unmarshal(acc.Content[0].Input, &in) != nil || in["ref"] == nil {
					t.Fatalf("%s streamed tool call: %+v", model, acc.Content)
				}
			} else if !strings.HasPrefix(acc.Content[0].Text, "Fake reply") {
				t.Fatalf("%s streamed text %q", model, acc.Content[0].Text)
			}
		}
	}
	// Errors reach the SDK in Anthropic's shape.
	e.setTier("bob", "free")
	bc := anthropic.NewClient(aoption.WithBaseURL(e.srv.URL), aoption.WithAPIKey(e.token("bob", "")), aoption.WithMaxRetries(0))
	_, err := bc.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-3-5-haiku-20241022", MaxTokens: 10,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("x"))}})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 402 || !strings.Contains(ae.RawJSON(), `"type":"error"`) {
		t.Fatalf("402 through anthropic-sdk-go: %v", err)
	}
}

// openai-go and go-openai: chat with tools and images, embeddings and
// transcription.
func TestOpenAISDKsBreadth(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	okey, akey := openAIKey(t), anthropicKey(t)
	e.saveKey("alice", "openai", okey)
	e.saveKey("alice", "anthropic", akey)
	ctx := context.Background()
	token := e.token("alice", "")
	oc := openai.NewClient(option.WithBaseURL(e.srv.URL+"/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
	for _, model := range []string{"gpt-4o-mini", "claude-3-5-haiku-20241022"} {
		key := okey
		if strings.HasPrefix(model, "claude") {
			key = akey
		}
		e.fake.SetKey(key, fakeprovider.Behavior{ToolCall: true})
		cc, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: openai.ChatModel(model),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("What is in this picture, and the weather?"),
				openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: tinyPNG}),
			})},
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(oshared.FunctionDefinitionParam{
				Name: "get_weather", Parameters: oshared.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}})},
		})
		if err != nil {
			t.Fatalf("%s tools: %v", model, err)
		}
		if len(cc.Choices) != 1 || cc.Choices[0].FinishReason != "tool_calls" || len(cc.Choices[0].Message.ToolCalls) != 1 ||
			cc.Choices[0].Message.ToolCalls[0].Function.Name != "get_weather" {
			t.Fatalf("%s: %+v", model, cc.Choices)
		}
		last := e.fake.LastRequest()
		if strings.HasPrefix(model, "claude") && !bytes.Contains(last.Body, []byte(`"type":"image"`)) {
			t.Fatalf("image not translated for Anthropic: %s", last.Body)
		}
		// streamed tool call
		st := oc.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:    openai.ChatModel(model),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("weather?")},
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(oshared.FunctionDefinitionParam{
				Name: "get_weather", Parameters: oshared.FunctionParameters{"type": "object"}})},
		})
		acc := openai.ChatCompletionAccumulator{}
		for st.Next() {
			acc.AddChunk(st.Current())
		}
		if err := st.Err(); err != nil || len(acc.Choices) == 0 || len(acc.Choices[0].Message.ToolCalls) != 1 {
			t.Fatalf("%s streamed tools: %v %+v", model, err, acc.Choices)
		}
		var args map[string]any
		if err := json.Unmarshal([]byte(acc.Choices[0].Message.ToolCalls[0].Function.Arguments), &args); err != nil || args["ref"] == nil {
			t.Fatalf("%s streamed tool arguments %q", model, acc.Choices[0].Message.ToolCalls[0].Function.Arguments)
		}
	}
	e.fake.SetKey(okey, fakeprovider.OK())

	// embeddings
	emb, err := oc.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "text-embedding-3-small",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}}})
	if err != nil || len(emb.Data) != 2 || len(emb.Data[0].Embedding) == 0 || emb.Usage.PromptTokens == 0 {
		t.Fatalf("openai-go embeddings: %v %+v", err, emb)
	}
	// transcription
	audio := bytes.Repeat([]byte{0xFF, 0xFB, 0x90, 0x00}, 4096)
	tr, err := oc.Audio.Transcriptions.New(ctx, openai.AudioTranscriptionNewParams{Model: "whisper-1",
		File: openai.File(bytes.NewReader(audio), "hello.mp3", "audio/mpeg")})
	if err != nil || tr.Text != fakeprovider.Transcript(audio) {
		t.Fatalf("openai-go transcription: %v %+v", err, tr)
	}

	// go-openai: the same three
	cfg := goopenai.DefaultConfig(token)
	cfg.BaseURL = e.srv.URL + "/v1"
	gc := goopenai.NewClientWithConfig(cfg)
	e.fake.SetKey(okey, fakeprovider.Behavior{ToolCall: true})
	gr, err := gc.CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{Model: "gpt-4o",
		Messages: []goopenai.ChatCompletionMessage{{Role: "user", MultiContent: []goopenai.ChatMessagePart{
			{Type: goopenai.ChatMessagePartTypeText, Text: "look"},
			{Type: goopenai.ChatMessagePartTypeImageURL, ImageURL: &goopenai.ChatMessageImageURL{URL: tinyPNG}}}}},
		Tools: []goopenai.Tool{{Type: goopenai.ToolTypeFunction, Function: &goopenai.FunctionDefinition{Name: "get_weather", Parameters: map[string]any{"type": "object"}}}},
	})
	if err != nil || len(gr.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("go-openai tools: %v %+v", err, gr)
	}
	e.fake.SetKey(okey, fakeprovider.OK())
	ge, err := gc.CreateEmbeddings(ctx, goopenai.EmbeddingRequestStrings{Input: []string{"x"}, Model: goopenai.SmallEmbedding3})
	if err != nil || len(ge.Data) != 1 {
		t.Fatalf("go-openai embeddings: %v %+v", err, ge)
	}
	gt, err := gc.CreateTranscription(ctx, goopenai.AudioRequest{Model: goopenai.Whisper1, FilePath: "hello.mp3", Reader: bytes.NewReader(audio)})
	if err != nil || gt.Text != fakeprovider.Transcript(audio) {
		t.Fatalf("go-openai transcription: %v %+v", err, gt)
	}
	// models: what alice can use now, with routes
	r := e.do("GET", "/v1/models", token, nil)
	var ml struct {
		Data []struct{ ID, Provider, Route string } `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &ml); err != nil || r.Status != 200 || len(ml.Data) < 5 {
		t.Fatalf("models: %d %s", r.Status, r.Body)
	}
	for _, m := range ml.Data {
		if m.Route != "byok" {
			t.Fatalf("model %s route %s, want byok for a premium user with both keys", m.ID, m.Route)
		}
	}
	e.setTier("nobody", "free")
	r = e.do("GET", "/v1/models", e.token("nobody", ""), nil)
	if err := json.Unmarshal(r.Body, &ml); err != nil || len(ml.Data) != 0 {
		t.Fatalf("a user with no key and no credits can use %d models", len(ml.Data))
	}
}

// Unknown fields reach the upstream unchanged on same-protocol routes, and
// client-sent provider credentials never do; no upstream auth header comes
// back.
func TestPassThroughAndCredentialStripping(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	okey, akey := openAIKey(t), anthropicKey(t)
	e.saveKey("alice", "openai", okey)
	e.saveKey("alice", "anthropic", akey)
	tok := e.token("alice", "")
	foreign := "sk-proj-" + randomHex(t, 20)
	cases := []struct {
		path string
		body string
		key  string
		hdr  []string
	}{
		{"/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"x_custom":{"deep":[1,2,{"k":"v"}]},"seed":42,"logit_bias":{"50256":-100}}`, okey,
			[]string{"x-api-key", foreign, "api-key", foreign, "x-goog-api-key", foreign, "OpenAI-Organization", "org-evil"}},
		{"/v1/messages", `{"model":"claude-3-5-haiku-20241022","max_tokens":10,"messages":[{"role":"user","content":"x"}],"x_custom":{"deep":true},"top_k":5,"metadata":{"user_id":"u1"}}`, akey,
			[]string{"api-key", foreign, "x-goog-api-key", foreign, "anthropic-beta", "tools-2024-04-04"}},
		{"/v1/embeddings", `{"model":"text-embedding-3-small","input":"x","dimensions":8,"x_custom":"kept"}`, okey,
			[]string{"x-api-key", foreign}},
	}
	for _, c := range cases {
		r := e.do("POST", c.path, tok, c.body, c.hdr...)
		if r.Status != 200 {
			t.Fatalf("%s: %d %s", c.path, r.Status, r.Body)
		}
		last := e.fake.LastRequest()
		var sent, got map[string]any
		json.Unmarshal([]byte(c.body), &sent)
		json.Unmarshal(last.Body, &got)
		for k, v := range sent {
			if gv, _ := json.Marshal(got[k]); string(gv) != mustJSON(v) {
				t.Fatalf("%s: field %q reached the upstream as %s, sent %s", c.path, k, gv, mustJSON(v))
			}
		}
		if last.Key != c.key {
			t.Fatalf("%s: upstream got a key other than the user's", c.path)
		}
		for name, vals := range last.Header {
			for _, v := range vals {
				if strings.Contains(v, foreign) || strings.Contains(v, tok) || v == "org-evil" {
					t.Fatalf("%s: client credential reached the upstream in %s", c.path, name)
				}
			}
		}
		if c.path == "/v1/messages" && last.Header.Get("anthropic-beta") != "tools-2024-04-04" {
			t.Fatalf("anthropic-beta not forwarded")
		}
		for _, h := range []string{"Authorization", "x-api-key", "api-key", "x-goog-api-key"} {
			if r.Header.Get(h) != "" {
				t.Fatalf("%s: response carries %s", c.path, h)
			}
		}
		if bytes.Contains(r.Body, []byte(c.key)) {
			t.Fatalf("%s: response carries the key", c.path)
		}
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

func multipartBody(t *testing.T, fields map[string]string, file []byte) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if file != nil {
		fw, _ := mw.CreateFormFile("file", "a.mp3")
		fw.Write(file)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

// Bad input on the protocol routes: clear errors in the caller's protocol,
// nothing charged, nothing sent upstream.
func TestProtocolBadInput(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("carol", "free")
	e.grant("carol", 1_000_000)
	tok := e.token("carol", "")
	ct, okAudio := multipartBody(t, map[string]string{"model": "whisper-1"}, []byte("abc"))
	_, noFile := multipartBody(t, map[string]string{"model": "whisper-1"}, nil)
	_, noModel := multipartBody(t, nil, []byte("abc"))
	big := bytes.Repeat([]byte("a"), 26<<20)
	cases := []struct {
		name, path, ct string
		body           []byte
		status         int
		code           string
		anthropic      bool
	}{
		{"chat wrong content type", "/v1/chat/completions", "text/plain", []byte(`{"model":"gpt-4o","messages":[{}]}`), 400, "invalid_request", false},
		{"chat unknown model", "/v1/chat/completions", "application/json", []byte(`{"model":"llama-3-70b","messages":[{"role":"user","content":"x"}]}`), 404, "not_found", false},
		{"chat too large", "/v1/chat/completions", "application/json", bytes.Repeat([]byte(" "), 11<<20), 413, "request_too_large", false},
		{"messages no max_tokens", "/v1/messages", "application/json", []byte(`{"model":"claude-3-5-haiku-20241022","messages":[{"role":"user","content":"x"}]}`), 400, "invalid_request", true},
		{"messages broken json", "/v1/messages", "application/json", []byte(`{"model":`), 400, "invalid_request", true},
		{"messages unknown model", "/v1/messages", "application/json", []byte(`{"model":"nope","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`), 404, "not_found", true},
		{"embeddings anthropic model", "/v1/embeddings", "application/json", []byte(`{"model":"claude-3-5-haiku-20241022","input":"x"}`), 400, "invalid_request", false},
		{"embeddings no input", "/v1/embeddings", "application/json", []byte(`{"model":"text-embedding-3-small"}`), 400, "invalid_request", false},
		{"transcription json", "/v1/audio/transcriptions", "application/json", []byte(`{"model":"whisper-1"}`), 400, "invalid_request", false},
		{"transcription broken multipart", "/v1/audio/transcriptions", ct, okAudio[:len(okAudio)/2], 400, "invalid_request", false},
		{"transcription no file", "/v1/audio/transcriptions", ct, noFile, 400, "invalid_request", false},
		{"transcription no model", "/v1/audio/transcriptions", ct, noModel, 400, "invalid_request", false},
		{"transcription too large", "/v1/audio/transcriptions", ct, big, 413, "request_too_large", false},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("POST", e.srv.URL+c.path, bytes.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", c.ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var env struct {
			Type  string                               `json:"type"`
			Error struct{ Type, Code, Message string } `json:"error"`
		}
		json.Unmarshal(raw, &env)
		if resp.StatusCode != c.status || env.Error.Code != c.code || env.Error.Message == "" {
			t.Errorf("%s: %d %s, want %d %s", c.name, resp.StatusCode, raw, c.status, c.code)
		}
		if c.anthropic && env.Type != "error" {
			t.Errorf("%s: not an Anthropic-shaped error: %s", c.name, raw)
		}
	}
	if n := e.fake.TotalCalls(); n != 0 {
		t.Fatalf("bad input reached the provider %d times", n)
	}
	if bal := e.balance("carol"); bal != 1_000_000 {
		t.Fatalf("bad input charged %d credits", 1_000_000-bal)
	}
}

// A 1 MiB upload on the credits route is reserved by duration (not by bytes
// as tokens), fits a modest balance and is charged what the provider reports.
func TestTranscriptionOnCredits(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("carol", "free")
	e.grant("carol", 100_000) // $1 of credits
	ct, body := multipartBody(t, map[string]string{"model": "whisper-1", "response_format": "verbose_json"}, bytes.Repeat([]byte{0xFF, 0xFB}, 1<<19))
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/audio/transcriptions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token("carol", ""))
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Byok-Route") != "credits" {
		t.Fatalf("transcription on credits: %d %s", resp.StatusCode, raw)
	}
	if bal := e.balance("carol"); bal <= 0 || bal >= 100_000 {
		t.Fatalf("balance after a transcription: %d (want charged, but not everything)", bal)
	}
}
