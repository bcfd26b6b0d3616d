package vault

import (
	"crypto/sha256"
	"encoding/binary"
)

// Blob format, version 1 (all lengths are big-endian uint16):
//
//	byte 0      format version (1)
//	u16 + bytes wrapper id        (1..255 bytes, e.g. "local:0123456789abcdef" or "kms:alias/byok")
//	u16 + bytes wrapped data key  (1..maxWrappedLen bytes; opaque to the vault)
//	u16 + bytes nonce             (exactly 12 bytes)
//	u16 + bytes AES-256-GCM ciphertext || 16-byte tag
//
// Nothing may follow the last field. The payload AAD is aadFields("byok",
// version, user_id, provider, key_id) for a user's key, with the scope and
// its owner in place of user_id for org and project keys, see appendAAD.
const (
	formatV1      byte = 1
	dataKeyLen         = 32
	nonceLen           = 12
	tagLen             = 16
	maxIDLen           = 255
	maxWrappedLen      = 4096
	// MaxPlaintext is the largest value Seal accepts.
	MaxPlaintext = 1<<16 - 1 - tagLen
)

type parsedBlob struct {
	id, wrapped, nonce, ct []byte
}

// parseBlob splits a blob into its fields. It never allocates: the fields
// alias blob. It reports false for anything that is not a well-formed v1 blob.
func parseBlob(b []byte) (parsedBlob, bool) {
	var p parsedBlob
	if len(b) < 1 || b[0] != formatV1 {
		return p, false
	}
	rest := b[1:]
	var f [4][]byte
	for i := range f {
		if len(rest) < 2 {
			return p, false
		}
		n := int(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		if n > len(rest) {
			return p, false
		}
		f[i] = rest[:n:n]
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return p, false
	}
	p = parsedBlob{id: f[0], wrapped: f[1], nonce: f[2], ct: f[3]}
	if len(p.id) == 0 || len(p.id) > maxIDLen ||
		len(p.wrapped) == 0 || len(p.wrapped) > maxWrappedLen ||
		len(p.nonce) != nonceLen || len(p.ct) < tagLen {
		return parsedBlob{}, false
	}
	return p, true
}

func blobSize(id string, wrapped []byte, ptLen int) int {
	return 1 + 2 + len(id) + 2 + len(wrapped) + 2 + nonceLen + 2 + ptLen + tagLen
}

func appendField[T string | []byte](dst []byte, v T) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
	return append(dst, v...)
}

// appendAADField appends one unambiguous (u32 length, bytes) field.
func appendAADField(dst []byte, v string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...)
}

const versionField = string(rune(formatV1))

// endpointTag prefixes the endpoint's AAD field, so it can never read as
// another layout's key id (key ids are UUIDs).
const endpointTag = "endpoint="

func aadLen(label string, ec Context) int {
	n := 4*4 + len(label) + len(versionField) + len(ec.Provider) + len(ec.KeyID)
	if ec.Endpoint != "" {
		n += 4 + len(endpointTag) + len(ec.Endpoint)
	}
	switch ec.Scope {
	case "", ScopeUser:
		return n + 4 + len(ec.UserID)
	case ScopeOrg:
		return n + 8 + len(ec.Scope) + len(ec.Org)
	default:
		return n + 12 + len(ec.Scope) + len(ec.Org) + len(ec.Project)
	}
}

// appendAAD appends the length-prefixed encoding of (label, format version,
// user_id, provider, key_id) for a user's key, (label, version, "org", org,
// provider, key_id) for an org key and (label, version, "project", org,
// project, provider, key_id) for a project key. A scope the vault does not
// know is encoded with its name too, so it can never open a user's row. An
// endpoint, when set, follows as one more field ("endpoint=" + endpoint).
func appendAAD(dst []byte, label string, ec Context) []byte {
	dst = appendAADField(dst, label)
	dst = appendAADField(dst, versionField)
	switch ec.Scope {
	case "", ScopeUser:
		dst = appendAADField(dst, ec.UserID)
	case ScopeOrg:
		dst = appendAADField(dst, ec.Scope)
		dst = appendAADField(dst, ec.Org)
	default:
		dst = appendAADField(dst, ec.Scope)
		dst = appendAADField(dst, ec.Org)
		dst = appendAADField(dst, ec.Project)
	}
	dst = appendAADField(dst, ec.Provider)
	dst = appendAADField(dst, ec.KeyID)
	if ec.Endpoint != "" {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(endpointTag)+len(ec.Endpoint)))
		dst = append(append(dst, endpointTag...), ec.Endpoint...)
	}
	return dst
}

const (
	payloadLabel = "byok"
	dataKeyLabel = "byok-dk" // AAD of locally wrapped data keys
)

// payloadAAD returns the payload AAD and, in the same allocation, the cache
// key sha256(len||wrapper id || len||wrapped dk || payload AAD).
func payloadAAD(ec Context, id string, wrapped []byte, withCacheKey bool) (aad []byte, cacheKey [32]byte) {
	n := aadLen(payloadLabel, ec)
	if !withCacheKey {
		return appendAAD(make([]byte, 0, n), payloadLabel, ec), cacheKey
	}
	buf := make([]byte, 0, 4+len(id)+4+len(wrapped)+n)
	buf = appendAADField(buf, id)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(wrapped)))
	buf = append(buf, wrapped...)
	start := len(buf)
	buf = appendAAD(buf, payloadLabel, ec)
	return buf[start:], sha256.Sum256(buf)
}
