package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// The relay answers the official SDK like the provider would, for any key,
// streamed too.
func TestRelayAnswersAnyKey(t *testing.T) {
	h, closeFake := handler()
	defer closeFake()
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := openai.NewClient(option.WithBaseURL(srv.URL+"/v1"), option.WithAPIKey("sk-anything-at-all"))
	ctx := context.Background()
	resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) == 0 || resp.Choices[0].Message.Content == "" {
		t.Fatalf("no reply: %+v", resp)
	}
	stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:    "gpt-4o-mini",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
	})
	var b strings.Builder
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			b.WriteString(ch.Delta.Content)
		}
	}
	if err := stream.Err(); err != nil || b.Len() == 0 {
		t.Fatalf("stream: %v, %q", err, b.String())
	}
}
