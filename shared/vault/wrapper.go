package vault

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/synthstack/byok/shared/apperr"
)

// Wrapper wraps and unwraps data keys under one wrapping key. Errors are
// *apperr.Error values: ErrDecrypt (code Internal) when a wrapped key is
// rejected, ServiceUnavailable when the key service cannot be reached.
type Wrapper interface {
	// ID is the stable id of the wrapping key, stored in every blob:
	// "local:<16 hex of sha256(key)>" or "kms:<key id as configured>".
	ID() string
	// GenerateDataKey returns a fresh 256-bit data key and its wrapped form.
	GenerateDataKey(ctx context.Context, ec Context) (plain, wrapped []byte, err error)
	// Wrap wraps an existing data key (used by Rewrap).
	Wrap(ctx context.Context, dk []byte, ec Context) ([]byte, error)
	// Unwrap returns the data key; ec must be the one it was wrapped with.
	Unwrap(ctx context.Context, wrapped []byte, ec Context) ([]byte, error)
}

// ---------------------------------------------------------------- local

// LocalWrapper wraps data keys with AES-256-GCM under a 32-byte key
// (ENCRYPTION_KEY). Wrapped form: 12-byte nonce || ciphertext || tag, with
// AAD = ("byok-dk", version, user_id, provider, key_id).
type LocalWrapper struct {
	id   string
	aead cipher.AEAD
}

const localWrappedLen = nonceLen + dataKeyLen + tagLen

// keyFormatHint is appended to every malformed-key message.
const keyFormatHint = "64 hex characters (32 bytes), e.g. generate one with `openssl rand -hex 32`"

// parseHexKey checks a 64-hex-character key. Its error never contains any
// character of s.
func parseHexKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("is empty; want " + keyFormatHint)
	}
	if len(s) != 2*dataKeyLen {
		return nil, errors.New("has " + strconv.Itoa(len(s)) + " characters; want " + keyFormatHint)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return nil, errors.New("contains a character that is not hexadecimal; want " + keyFormatHint)
		}
	}
	k, err := hex.DecodeString(s)
	if err != nil { // unreachable after the checks above; never echo err
		return nil, errors.New("is not valid hex; want " + keyFormatHint)
	}
	return k, nil
}

// NewLocalWrapper returns a wrapper for a key of 64 hex characters. The
// error names the problem, never the key.
func NewLocalWrapper(hexKey string) (*LocalWrapper, error) {
	k, err := parseHexKey(hexKey)
	if err != nil {
		return nil, fmt.Errorf("vault: encryption key %w", err)
	}
	return newLocalWrapper(k), nil
}

func newLocalWrapper(k []byte) *LocalWrapper {
	defer clear(k)
	sum := sha256.Sum256(k)
	return &LocalWrapper{id: "local:" + hex.EncodeToString(sum[:8]), aead: newGCM(k)}
}

func newGCM(k []byte) cipher.AEAD {
	b, err := aes.NewCipher(k)
	if err != nil {
		panic("vault: " + err.Error()) // only for a wrong key length: a bug
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic("vault: " + err.Error())
	}
	return g
}

func (w *LocalWrapper) ID() string { return w.id }

func (w *LocalWrapper) GenerateDataKey(ctx context.Context, ec Context) (plain, wrapped []byte, err error) {
	dk := make([]byte, dataKeyLen)
	rand.Read(dk)
	wrapped, err = w.Wrap(ctx, dk, ec)
	if err != nil {
		clear(dk)
		return nil, nil, err
	}
	return dk, wrapped, nil
}

func (w *LocalWrapper) Wrap(_ context.Context, dk []byte, ec Context) ([]byte, error) {
	if len(dk) != dataKeyLen {
		return nil, apperr.New(apperr.Internal, "vault: data key must be %d bytes", dataKeyLen)
	}
	out := make([]byte, nonceLen, localWrappedLen)
	rand.Read(out)
	aad := appendAAD(make([]byte, 0, aadLen(dataKeyLabel, ec)), dataKeyLabel, ec)
	return w.aead.Seal(out, out[:nonceLen], dk, aad), nil
}

func (w *LocalWrapper) Unwrap(_ context.Context, wrapped []byte, ec Context) ([]byte, error) {
	if len(wrapped) != localWrappedLen {
		return nil, decryptErr("malformed locally wrapped data key", nil)
	}
	aad := appendAAD(make([]byte, 0, aadLen(dataKeyLabel, ec)), dataKeyLabel, ec)
	dk, err := w.aead.Open(nil, wrapped[:nonceLen], wrapped[nonceLen:], aad)
	if err != nil {
		return nil, decryptErr("data key authentication failed", nil)
	}
	return dk, nil
}

// ---------------------------------------------------------------- KMS

// KMSAPI is the subset of *kms.Client the vault uses.
type KMSAPI interface {
	GenerateDataKey(ctx context.Context, params *kms.GenerateDataKeyInput, optFns ...func(*kms.Options)) (*kms.GenerateDataKeyOutput, error)
	Encrypt(ctx context.Context, params *kms.EncryptInput, optFns ...func(*kms.Options)) (*kms.EncryptOutput, error)
	Decrypt(ctx context.Context, params *kms.DecryptInput, optFns ...func(*kms.Options)) (*kms.DecryptOutput, error)
}

// KMSWrapper wraps data keys with AWS KMS, binding each to its row through
// the EncryptionContext {user_id, provider, key_id, v}.
type KMSWrapper struct {
	client KMSAPI
	keyID  string
}

// NewKMSWrapper returns a wrapper for keyID (key id, ARN or alias).
func NewKMSWrapper(client KMSAPI, keyID string) *KMSWrapper {
	return &KMSWrapper{client: client, keyID: keyID}
}

func (w *KMSWrapper) ID() string { return "kms:" + w.keyID }

// encryptionContext is {user_id, provider, key_id, v} for a user's key (as
// before scopes existed, so old rows unwrap) and {scope, org, project?,
// provider, key_id, v} for org and project keys; plus endpoint when set.
func encryptionContext(ec Context) map[string]string {
	m := map[string]string{
		"provider": ec.Provider,
		"key_id":   ec.KeyID,
		"v":        strconv.Itoa(int(formatV1)),
	}
	switch ec.Scope {
	case "", ScopeUser:
		m["user_id"] = ec.UserID
	case ScopeOrg:
		m["scope"], m["org"] = ec.Scope, ec.Org
	default:
		m["scope"], m["org"], m["project"] = ec.Scope, ec.Org, ec.Project
	}
	if ec.Endpoint != "" {
		m["endpoint"] = ec.Endpoint
	}
	return m
}

func (w *KMSWrapper) GenerateDataKey(ctx context.Context, ec Context) (plain, wrapped []byte, err error) {
	out, err := w.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String(w.keyID),
		KeySpec:           types.DataKeySpecAes256,
		EncryptionContext: encryptionContext(ec),
	})
	if err != nil {
		return nil, nil, kmsErr(err)
	}
	if len(out.Plaintext) != dataKeyLen || len(out.CiphertextBlob) == 0 {
		clear(out.Plaintext)
		return nil, nil, apperr.New(apperr.ServiceUnavailable, "key encryption service unavailable")
	}
	return out.Plaintext, out.CiphertextBlob, nil
}

func (w *KMSWrapper) Wrap(ctx context.Context, dk []byte, ec Context) ([]byte, error) {
	if len(dk) != dataKeyLen {
		return nil, apperr.New(apperr.Internal, "vault: data key must be %d bytes", dataKeyLen)
	}
	out, err := w.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(w.keyID),
		Plaintext:         dk,
		EncryptionContext: encryptionContext(ec),
	})
	if err != nil {
		return nil, kmsErr(err)
	}
	if len(out.CiphertextBlob) == 0 {
		return nil, apperr.New(apperr.ServiceUnavailable, "key encryption service unavailable")
	}
	return out.CiphertextBlob, nil
}

func (w *KMSWrapper) Unwrap(ctx context.Context, wrapped []byte, ec Context) ([]byte, error) {
	out, err := w.client.Decrypt(ctx, &kms.DecryptInput{
		CiphertextBlob:    wrapped,
		KeyId:             aws.String(w.keyID),
		EncryptionContext: encryptionContext(ec),
	})
	if err != nil {
		return nil, kmsErr(err)
	}
	if len(out.Plaintext) != dataKeyLen {
		clear(out.Plaintext)
		return nil, decryptErr("KMS returned a data key of the wrong size", nil)
	}
	return out.Plaintext, nil
}

// kmsErr classifies a KMS error: a rejected ciphertext (tampered, wrong
// EncryptionContext, wrong key) is ErrDecrypt; anything else (transport,
// throttling, disabled key, access denied, cancelled context) is
// ServiceUnavailable. The cause is kept for logs; KMS error texts carry no
// key material.
func kmsErr(err error) error {
	var ic *types.InvalidCiphertextException
	var ik *types.IncorrectKeyException
	if errors.As(err, &ic) || errors.As(err, &ik) {
		return decryptErr("KMS rejected the wrapped data key", err)
	}
	return apperr.Wrap(err, apperr.ServiceUnavailable, "key encryption service unavailable")
}
