package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the testdata/*/*.golden.json files")

const (
	testCreated = 1700000000
	claudeModel = "claude-sonnet-4-5"
	gptModel    = "gpt-4o"
)

// goldenCase runs one translation on an input file's bytes and returns the
// result as JSON; a translation error is reported as {"error": message}.
type goldenFunc func(t *testing.T, in []byte) any

func errorValue(err error) any { return map[string]any{"error": err.Error()} }

func jsonValue(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("output is not valid JSON: %v\n%s", err, b)
	}
	return v
}

func bytesResult(t *testing.T, out []byte, err error) any {
	if err != nil {
		return errorValue(err)
	}
	return jsonValue(t, out)
}

// runGolden runs fn on every testdata/<dir>/*.in.json and compares the result
// semantically with the matching .golden.json (rewritten under -update).
func runGolden(t *testing.T, dir string, fn goldenFunc) {
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.in.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no inputs in testdata/%s: %v", dir, err)
	}
	for _, in := range files {
		name := strings.TrimSuffix(filepath.Base(in), ".in.json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := fn(t, data)
			// Normalise through JSON so numbers compare as float64.
			gotJSON, err := json.MarshalIndent(got, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden := strings.TrimSuffix(in, ".in.json") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, append(gotJSON, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantJSON, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !reflect.DeepEqual(jsonValue(t, gotJSON), jsonValue(t, wantJSON)) {
				t.Errorf("mismatch with %s\n--- got:\n%s\n--- want:\n%s", golden, gotJSON, wantJSON)
			}
		})
	}
}

func TestGoldenChatToMessages(t *testing.T) {
	runGolden(t, "chat_to_messages", func(t *testing.T, in []byte) any {
		out, err := ChatToMessages(in, claudeModel)
		return bytesResult(t, out, err)
	})
}

func TestGoldenMessagesToChatResponse(t *testing.T) {
	runGolden(t, "messages_to_chat_response", func(t *testing.T, in []byte) any {
		out, err := MessagesToChatResponseAt(in, claudeModel, testCreated)
		return bytesResult(t, out, err)
	})
}

func TestGoldenMessagesToChat(t *testing.T) {
	runGolden(t, "messages_to_chat", func(t *testing.T, in []byte) any {
		out, err := MessagesToChat(in, gptModel)
		return bytesResult(t, out, err)
	})
}

func TestGoldenChatToMessagesResponse(t *testing.T) {
	runGolden(t, "chat_to_messages_response", func(t *testing.T, in []byte) any {
		out, err := ChatToMessagesResponse(in, gptModel)
		return bytesResult(t, out, err)
	})
}

// streamInput is a recorded Anthropic stream: SSE event names and data.
type streamInput struct {
	IncludeUsage bool `json:"include_usage"`
	Events       []struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data"`
	} `json:"events"`
}

func TestGoldenStream(t *testing.T) {
	runGolden(t, "stream", func(t *testing.T, in []byte) any {
		var s streamInput
		if err := json.Unmarshal(in, &s); err != nil {
			t.Fatal(err)
		}
		tr := NewStreamTranslator(claudeModel, s.IncludeUsage, testCreated)
		chunks := []any{}
		var errs []any
		for _, ev := range s.Events {
			var data bytes.Buffer // compact, as Anthropic sends it
			if err := json.Compact(&data, ev.Data); err != nil {
				t.Fatal(err)
			}
			out, err := tr.Event(ev.Event, data.Bytes())
			for _, c := range out {
				chunks = append(chunks, jsonValue(t, c))
			}
			if err != nil {
				var se *StreamError
				if !asStreamError(err, &se) {
					t.Fatalf("error is not a *StreamError: %v", err)
				}
				errs = append(errs, map[string]any{
					"type": se.Type, "message": se.Message,
					"openai_body": jsonValue(t, se.OpenAIBody()),
				})
			}
		}
		in0, out0 := tr.Usage()
		cc, cr := tr.CacheTokens()
		return map[string]any{
			"chunks": chunks, "errors": errs, "done": tr.Done(),
			"usage": map[string]any{"input": in0, "output": out0, "cache_creation": cc, "cache_read": cr},
		}
	})
}

func TestGoldenReverseStream(t *testing.T) {
	runGolden(t, "reverse_stream", func(t *testing.T, in []byte) any {
		var items []json.RawMessage
		if err := json.Unmarshal(in, &items); err != nil {
			t.Fatal(err)
		}
		tr := NewReverseStreamTranslator(gptModel)
		events := []any{}
		var errs []any
		for _, it := range items {
			payload := []byte(it)
			var s string
			if json.Unmarshal(it, &s) == nil {
				payload = []byte(s) // "[DONE]"
			}
			evs, err := tr.Chunk(payload)
			for _, e := range evs {
				events = append(events, map[string]any{"event": e.Event, "data": jsonValue(t, e.Data)})
			}
			if err != nil {
				errs = append(errs, err.Error())
			}
		}
		in0, out0 := tr.Usage()
		return map[string]any{"events": events, "errors": errs, "done": tr.Done(),
			"usage": map[string]any{"input": in0, "output": out0}}
	})
}

// errorInput is one error body translation: direction "to_openai" or
// "to_anthropic"; body is any JSON value, or a string sent as raw bytes.
type errorInput struct {
	Direction string          `json:"direction"`
	Status    int             `json:"status"`
	Body      json.RawMessage `json:"body"`
}

func TestGoldenErrors(t *testing.T) {
	runGolden(t, "errors", func(t *testing.T, in []byte) any {
		var e errorInput
		if err := json.Unmarshal(in, &e); err != nil {
			t.Fatal(err)
		}
		body := []byte(e.Body)
		var s string
		if json.Unmarshal(e.Body, &s) == nil {
			body = []byte(s)
		}
		switch e.Direction {
		case "to_openai":
			return jsonValue(t, AnthropicErrorToOpenAI(e.Status, body))
		case "to_anthropic":
			return jsonValue(t, OpenAIErrorToAnthropic(e.Status, body))
		}
		t.Fatalf("bad direction %q", e.Direction)
		return nil
	})
}

func asStreamError(err error, target **StreamError) bool {
	se, ok := err.(*StreamError)
	if ok {
		*target = se
	}
	return ok
}

// seeds returns the input files of a golden directory, for fuzz corpora.
func seeds(tb testing.TB, dir string) [][]byte {
	files, _ := filepath.Glob(filepath.Join("testdata", dir, "*.in.json"))
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, bytes.TrimSpace(b))
	}
	return out
}
