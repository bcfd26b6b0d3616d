package translate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every input file whose name starts with err_ plants the word SECRET in
// message content (or a raw body); no error may echo it.
func TestErrorsNeverEchoContent(t *testing.T) {
	type fn func([]byte) error
	dirs := map[string]fn{
		"chat_to_messages": func(b []byte) error { _, err := ChatToMessages(b, ""); return err },
		"messages_to_chat": func(b []byte) error { _, err := MessagesToChat(b, ""); return err },
	}
	for dir, f := range dirs {
		files, _ := filepath.Glob(filepath.Join("testdata", dir, "err_*.in.json"))
		if len(files) == 0 {
			t.Fatalf("no error cases in %s", dir)
		}
		for _, file := range files {
			b, _ := os.ReadFile(file)
			err := f(b)
			if err == nil {
				t.Errorf("%s: want an error", file)
				continue
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("%s: error echoes content: %v", file, err)
			}
		}
	}
	for _, body := range []string{"<html>SECRET</html>", `{"error": "SECRET"}`, ""} {
		if bytes.Contains(AnthropicErrorToOpenAI(502, []byte(body)), []byte("SECRET")) ||
			bytes.Contains(OpenAIErrorToAnthropic(502, []byte(body)), []byte("SECRET")) {
			t.Errorf("error body %q echoed", body)
		}
	}
}

func TestModelParameter(t *testing.T) {
	body := []byte(`{"model":"anthropic/claude-x","messages":[{"role":"user","content":"hi"}]}`)
	out, err := ChatToMessages(body, "")
	if err != nil || !bytes.Contains(out, []byte(`"model":"anthropic/claude-x"`)) {
		t.Errorf("empty model should keep the body's: %s %v", out, err)
	}
	out, err = ChatToMessages(body, "claude-x")
	if err != nil || !bytes.Contains(out, []byte(`"model":"claude-x"`)) {
		t.Errorf("model parameter should win: %s %v", out, err)
	}
	if _, err := ChatToMessages([]byte(`{"messages":[{"role":"user","content":"hi"}]}`), ""); err == nil {
		t.Error("want an error without any model")
	}
	resp := []byte(`{"id":"msg_1","type":"message","model":"claude-upstream","content":[],"stop_reason":"end_turn","usage":{}}`)
	out, err = MessagesToChatResponse(resp, "")
	if err != nil || !bytes.Contains(out, []byte(`"model":"claude-upstream"`)) {
		t.Errorf("empty requestModel should report the upstream's: %s %v", out, err)
	}
	var v struct{ Created int64 }
	_ = json.Unmarshal(out, &v)
	if v.Created < 1700000000 {
		t.Errorf("created = %d, want now", v.Created)
	}
}

// A request translated to Anthropic and back keeps its conversation.
func TestRoundTripRequest(t *testing.T) {
	in := []byte(`{"model":"m","messages":[
		{"role":"system","content":"S"},
		{"role":"user","content":"U1"},
		{"role":"assistant","content":"A1","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},
		{"role":"tool","tool_call_id":"c1","content":"R"},
		{"role":"user","content":"U2"}],
		"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
		"tool_choice":"required","max_tokens":50,"stop":["X"]}`)
	a, err := ChatToMessages(in, "")
	if err != nil {
		t.Fatal(err)
	}
	back, err := MessagesToChat(a, "")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"U1"},` +
		`{"role":"assistant","content":"A1","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},` +
		`{"role":"tool","content":"R","tool_call_id":"c1"},{"role":"user","content":"U2"}],` +
		`"max_completion_tokens":50,"stop":["X"],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required"}`
	if !jsonEqual(t, back, []byte(want)) {
		t.Errorf("round trip:\n got %s\nwant %s", back, want)
	}
}

func TestStreamEventsAfterStopIgnored(t *testing.T) {
	tr := NewStreamTranslator("m", true, 1)
	_, _ = tr.Event("message_start", []byte(`{"type":"message_start","message":{"id":"x","usage":{"input_tokens":1,"output_tokens":1}}}`))
	out, _ := tr.Event("message_stop", []byte(`{"type":"message_stop"}`))
	if len(out) != 2 || !tr.Done() {
		t.Fatalf("message_stop without message_delta: want finish and usage chunks, got %d", len(out))
	}
	if again, _ := tr.Event("message_stop", []byte(`{"type":"message_stop"}`)); len(again) != 0 {
		t.Errorf("second message_stop produced %d chunks", len(again))
	}
	if _, err := tr.Event("content_block_delta", []byte(`{not json`)); err == nil {
		t.Error("malformed event: want an error")
	}
}

// The text_delta fast path and the general path give the same chunks.
func TestTextDeltaFastPath(t *testing.T) {
	for _, text := range []string{"", "plain", `q\"b\\s`, `\n\t\u0001`, "<>&", `\u2028`, "ü😀", `\ud83d\ude00`, "\u2028 raw"} {
		fast := `{"type":"content_block_delta","index":3,"delta":{"type":"text_delta","text":"` + text + `"}}`
		slow := `{"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": "` + text + `"}}`
		if _, ok := textDeltaLiteral([]byte(fast)); !ok {
			t.Errorf("%q: fast path not taken", text)
		}
		a, errA := NewStreamTranslator("m", false, 1).Event("", []byte(fast))
		b, errB := NewStreamTranslator("m", false, 1).Event("", []byte(slow))
		if errA != nil || errB != nil || len(a) != len(b) {
			t.Fatalf("%q: %v %v %d %d", text, errA, errB, len(a), len(b))
		}
		for i := range a {
			if !jsonEqual(t, a[i], b[i]) {
				t.Errorf("%q: fast %s != slow %s", text, a[i], b[i])
			}
		}
	}
	for _, bad := range []string{
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"},"x":{"y":"b"}}`,
		`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a` + "\x01" + `"}}`,
		"{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\xff\"}}",
		`{"type":"content_block_delta","index":,"delta":{"type":"text_delta","text":"a"}}`,
	} {
		if _, ok := textDeltaLiteral([]byte(bad)); ok {
			t.Errorf("fast path taken for %s", bad)
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\s/", "\x00\x01\x1f\x7f", "\n\r\t", "<>&", "\u2028\u2029", "ü€😀", "bad\xffutf8\xc3"} {
		got := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("%q: invalid JSON %s: %v", s, got, err)
			continue
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if s == "bad\xffutf8\xc3" {
			want = "bad\uFFFDutf8\uFFFD"
		}
		if back != want {
			t.Errorf("%q: round trip gave %q", s, back)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// ---- fuzzing ----

// bounded reports whether an output of n bytes is within the allowed size
// for an input of m bytes: escaping at most sextuples a byte (\u00XX), and a
// translation adds a bounded amount of structure.
func bounded(n, m int) bool { return n <= 8*m+4096 }

func FuzzChatToMessages(f *testing.F) {
	for _, s := range seeds(f, "chat_to_messages") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := ChatToMessages(in, "")
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON output: %s", out)
		}
		if !bounded(len(out), len(in)) {
			t.Fatalf("output %d bytes for input %d", len(out), len(in))
		}
	})
}

func FuzzMessagesToChatResponse(f *testing.F) {
	for _, s := range seeds(f, "messages_to_chat_response") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := MessagesToChatResponseAt(in, "", 1)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON output: %s", out)
		}
		if !bounded(len(out), len(in)) {
			t.Fatalf("output %d bytes for input %d", len(out), len(in))
		}
	})
}

// FuzzStreamEvent feeds newline-separated events (after a real message_start)
// to one translator.
func FuzzStreamEvent(f *testing.F) {
	for _, s := range seeds(f, "stream") {
		var in streamInput
		if json.Unmarshal(s, &in) != nil {
			continue
		}
		var lines [][]byte
		for _, ev := range in.Events {
			var c bytes.Buffer
			_ = json.Compact(&c, ev.Data)
			lines = append(lines, c.Bytes())
		}
		f.Add("", bytes.Join(lines, []byte("\n")))
	}
	f.Fuzz(func(t *testing.T, eventType string, data []byte) {
		tr := NewStreamTranslator("", true, 1)
		for _, line := range bytes.Split(data, []byte("\n")) {
			chunks, err := tr.Event(eventType, line)
			total := 0
			for _, c := range chunks {
				if !json.Valid(c) {
					t.Fatalf("invalid chunk: %s", c)
				}
				total += len(c)
			}
			if !bounded(total, len(line)+len(eventType)) {
				t.Fatalf("%d bytes of chunks for a %d-byte event", total, len(line))
			}
			if se, ok := err.(*StreamError); ok {
				if !json.Valid(se.OpenAIBody()) || !json.Valid(se.AnthropicBody()) {
					t.Fatal("invalid error body")
				}
			}
		}
		in, out := tr.Usage()
		if in < 0 || out < 0 {
			t.Fatalf("negative usage %d %d", in, out)
		}
	})
}

func FuzzMessagesToChat(f *testing.F) {
	for _, s := range seeds(f, "messages_to_chat") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := MessagesToChat(in, "")
		if err != nil {
			return
		}
		if !json.Valid(out) || !bounded(len(out), len(in)) {
			t.Fatalf("bad output (%d bytes for %d): %s", len(out), len(in), out)
		}
	})
}

func FuzzReverseStream(f *testing.F) {
	for _, s := range seeds(f, "reverse_stream") {
		var items []json.RawMessage
		if json.Unmarshal(s, &items) != nil {
			continue
		}
		var lines [][]byte
		for _, it := range items {
			var str string
			if json.Unmarshal(it, &str) == nil {
				lines = append(lines, []byte(str))
				continue
			}
			var c bytes.Buffer
			_ = json.Compact(&c, it)
			lines = append(lines, c.Bytes())
		}
		f.Add(bytes.Join(lines, []byte("\n")))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := NewReverseStreamTranslator("")
		for _, line := range bytes.Split(data, []byte("\n")) {
			evs, _ := tr.Chunk(line)
			total := 0
			for _, e := range evs {
				if !json.Valid(e.Data) {
					t.Fatalf("invalid event data: %s", e.Data)
				}
				total += len(e.Data)
			}
			if !bounded(total, len(line)) {
				t.Fatalf("%d bytes of events for a %d-byte chunk", total, len(line))
			}
		}
	})
}

func FuzzChatToMessagesResponse(f *testing.F) {
	for _, s := range seeds(f, "chat_to_messages_response") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := ChatToMessagesResponse(in, "")
		if err != nil {
			return
		}
		if !json.Valid(out) || !bounded(len(out), len(in)) {
			t.Fatalf("bad output (%d bytes for %d): %s", len(out), len(in), out)
		}
	})
}

// ---- benchmarks ----

var benchRequest = []byte(`{"model":"claude-sonnet-4-5","messages":[
{"role":"system","content":"You are a helpful assistant. Answer concisely and cite sources when you can."},
{"role":"user","content":"What is the capital of France, and roughly how many people live there?"},
{"role":"assistant","content":"Paris is the capital of France; about 2.1 million people live in the city proper."}],
"max_tokens":1024,"temperature":0.7,"stream":true,"stream_options":{"include_usage":true},"user":"u-123"}`)

func BenchmarkChatToMessages(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchRequest)))
	for b.Loop() {
		if _, err := ChatToMessages(benchRequest, "claude-sonnet-4-5"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStreamEvent(b *testing.B) {
	tr := NewStreamTranslator("claude-sonnet-4-5", true, 1700000000)
	_, _ = tr.Event("message_start", []byte(`{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}`))
	_, _ = tr.Event("content_block_start", []byte(`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`))
	ev := []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello, this is a typical streamed text delta."}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.Event("content_block_delta", ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReverseStreamChunk(b *testing.B) {
	tr := NewReverseStreamTranslator("gpt-4o")
	_, _ = tr.Chunk([]byte(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`))
	ch := []byte(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hello, this is a typical streamed text delta."},"logprobs":null,"finish_reason":null}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.Chunk(ch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMessagesToChatResponse(b *testing.B) {
	body := []byte(`{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Paris is the capital of France; about 2.1 million people live in the city proper."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":40,"output_tokens":20}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MessagesToChatResponseAt(body, "claude-sonnet-4-5", 1); err != nil {
			b.Fatal(err)
		}
	}
}
