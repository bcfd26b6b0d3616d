package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdaurl"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/fakeprovider"
)

// waitFor polls cond until it holds or 10 s pass (no timing assertion: the
// deadline only stops a broken test from hanging).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// streamReq opens a streamed chat request and returns the response.
func (e *testEnv) streamReq(ctx context.Context, token string, body map[string]any) *http.Response {
	e.t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+"/v1/chat/completions", strings.NewReader(string(raw)))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// nextData returns the next SSE data payload.
func nextData(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		if strings.HasPrefix(line, "data: ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "data: "))
		}
	}
}

// firstContent reads until the first chunk with content.
func firstContent(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	for {
		d := nextData(t, br)
		var ch struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(d), &ch); err != nil {
			t.Fatalf("bad chunk %q", d)
		}
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			return ch.Choices[0].Delta.Content
		}
	}
}

// The upstream sends one chunk, then waits 500 ms: the client has that chunk
// while the upstream is still waiting (no buffering), through the dev server
// and through the lambdaurl handler, for both providers.
func TestStreamingIsNotBuffered(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	for _, model := range []string{"gpt-4o-mini", "claude-3-5-haiku-20241022"} {
		key, prov := openAIKey(t), "openai"
		if strings.HasPrefix(model, "claude") {
			key, prov = anthropicKey(t), "anthropic"
		}
		e.saveKey("alice", prov, key)
		e.fake.SetKey(key, fakeprovider.Behavior{FirstChunkThenWait: 500 * time.Millisecond})
		body := map[string]any{"model": model, "stream": true, "messages": []map[string]string{{"role": "user", "content": "hi"}}}

		// dev server
		resp := e.streamReq(context.Background(), e.token("alice", ""), body)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Byok-Route") != "byok" {
			t.Fatalf("%s: %d %v", model, resp.StatusCode, resp.Header)
		}
		br := bufio.NewReader(resp.Body)
		firstContent(t, br)
		if last := e.fake.LastRequest(); last.Finished {
			t.Fatalf("%s: the first chunk arrived only after the upstream finished: buffered", model)
		}
		rest, _ := io.ReadAll(br)
		resp.Body.Close()
		if !strings.Contains(string(rest), "data: [DONE]") {
			t.Fatalf("%s: stream did not end with [DONE]: %s", model, rest)
		}

		// lambdaurl handler in process
		raw, _ := json.Marshal(body)
		h := lambdaurl.Wrap(e.app.Handler(app.FnChat))
		lresp, err := h(context.Background(), &events.LambdaFunctionURLRequest{
			RawPath: "/v1/chat/completions", Body: string(raw),
			Headers: map[string]string{"authorization": "Bearer " + e.token("alice", ""), "content-type": "application/json"},
			RequestContext: events.LambdaFunctionURLRequestContext{DomainName: "example.lambda-url.us-east-1.on.aws",
				HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{Method: "POST", Path: "/v1/chat/completions"}},
		})
		if err != nil || lresp.StatusCode != 200 || lresp.Headers["X-Byok-Route"] != "byok" {
			t.Fatalf("%s lambdaurl: %v %+v", model, err, lresp)
		}
		lbr := bufio.NewReader(lresp.Body)
		firstContent(t, lbr)
		if last := e.fake.LastRequest(); last.Finished {
			t.Fatalf("%s lambdaurl: first chunk only after the upstream finished: buffered", model)
		}
		rest, _ = io.ReadAll(lbr)
		if !strings.Contains(string(rest), "data: [DONE]") {
			t.Fatalf("%s lambdaurl: no [DONE]: %s", model, rest)
		}
	}
}

// usageRows returns alice's api_key_usage rows.
func (e *testEnv) usageRows(user string) []map[string]types.AttributeValue {
	e.t.Helper()
	out, err := e.db.Query(context.Background(), &dynamodb.QueryInput{
		TableName:              aws.String(e.vars["TABLE_PREFIX"] + "api_key_usage"),
		KeyConditionExpression: aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: "USER#" + user},
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out.Items
}

func num(t *testing.T, it map[string]types.AttributeValue, k string) string {
	t.Helper()
	v, ok := it[k].(*types.AttributeValueMemberN)
	if !ok {
		return ""
	}
	return v.Value
}

// Usage is recorded from the provider's own counts for whole streams, and
// from what was delivered for a cut stream; a client that disconnects
// cancels the upstream call.
func TestStreamUsageCutAndDisconnect(t *testing.T) {
	e := newEnv(t, nil)
	for _, model := range []string{"gpt-4o-mini", "claude-3-5-haiku-20241022"} {
		user := "s-" + model[:3]
		e.setTier(user, "premium")
		key, prov := openAIKey(t), "openai"
		if strings.HasPrefix(model, "claude") {
			key, prov = anthropicKey(t), "anthropic"
		}
		e.saveKey(user, prov, key)
		body := map[string]any{"model": model, "stream": true, "messages": []map[string]string{{"role": "user", "content": "count"}}}

		// whole stream: the provider's usage
		whole := fakeprovider.Behavior{Chunks: 5}
		e.fake.SetKey(key, whole)
		resp := e.streamReq(context.Background(), e.token(user, ""), body)
		all, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(all), "\n") {
			if strings.HasPrefix(line, "data: {") && strings.Contains(line, `"choices":[]`) {
				t.Fatalf("%s: usage chunk sent to a client that did not ask for it: %s", model, line)
			}
		}
		rec := e.fake.LastRequest()
		rows := e.usageRows(user)
		if len(rows) != 1 {
			t.Fatalf("%s: %d usage rows after one stream", model, len(rows))
		}
		if got := num(t, rows[0], "output_tokens"); got != "5" {
			t.Fatalf("%s: output_tokens %s, want 5", model, got)
		}
		if got := num(t, rows[0], "input_tokens"); got != itoa(rec.Usage.Input) {
			t.Fatalf("%s: input_tokens %s, want %d", model, got, rec.Usage.Input)
		}

		// cut stream: count what was delivered
		e.fake.SetKey(key, fakeprovider.Behavior{Chunks: 5, CutAfter: 2})
		resp = e.streamReq(context.Background(), e.token(user, ""), body)
		io.ReadAll(resp.Body)
		resp.Body.Close()
		rows = e.usageRows(user)
		if len(rows) != 2 {
			t.Fatalf("%s: %d usage rows", model, len(rows))
		}
		cut := rows[1]
		if c, _ := cut["cut"].(*types.AttributeValueMemberBOOL); c == nil || !c.Value {
			t.Fatalf("%s: cut stream not marked cut: %v", model, cut)
		}
		// Delivered: 2 of 5 pieces. OpenAI counts one token per content
		// chunk; Anthropic estimates from the delivered text length.
		if got := num(t, cut, "output_tokens"); got < "2" || got >= "5" || len(got) != 1 {
			t.Fatalf("%s: cut stream output_tokens %s, want what was delivered (2 of 5 pieces)", model, got)
		}
		if num(t, cut, "input_tokens") == "0" {
			t.Fatalf("%s: cut stream has no input tokens", model)
		}

		// disconnect: the upstream call is cancelled
		before := e.fake.Cancelled()
		e.fake.SetKey(key, fakeprovider.Behavior{FirstChunkThenWait: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		resp = e.streamReq(ctx, e.token(user, ""), body)
		firstContent(t, bufio.NewReader(resp.Body))
		cancel()
		resp.Body.Close()
		waitFor(t, "the upstream call to be cancelled", func() bool { return e.fake.Cancelled() > before })
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
