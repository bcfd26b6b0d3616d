package chat

import (
	"net/http"
	"testing"

	"github.com/synthstack/byok/shared/apperr"
)

// Each request decoder: no panic, and every failure is a client error.
func checkDecoder(t *testing.T, req *apiRequest, err error) {
	if err != nil {
		if c := apperr.CodeOf(err); c != apperr.InvalidRequest {
			t.Fatalf("decoder error code %s: %v", c, err)
		}
		return
	}
	if req == nil || req.Model == "" {
		t.Fatal("decoder accepted a request without a model")
	}
}

func FuzzParseChatRequest(f *testing.F) {
	f.Add([]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"x"}],"stream":true,"max_tokens":5}`))
	f.Add([]byte(`{"model":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseChatRequest(nil, b)
		checkDecoder(t, r, err)
		if err == nil {
			_ = r.openAIBody()
		}
	})
}

func FuzzParseMessagesRequest(f *testing.F) {
	f.Add([]byte(`{"model":"claude-3-5-haiku-20241022","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`))
	f.Add([]byte(`{"model":"x","max_tokens":1.5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseMessagesRequest(nil, b, http.Header{"Anthropic-Version": {"2023-06-01"}})
		checkDecoder(t, r, err)
	})
}

func FuzzParseEmbeddingsRequest(f *testing.F) {
	f.Add([]byte(`{"model":"text-embedding-3-small","input":["a","b"]}`))
	f.Add([]byte(`{"model":"text-embedding-3-small","input":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseEmbeddingsRequest(nil, b)
		checkDecoder(t, r, err)
	})
}

func FuzzParseTranscriptionRequest(f *testing.F) {
	const ct = "multipart/form-data; boundary=XYZ"
	f.Add([]byte("--XYZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\r\nabc\r\n--XYZ--\r\n"))
	f.Add([]byte("--XYZ\r\n\r\n--XYZ--"))
	f.Add([]byte("--XYZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XYZ\r\nContent-Disposition: form-data; name=\"upload_id\"\r\n\r\n0b6f3c2e-8d1a-4b7e-9c55-1f2a3b4c5d6e\r\n--XYZ--\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseTranscriptionRequest(b, ct)
		checkDecoder(t, r, err)
	})
}
