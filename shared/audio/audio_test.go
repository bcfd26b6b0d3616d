package audio_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/audio"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/awstest"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// newStore makes a bucket in the emulator (path-style: it has no bucket
// host names) and a store over it.
func newStore(t *testing.T) (*audio.Store, *s3.Client) {
	t.Helper()
	c := s3.NewFromConfig(awstest.Config(t), func(o *s3.Options) { o.UsePathStyle = true })
	bucket := strings.ToLower(strings.TrimSuffix(awstest.Prefix(t), "-")) + "-audio"
	if len(bucket) > 63 {
		bucket = bucket[len(bucket)-63:]
	}
	bucket = strings.TrimLeft(bucket, "-")
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return audio.New(c, bucket, nil), c
}

func put(t *testing.T, u audio.Upload, body []byte) {
	t.Helper()
	req, err := http.NewRequest(u.Method, u.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT presigned URL: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT presigned URL: %s", resp.Status)
	}
}

func wantCode(t *testing.T, err error, code apperr.Code) {
	t.Helper()
	if apperr.CodeOf(err) != code {
		t.Fatalf("err = %v (%s), want %s", err, apperr.CodeOf(err), code)
	}
}

// The whole path against the emulator: presigned PUT, read by the owner
// only, single use.
func TestUploadReadDelete(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	u, err := s.NewUpload(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if u.Method != "PUT" || u.MaxBytes != audio.MaxBytes || !u.ExpiresAt.After(time.Now()) || u.UploadID == "" {
		t.Fatalf("upload = %+v", u)
	}
	if strings.Contains(u.URL, "alice") {
		t.Errorf("URL shows the user id: %s", u.URL)
	}
	audioBytes := bytes.Repeat([]byte("RIFF-not-really-wav"), 1000)
	put(t, u, audioBytes)

	// Another user naming alice's upload id: not found, like an unknown id.
	_, err = s.Read(ctx, "bob", u.UploadID)
	wantCode(t, err, apperr.NotFound)
	// A user id that tries to reach into another's prefix.
	_, err = s.Read(ctx, "alice/../alice", u.UploadID)
	wantCode(t, err, apperr.NotFound)

	got, err := s.Read(ctx, "alice", u.UploadID)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, audioBytes) {
		t.Fatalf("read %d bytes, want the %d uploaded", len(got), len(audioBytes))
	}
	s.Delete(ctx, "alice", u.UploadID)
	_, err = s.Read(ctx, "alice", u.UploadID)
	wantCode(t, err, apperr.NotFound)

	// Not an id we made.
	for _, bad := range []string{"", "../x", "x/" + u.UploadID, strings.ToUpper(u.UploadID) + "0"} {
		_, err = s.Read(ctx, "alice", bad)
		wantCode(t, err, apperr.InvalidRequest)
	}
}

func TestUploadBounded(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t)
	s.MaxBytes = 1000
	u, err := s.NewUpload(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	put(t, u, bytes.Repeat([]byte("x"), 1001))
	_, err = s.Read(ctx, "alice", u.UploadID)
	wantCode(t, err, apperr.RequestTooLarge)

	// Created but never PUT: not found. PUT empty: a clear error.
	u2, _ := s.NewUpload(ctx, "alice")
	_, err = s.Read(ctx, "alice", u2.UploadID)
	wantCode(t, err, apperr.NotFound)
	put(t, u2, nil)
	_, err = s.Read(ctx, "alice", u2.UploadID)
	wantCode(t, err, apperr.InvalidRequest)
}

func TestUploadsRoute(t *testing.T) {
	s, _ := newStore(t)
	mux := http.NewServeMux()
	s.Register(mux)
	do := func(body string, who string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/v1/audio/uploads", strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if who != "" {
			req = req.WithContext(auth.WithPrincipal(req.Context(), auth.Principal{UserID: who}))
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	rec := do("", "alice")
	if rec.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"upload_id", "url", "method", "expires_at", "max_bytes"} {
		if _, ok := got[k]; !ok {
			t.Errorf("answer lacks %q: %s", k, rec.Body)
		}
	}
	if rec := do(`{"file":"x"}`, "alice"); rec.Code != http.StatusBadRequest {
		t.Errorf("unknown field: status %d, want 400", rec.Code)
	}
	if rec := do("", ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("no principal: status %d, want 401", rec.Code)
	}
	s.Bucket = ""
	if rec := do("", "alice"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("no bucket: status %d, want 503", rec.Code)
	}
}
