// Package vault seals stored provider API keys with envelope encryption
// (docs/api.md §6): a fresh 256-bit data key per Seal, the key sealed with
// AES-256-GCM bound to its row (user_id, provider, key_id, format version),
// the data key wrapped by KMS or by a local AES-256-GCM key.
//
// A Vault is immutable after New and safe for concurrent use. Its optional
// cache holds unwrapped data keys (as ready AES-GCM instances), never API
// key plaintext.
package vault

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/synthstack/byok/shared/apperr"
)

// Context binds a ciphertext to its DynamoDB row: the key's scope and owner,
// its provider and key id (the format version is added by the vault).
//
// Scope "" or "user" is a person's own key, owned by UserID; its AAD keeps the
// original five-field layout, so every row sealed before scopes existed still
// opens. Scope "org" is owned by Org, "project" by Org and Project; their AAD
// carries the scope as an extra field, so no user, org or project row can
// ever share another's AAD (the fields are length-prefixed and their number
// differs).
//
// Endpoint, when set (Azure OpenAI keys), is the host the key is sent to: it
// is bound too, so whoever can edit a row cannot redirect its key to another
// host (docs/providers.md, Azure endpoints). Rows without one keep their AAD.
type Context struct {
	UserID, Provider, KeyID string
	Scope, Org, Project     string
	Endpoint                string
}

// Key scopes (docs/teams.md).
const (
	ScopeUser    = "user"
	ScopeOrg     = "org"
	ScopeProject = "project"
)

// complete reports whether ec names a whole row.
func (ec Context) complete() bool {
	if ec.Provider == "" || ec.KeyID == "" {
		return false
	}
	switch ec.Scope {
	case "", ScopeUser:
		return ec.UserID != ""
	case ScopeOrg:
		return ec.Org != "" && ec.UserID == "" && ec.Project == ""
	case ScopeProject:
		return ec.Org != "" && ec.Project != "" && ec.UserID == ""
	}
	return false
}

// ErrDecrypt is the cause (errors.Is) of every failure to open a blob that
// is malformed, tampered with, moved to another row, or sealed by an unknown
// wrapping key. It comes wrapped in an *apperr.Error with code Internal.
var ErrDecrypt = errors.New("vault: decryption failed")

const decryptMsg = "stored key could not be decrypted"

func decryptErr(reason string, cause error) error {
	err := fmt.Errorf("%w: %s", ErrDecrypt, reason)
	if cause != nil {
		err = fmt.Errorf("%w: %s: %w", ErrDecrypt, reason, cause)
	}
	return &apperr.Error{Code: apperr.Internal, Message: decryptMsg, Err: err}
}

// DisabledMessage is the client-facing message of a Disabled vault.
const DisabledMessage = "key storage is not configured: set KMS_KEY_ID or ENCRYPTION_KEY (64 hex characters)"

// Vault seals and opens API keys.
type Vault struct {
	current  Wrapper
	wrappers map[string]Wrapper // current and previous, by ID
	cache    *lru.Cache[[32]byte, cacheEntry]
	maxAge   time.Duration
	disabled error
}

type cacheEntry struct {
	aead    cipher.AEAD // AES-256-GCM keyed with the unwrapped data key
	expires time.Time
}

// Option configures a Vault.
type Option func(*Vault)

// WithCache enables an LRU cache of at most size unwrapped data keys, each
// kept at most maxAge. size <= 0 or maxAge <= 0 disables the cache.
func WithCache(size int, maxAge time.Duration) Option {
	return func(v *Vault) {
		if size <= 0 || maxAge <= 0 {
			v.cache, v.maxAge = nil, 0
			return
		}
		c, err := lru.New[[32]byte, cacheEntry](size)
		if err != nil { // only for size <= 0
			return
		}
		v.cache, v.maxAge = c, maxAge
	}
}

// New returns a Vault that seals with current and opens blobs wrapped by
// current or any of previous. A nil current gives a Disabled vault.
func New(current Wrapper, previous []Wrapper, opts ...Option) *Vault {
	if current == nil {
		return Disabled(errors.New("vault: no current wrapping key"))
	}
	v := &Vault{current: current, wrappers: map[string]Wrapper{}}
	for _, w := range previous {
		if w != nil {
			v.wrappers[w.ID()] = w
		}
	}
	v.wrappers[current.ID()] = current
	for _, o := range opts {
		o(v)
	}
	return v
}

// Disabled returns a Vault whose Seal, Open and Rewrap always fail with
// code ServiceUnavailable and DisabledMessage; reason is kept for logs.
func Disabled(reason error) *Vault {
	if reason == nil {
		reason = errors.New("vault: disabled")
	}
	return &Vault{disabled: reason}
}

func (v *Vault) disabledErr() error {
	return &apperr.Error{Code: apperr.ServiceUnavailable, Message: DisabledMessage, Err: v.disabled}
}

// Err returns why the vault is disabled, or nil when it is configured.
func (v *Vault) Err() error { return v.disabled }

// CurrentID returns the id of the wrapping key new blobs are sealed with
// ("" for a disabled vault).
func (v *Vault) CurrentID() string {
	if v.disabled != nil {
		return ""
	}
	return v.current.ID()
}

// Seal encrypts plaintext for the row ec under a fresh data key.
func (v *Vault) Seal(ctx context.Context, ec Context, plaintext []byte) ([]byte, error) {
	if v.disabled != nil {
		return nil, v.disabledErr()
	}
	if !ec.complete() {
		return nil, apperr.New(apperr.Internal, "vault: seal needs a scope with its owner, provider and key_id")
	}
	if len(plaintext) > MaxPlaintext {
		return nil, apperr.New(apperr.InvalidRequest, "key is too long (at most %d bytes)", MaxPlaintext)
	}
	id := v.current.ID()
	if len(id) == 0 || len(id) > maxIDLen {
		return nil, apperr.New(apperr.Internal, "vault: wrapping key id must be 1..%d bytes", maxIDLen)
	}
	dk, wrapped, err := v.current.GenerateDataKey(ctx, ec)
	if err != nil {
		return nil, asAppErr(err)
	}
	defer clear(dk)
	if len(dk) != dataKeyLen || len(wrapped) == 0 || len(wrapped) > maxWrappedLen {
		return nil, apperr.New(apperr.Internal, "vault: wrapper returned a malformed data key")
	}
	aead := newGCM(dk)
	aad, _ := payloadAAD(ec, id, wrapped, false)

	out := make([]byte, 0, blobSize(id, wrapped, len(plaintext)))
	out = append(out, formatV1)
	out = appendField(out, id)
	out = appendField(out, wrapped)
	var nonce [nonceLen]byte
	rand.Read(nonce[:])
	out = appendField(out, nonce[:])
	out = binary.BigEndian.AppendUint16(out, uint16(len(plaintext)+tagLen))
	return aead.Seal(out, nonce[:], plaintext, aad), nil
}

// Open decrypts a blob sealed for the row ec. Any tampering, another row's
// context or an unknown wrapping key gives ErrDecrypt.
func (v *Vault) Open(ctx context.Context, ec Context, blob []byte) ([]byte, error) {
	if v.disabled != nil {
		return nil, v.disabledErr()
	}
	p, ok := parseBlob(blob)
	if !ok {
		return nil, decryptErr("malformed blob", nil)
	}
	aad, ck := payloadAAD(ec, string(p.id), p.wrapped, v.cache != nil)
	if v.cache != nil {
		if e, ok := v.cache.Get(ck); ok {
			if time.Now().Before(e.expires) {
				pt, err := e.aead.Open(nil, p.nonce, p.ct, aad)
				if err != nil {
					return nil, decryptErr("payload authentication failed", nil)
				}
				return pt, nil
			}
			v.cache.Remove(ck)
		}
	}
	aead, err := v.unwrap(ctx, p, ec)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, p.nonce, p.ct, aad)
	if err != nil {
		return nil, decryptErr("payload authentication failed", nil)
	}
	if v.cache != nil {
		v.cache.Add(ck, cacheEntry{aead: aead, expires: time.Now().Add(v.maxAge)})
	}
	return pt, nil
}

// unwrap returns an AES-GCM instance keyed with the blob's data key.
func (v *Vault) unwrap(ctx context.Context, p parsedBlob, ec Context) (cipher.AEAD, error) {
	dk, err := v.unwrapKey(ctx, p, ec)
	if err != nil {
		return nil, err
	}
	defer clear(dk)
	return newGCM(dk), nil
}

func (v *Vault) unwrapKey(ctx context.Context, p parsedBlob, ec Context) ([]byte, error) {
	w, ok := v.wrappers[string(p.id)]
	if !ok {
		return nil, decryptErr(fmt.Sprintf("blob was sealed by wrapping key %q, which is not configured", p.id), nil)
	}
	dk, err := w.Unwrap(ctx, p.wrapped, ec)
	if err != nil {
		return nil, asAppErr(err)
	}
	if len(dk) != dataKeyLen {
		clear(dk)
		return nil, decryptErr("unwrapped data key has the wrong size", nil)
	}
	return dk, nil
}

// WrapperID returns the id of the wrapping key that sealed blob.
func (v *Vault) WrapperID(blob []byte) (string, error) {
	p, ok := parseBlob(blob)
	if !ok {
		return "", decryptErr("malformed blob", nil)
	}
	return string(p.id), nil
}

// NeedsRewrap reports whether blob is not wrapped by the current wrapping
// key (a malformed blob also reports true, so Rewrap surfaces its error).
// A disabled vault reports false.
func (v *Vault) NeedsRewrap(blob []byte) bool {
	if v.disabled != nil {
		return false
	}
	p, ok := parseBlob(blob)
	return !ok || string(p.id) != v.current.ID()
}

// Rewrap returns blob with its data key re-wrapped under the current
// wrapping key; the nonce and ciphertext are unchanged. The payload is
// authenticated against ec first, so a blob that would not open is never
// rewrapped. A blob already wrapped by the current key is returned as a copy
// without any KMS call.
func (v *Vault) Rewrap(ctx context.Context, ec Context, blob []byte) ([]byte, error) {
	if v.disabled != nil {
		return nil, v.disabledErr()
	}
	p, ok := parseBlob(blob)
	if !ok {
		return nil, decryptErr("malformed blob", nil)
	}
	id := v.current.ID()
	if string(p.id) == id {
		return bytes.Clone(blob), nil
	}
	dk, err := v.unwrapKey(ctx, p, ec)
	if err != nil {
		return nil, err
	}
	defer clear(dk)
	aad, _ := payloadAAD(ec, "", nil, false)
	pt, err := newGCM(dk).Open(nil, p.nonce, p.ct, aad)
	if err != nil {
		return nil, decryptErr("payload authentication failed", nil)
	}
	clear(pt)
	wrapped, err := v.current.Wrap(ctx, dk, ec)
	if err != nil {
		return nil, asAppErr(err)
	}
	if len(wrapped) == 0 || len(wrapped) > maxWrappedLen || len(id) == 0 || len(id) > maxIDLen {
		return nil, apperr.New(apperr.Internal, "vault: wrapper returned a malformed data key")
	}
	out := make([]byte, 0, blobSize(id, wrapped, len(p.ct)-tagLen))
	out = append(out, formatV1)
	out = appendField(out, id)
	out = appendField(out, wrapped)
	out = appendField(out, p.nonce)
	out = appendField(out, p.ct)
	return out, nil
}

// asAppErr passes *apperr.Error through and treats any other wrapper error
// as the key service being unavailable.
func asAppErr(err error) error {
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return err
	}
	return apperr.Wrap(err, apperr.ServiceUnavailable, "key encryption service unavailable")
}
