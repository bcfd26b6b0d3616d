package app_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	openai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	goopenai "github.com/sashabaranov/go-openai"
	"github.com/synthstack/byok/shared/fakeprovider"
)

// The official SDKs as clients of /v1/chat/completions, streaming and not,
// on the BYOK route and on the credits route, for an OpenAI and an Anthropic
// model (the latter translated).
func TestOfficialSDKsChat(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("byokuser", "premium")
	e.setTier("credituser", "free")
	e.grant("credituser", 10_000_000)
	okey, akey := openAIKey(t), anthropicKey(t)
	e.saveKey("byokuser", "openai", okey)
	e.saveKey("byokuser", "anthropic", akey)
	ctx := context.Background()

	for _, tc := range []struct{ user, route string }{{"byokuser", "byok"}, {"credituser", "credits"}} {
		token := e.token(tc.user, "")
		for _, model := range []string{"gpt-4o-mini", "claude-3-5-haiku-20241022"} {
			name := tc.route + "/" + model
			// openai-go, not streamed
			oc := openai.NewClient(option.WithBaseURL(e.srv.URL+"/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
			var hr *http.Response
			cc, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
				Model:    openai.ChatModel(model),
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
			}, option.WithResponseInto(&hr))
			if err != nil {
				t.Fatalf("%s openai-go: %v", name, err)
			}
			if len(cc.Choices) != 1 || !strings.HasPrefix(cc.Choices[0].Message.Content, "Fake reply") || cc.Usage.TotalTokens == 0 {
				t.Fatalf("%s openai-go: %+v", name, cc)
			}
			if hr.Header.Get("X-Byok-Route") != tc.route {
				t.Fatalf("%s openai-go: route %q", name, hr.Header.Get("X-Byok-Route"))
			}
			// openai-go, streamed
			st := oc.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
				Model:         openai.ChatModel(model),
				Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			})
			var text strings.Builder
			var usage int64
			for st.Next() {
				ch := st.Current()
				if len(ch.Choices) > 0 {
					text.WriteString(ch.Choices[0].Delta.Content)
				}
				if ch.Usage.TotalTokens > 0 {
					usage = ch.Usage.TotalTokens
				}
			}
			if err := st.Err(); err != nil || !strings.HasPrefix(text.String(), "Fake reply") || usage == 0 {
				t.Fatalf("%s openai-go stream: err %v text %q usage %d", name, err, text.String(), usage)
			}
			// go-openai, not streamed
			cfg := goopenai.DefaultConfig(token)
			cfg.BaseURL = e.srv.URL + "/v1"
			gc := goopenai.NewClientWithConfig(cfg)
			gr, err := gc.CreateChatCompletion(ctx, goopenai.ChatCompletionRequest{
				Model: model, Messages: []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: "Say hello"}},
			})
			if err != nil || len(gr.Choices) != 1 || !strings.HasPrefix(gr.Choices[0].Message.Content, "Fake reply") {
				t.Fatalf("%s go-openai: %v %+v", name, err, gr)
			}
			if gr.Header().Get("X-Byok-Route") != tc.route {
				t.Fatalf("%s go-openai: route %q", name, gr.Header().Get("X-Byok-Route"))
			}
			// go-openai, streamed
			gs, err := gc.CreateChatCompletionStream(ctx, goopenai.ChatCompletionRequest{
				Model: model, Stream: true, Messages: []goopenai.ChatCompletionMessage{{Role: goopenai.ChatMessageRoleUser, Content: "Say hello"}},
			})
			if err != nil {
				t.Fatalf("%s go-openai stream: %v", name, err)
			}
			text.Reset()
			for {
				ch, err := gs.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("%s go-openai stream: %v", name, err)
				}
				if len(ch.Choices) > 0 {
					text.WriteString(ch.Choices[0].Delta.Content)
				}
			}
			gs.Close()
			if !strings.HasPrefix(text.String(), "Fake reply") {
				t.Fatalf("%s go-openai stream text %q", name, text.String())
			}
		}
	}
	// Our errors reach SDK users as API errors with our code.
	e.setTier("broke", "free")
	oc := openai.NewClient(option.WithBaseURL(e.srv.URL+"/v1/"), option.WithAPIKey(e.token("broke", "")), option.WithMaxRetries(0))
	_, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 402 || apiErr.Code != "payment_required" {
		t.Fatalf("402 through openai-go: %v", err)
	}
	_ = fakeprovider.OK
}
