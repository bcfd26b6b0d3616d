package chat

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"testing"

	"github.com/synthstack/byok/shared/apperr"
)

func transcriptionForm(t *testing.T, fields map[string]string, file []byte) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if file != nil {
		fw, _ := mw.CreateFormFile("file", "a.mp3")
		_, _ = fw.Write(file)
	}
	_ = mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

// upload_id stands in for the file part, never alongside it.
func TestParseTranscriptionUploadID(t *testing.T) {
	const id = "0b6f3c2e-8d1a-4b7e-9c55-1f2a3b4c5d6e"
	ct, b := transcriptionForm(t, map[string]string{"model": "whisper-1", "upload_id": id}, nil)
	r, err := parseTranscriptionRequest(b, ct)
	if err != nil || r.UploadID != id {
		t.Fatalf("upload_id alone: %v %+v", err, r)
	}
	ct, b = transcriptionForm(t, map[string]string{"model": "whisper-1", "upload_id": id}, []byte("abc"))
	if _, err := parseTranscriptionRequest(b, ct); apperr.CodeOf(err) != apperr.InvalidRequest {
		t.Fatalf("file and upload_id: %v", err)
	}
	ct, b = transcriptionForm(t, map[string]string{"model": "whisper-1", "upload_id": ""}, nil)
	if _, err := parseTranscriptionRequest(b, ct); apperr.CodeOf(err) != apperr.InvalidRequest {
		t.Fatalf("empty upload_id: %v", err)
	}
}

// The rebuilt body carries the audio as the file part, the other fields
// as they were, and no upload_id.
func TestWithUploadedFile(t *testing.T) {
	ct, b := transcriptionForm(t, map[string]string{"model": "whisper-1", "upload_id": "x", "prompt": "hi"}, nil)
	r, err := parseTranscriptionRequest(b, ct)
	if err != nil {
		t.Fatal(err)
	}
	audio := append([]byte("OggS"), bytes.Repeat([]byte{3}, 1000)...)
	if err := r.withUploadedFile(audio); err != nil {
		t.Fatal(err)
	}
	again, err := parseTranscriptionRequest(r.Body, r.ContentType)
	if err != nil || again.UploadID != "" || again.Model != "whisper-1" {
		t.Fatalf("rebuilt body: %v %+v", err, again)
	}
	_, params, _ := mime.ParseMediaType(r.ContentType)
	mr := multipart.NewReader(bytes.NewReader(r.Body), params["boundary"])
	got := map[string]string{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		v, _ := io.ReadAll(p)
		got[p.FormName()] = string(v)
		if p.FormName() == "file" && (p.FileName() != "audio.ogg" || !bytes.Equal(v, audio)) {
			t.Fatalf("file part %q, %d bytes", p.FileName(), len(v))
		}
	}
	if got["prompt"] != "hi" || got["file"] == "" || len(got) != 3 {
		t.Fatalf("parts: %v", got)
	}
}

func TestAudioFileName(t *testing.T) {
	for in, want := range map[string]string{
		"fLaC....": "audio.flac", "RIFF\x00\x00\x00\x00WAVE": "audio.wav", "OggS": "audio.ogg",
		"\x1a\x45\xdf\xa3": "audio.webm", "\x00\x00\x00\x20ftypM4A ": "audio.m4a", "ID3\x04": "audio.mp3",
		"\xff\xfb\x90": "audio.mp3", "hello": "audio",
	} {
		if got, _ := audioFileName([]byte(in)); got != want {
			t.Errorf("audioFileName(%q) = %q, want %q", in, got, want)
		}
	}
}
