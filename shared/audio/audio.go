// Package audio takes large audio through S3: a Lambda request carries at
// most 6 MB, so a client asks POST /v1/audio/uploads for a presigned PUT URL
// and an upload_id, PUTs the file there, then names the upload_id in
// POST /v1/audio/transcriptions instead of sending the file (docs/api.md,
// "Large audio"). Objects are keyed by their owner, read bounded, deleted
// after use, and expire with the bucket's one-day lifecycle rule anyway.
package audio

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/google/uuid"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/httpx"
)

// MaxBytes is the largest audio file accepted (the providers' own limit).
const MaxBytes = 25 << 20

// DefaultURLExpiry is how long a presigned PUT URL stays usable.
const DefaultURLExpiry = 15 * time.Minute

// S3API is the subset of *s3.Client the store uses.
type S3API interface {
	GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// Presigner signs PUT URLs (*s3.PresignClient).
type Presigner interface {
	PresignPutObject(context.Context, *s3.PutObjectInput, ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

// Store hands out upload URLs and reads uploads back for their owner.
type Store struct {
	S3      S3API
	Presign Presigner
	Bucket  string
	// URLExpiry is the presigned URL's lifetime (DefaultURLExpiry when 0).
	URLExpiry time.Duration
	// MaxBytes bounds an upload (MaxBytes when 0).
	MaxBytes int64
	Log      *slog.Logger
	Now      func() time.Time
}

// New builds a Store over an S3 client for bucket.
func New(c *s3.Client, bucket string, log *slog.Logger) *Store {
	return &Store{S3: c, Presign: s3.NewPresignClient(c), Bucket: bucket, Log: log}
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Store) log(ctx context.Context) *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return httpx.Logger(ctx, s.Log)
}

func (s *Store) maxBytes() int64 {
	if s.MaxBytes > 0 {
		return s.MaxBytes
	}
	return MaxBytes
}

func (s *Store) urlExpiry() time.Duration {
	if s.URLExpiry > 0 {
		return s.URLExpiry
	}
	return DefaultURLExpiry
}

// Upload is the answer of POST /v1/audio/uploads.
type Upload struct {
	UploadID  string    `json:"upload_id"`
	URL       string    `json:"url"`
	Method    string    `json:"method"`
	ExpiresAt time.Time `json:"expires_at"`
	MaxBytes  int64     `json:"max_bytes"`
}

// objectKey is where userID's upload id lives. The user id is encoded, so
// no subject (which may hold "/") can reach into another's prefix.
func objectKey(userID, id string) string {
	return "u/" + base64.RawURLEncoding.EncodeToString([]byte(userID)) + "/" + id
}

// errNotFound is the answer for an unknown, expired, used or foreign upload.
func errNotFound(id string) error {
	return apperr.New(apperr.NotFound, "no upload %q for you: upload ids are single-use and expire after a day; create one with POST /v1/audio/uploads", id)
}

// checkID accepts only the ids NewUpload makes.
func checkID(id string) error {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return apperr.New(apperr.InvalidRequest, "upload_id must be an id returned by POST /v1/audio/uploads")
	}
	return nil
}

// NewUpload returns a presigned PUT URL for a new upload of userID.
func (s *Store) NewUpload(ctx context.Context, userID string) (Upload, error) {
	if s.Bucket == "" {
		return Upload{}, apperr.New(apperr.ServiceUnavailable, "large audio uploads are not configured here (AUDIO_BUCKET is unset): send the file in the request instead")
	}
	id := uuid.NewString()
	exp := s.urlExpiry()
	req, err := s.Presign.PresignPutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.Bucket),
		Key:    aws.String(objectKey(userID, id)),
	}, s3.WithPresignExpires(exp))
	if err != nil {
		return Upload{}, apperr.Wrap(err, apperr.ServiceUnavailable, "cannot create an upload URL now; try again shortly")
	}
	return Upload{UploadID: id, URL: req.URL, Method: http.MethodPut, ExpiresAt: s.now().Add(exp).UTC().Truncate(time.Second),
		MaxBytes: s.maxBytes()}, nil
}

// Read returns userID's upload id, at most MaxBytes of it. Another user's
// id is not found, like an unknown one.
func (s *Store) Read(ctx context.Context, userID, id string) ([]byte, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if s.Bucket == "" {
		return nil, errNotFound(id)
	}
	out, err := s.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(objectKey(userID, id))})
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return nil, errNotFound(id)
	}
	if err != nil {
		return nil, apperr.Wrap(err, apperr.ServiceUnavailable, "cannot read the upload now; try again shortly")
	}
	defer out.Body.Close()
	max := s.maxBytes()
	if out.ContentLength != nil && *out.ContentLength > max {
		return nil, apperr.New(apperr.RequestTooLarge, "the upload is %d bytes; audio may be at most %d bytes (%d MiB)", *out.ContentLength, max, max>>20)
	}
	b, err := io.ReadAll(io.LimitReader(out.Body, max+1))
	if err != nil {
		return nil, apperr.Wrap(err, apperr.ServiceUnavailable, "reading the upload failed; try again shortly")
	}
	if int64(len(b)) > max {
		return nil, apperr.New(apperr.RequestTooLarge, "the upload is over %d bytes (%d MiB), the most audio may be", max, max>>20)
	}
	if len(b) == 0 {
		return nil, apperr.New(apperr.InvalidRequest, "the upload %q is empty: PUT the audio file to its url first", id)
	}
	return b, nil
}

// Delete removes userID's upload id (after use). Failures are logged only:
// the lifecycle rule removes it within a day anyway.
func (s *Store) Delete(ctx context.Context, userID, id string) {
	if checkID(id) != nil || s.Bucket == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := s.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(objectKey(userID, id))}); err != nil {
		s.log(ctx).Warn("deleting a used audio upload failed; it expires within a day", "upload_id", id, "err", err.Error())
	}
}

// Register adds POST /v1/audio/uploads to mux.
func (s *Store) Register(mux httpx.Router) {
	mux.HandleFunc("POST /v1/audio/uploads", s.handleCreate)
}

func (s *Store) handleCreate(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok || p.UserID == "" {
		httpx.WriteError(w, r, apperr.New(apperr.Unauthorized, "missing credentials"))
		return
	}
	// No body is needed; one that is sent must be empty or a JSON object.
	if r.ContentLength != 0 {
		var body struct{}
		if err := httpx.DecodeJSON(w, r, 4<<10, &body); err != nil && !errors.Is(err, io.EOF) {
			httpx.WriteError(w, r, err)
			return
		}
	}
	u, err := s.NewUpload(r.Context(), p.UserID)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	s.log(r.Context()).Info("audio upload created", "user_id", p.UserID, "upload_id", u.UploadID)
	httpx.WriteJSON(w, http.StatusCreated, u)
}
