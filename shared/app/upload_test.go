package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/audio"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/fakeprovider"
)

// newAudioEnv is newEnv with a large-audio bucket in the emulator.
func newAudioEnv(t *testing.T) *testEnv {
	t.Helper()
	e := newEnv(t, func(v map[string]string) { v["AUDIO_BUCKET"] = app.DevAudioBucket(v["TABLE_PREFIX"]) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.BootstrapAudio(ctx, e.clients, e.vars["AUDIO_BUCKET"]); err != nil {
		t.Fatal(err)
	}
	return e
}

// uploadAudio creates an upload for user's token and PUTs b to its
// presigned URL, as a client would.
func (e *testEnv) uploadAudio(tok string, b []byte) string {
	e.t.Helper()
	r := e.do("POST", "/v1/audio/uploads", tok, nil)
	if r.Status != http.StatusCreated {
		e.t.Fatalf("create upload: %d %s", r.Status, r.Body)
	}
	var u audio.Upload
	if err := json.Unmarshal(r.Body, &u); err != nil {
		e.t.Fatal(err)
	}
	req, _ := http.NewRequest(u.Method, u.URL, bytes.NewReader(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("PUT presigned URL: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("PUT presigned URL: %s", resp.Status)
	}
	return u.UploadID
}

// transcribeUpload posts a transcription naming uploadID (and a file part
// too when file is not nil).
func (e *testEnv) transcribeUpload(tok, uploadID string, file []byte) response {
	e.t.Helper()
	ct, body := multipartBody(e.t, map[string]string{"model": "whisper-1", "upload_id": uploadID, "language": "en"}, file)
	return e.do("POST", "/v1/audio/transcriptions", tok, body, "Content-Type", ct)
}

func wavBytes(n int) []byte {
	b := append([]byte("RIFF\x00\x00\x00\x00WAVEfmt "), bytes.Repeat([]byte{7, 9}, n/2)...)
	return b
}

func wantErrorCode(t *testing.T, what string, r response, status int, code string) {
	t.Helper()
	var env struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(r.Body, &env)
	if r.Status != status || env.Error.Code != code || env.Error.Message == "" {
		t.Fatalf("%s: %d %s, want %d %s", what, r.Status, r.Body, status, code)
	}
}

// An upload_id in place of the file: the provider gets the uploaded bytes
// in a "file" part (the other fields copied, no upload_id), the answer is
// billed, and the upload is gone afterwards.
func TestTranscriptionUploadID(t *testing.T) {
	e := newAudioEnv(t)
	e.setTier("carol", "free")
	e.grant("carol", 100_000)
	tok := e.token("carol", "")
	wav := wavBytes(1 << 20)
	id := e.uploadAudio(tok, wav)

	r := e.transcribeUpload(tok, id, nil)
	if r.Status != 200 || !strings.Contains(string(r.Body), fakeprovider.Transcript(wav)) {
		t.Fatalf("transcription of an upload: %d %s", r.Status, r.Body)
	}
	if n := e.fake.TotalCalls(); n != 1 {
		t.Fatalf("provider calls = %d, want 1", n)
	}
	sent := e.fake.LastRequest()
	_, params, err := mime.ParseMediaType(sent.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string][]byte{}
	var fileName string
	mr := multipart.NewReader(bytes.NewReader(sent.Body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("upstream multipart: %v", err)
		}
		b, _ := io.ReadAll(p)
		parts[p.FormName()] = b
		if p.FormName() == "file" {
			fileName = p.FileName()
		}
	}
	if !bytes.Equal(parts["file"], wav) || fileName != "audio.wav" {
		t.Fatalf("upstream file part: %d bytes named %q, want the %d uploaded bytes as audio.wav", len(parts["file"]), fileName, len(wav))
	}
	if string(parts["model"]) != "whisper-1" || string(parts["language"]) != "en" {
		t.Fatalf("other fields not copied: %q", parts)
	}
	if _, ok := parts["upload_id"]; ok {
		t.Fatal("upload_id was sent upstream")
	}
	if bal := e.balance("carol"); bal <= 0 || bal >= 100_000 {
		t.Fatalf("balance after a transcription: %d (want charged, not everything)", bal)
	}

	// Used once: deleted, so the same id is now unknown.
	if _, err := e.app.Audio.Read(context.Background(), "carol", id); err == nil {
		t.Fatal("the upload is still stored after use")
	}
	wantErrorCode(t, "reused upload_id", e.transcribeUpload(tok, id, nil), 404, "not_found")
	if n := e.fake.TotalCalls(); n != 1 {
		t.Fatalf("a used upload reached the provider again (%d calls)", n)
	}
}

// Another user's upload, an unknown or malformed id, and both a file and
// an upload_id are refused before the provider and without a charge; the
// owner's upload is kept.
func TestTranscriptionUploadIDRefused(t *testing.T) {
	e := newAudioEnv(t)
	for _, u := range []string{"carol", "dave"} {
		e.setTier(u, "free")
		e.grant(u, 100_000)
	}
	carol, dave := e.token("carol", ""), e.token("dave", "")
	wav := wavBytes(4096)
	id := e.uploadAudio(carol, wav)

	wantErrorCode(t, "other user's upload_id", e.transcribeUpload(dave, id, nil), 404, "not_found")
	wantErrorCode(t, "unknown upload_id", e.transcribeUpload(carol, "0b6f3c2e-8d1a-4b7e-9c55-1f2a3b4c5d6e", nil), 404, "not_found")
	wantErrorCode(t, "malformed upload_id", e.transcribeUpload(carol, "../x", nil), 400, "invalid_request")
	wantErrorCode(t, "file and upload_id", e.transcribeUpload(carol, id, []byte("abc")), 400, "invalid_request")
	if n := e.fake.TotalCalls(); n != 0 {
		t.Fatalf("refused uploads reached the provider %d times", n)
	}
	for _, u := range []string{"carol", "dave"} {
		if bal := e.balance(u); bal != 100_000 {
			t.Fatalf("%s charged %d for a refused upload", u, 100_000-bal)
		}
	}
	if b, err := e.app.Audio.Read(context.Background(), "carol", id); err != nil || !bytes.Equal(b, wav) {
		t.Fatalf("carol's upload after refusals: %v", err)
	}
}

// Storage down when the upload is read: 503, no provider call, no charge,
// and the upload is still there for a retry.
func TestTranscriptionUploadIDStorageDown(t *testing.T) {
	e := newAudioEnv(t)
	e.setTier("carol", "free")
	e.grant("carol", 100_000)
	tok := e.token("carol", "")
	wav := wavBytes(4096)
	id := e.uploadAudio(tok, wav)

	good := e.clients
	down := e.clients
	down.S3 = s3.NewFromConfig(awstest.Config(t), func(o *s3.Options) {
		o.BaseEndpoint = aws.String("http://127.0.0.1:1") // nothing listens there
		o.UsePathStyle = true
		o.RetryMaxAttempts = 1
	})
	e.clients = down
	e.restart()
	wantErrorCode(t, "S3 down", e.transcribeUpload(tok, id, nil), 503, "service_unavailable")
	if n := e.fake.TotalCalls(); n != 0 {
		t.Fatalf("S3 down: the provider was called %d times", n)
	}
	if bal := e.balance("carol"); bal != 100_000 {
		t.Fatalf("S3 down: charged %d", 100_000-bal)
	}

	e.clients = good
	e.restart()
	r := e.transcribeUpload(tok, id, nil)
	if r.Status != 200 || !strings.Contains(string(r.Body), fakeprovider.Transcript(wav)) {
		t.Fatalf("retry after S3 came back: %d %s", r.Status, r.Body)
	}
}
