package vault

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Default cache of FromEnv; opts passed to FromEnv override it.
const (
	DefaultCacheSize   = 1024
	DefaultCacheMaxAge = 5 * time.Minute
)

// FromEnv builds the Vault from the environment (docs/api.md §6):
//
//   - KMS_KEY_ID set: KMS (through kms, which must then be non-nil) is the
//     current wrapping key; ENCRYPTION_KEY, if also set, and
//     ENCRYPTION_KEY_PREVIOUS stay usable for decryption (local→KMS migration).
//   - otherwise ENCRYPTION_KEY (64 hex characters) is the current key.
//   - ENCRYPTION_KEY_PREVIOUS: comma-separated old local keys, decryption only.
//
// A missing or malformed variable is an error naming the variable and the
// expected form, never its value; callers should then serve Disabled(err).
// The vault gets a data-key cache of DefaultCacheSize / DefaultCacheMaxAge
// unless opts say otherwise.
func FromEnv(getenv func(string) string, kms KMSAPI, opts ...Option) (*Vault, error) {
	kmsKeyID := strings.TrimSpace(getenv("KMS_KEY_ID"))
	localKey := strings.TrimSpace(getenv("ENCRYPTION_KEY"))

	var current Wrapper
	var previous []Wrapper
	switch {
	case kmsKeyID != "":
		if kms == nil {
			return nil, errors.New("vault: KMS_KEY_ID is set but no KMS client was provided")
		}
		current = NewKMSWrapper(kms, kmsKeyID)
		if localKey != "" {
			k, err := parseHexKey(localKey)
			if err != nil {
				return nil, fmt.Errorf("vault: ENCRYPTION_KEY %w", err)
			}
			previous = append(previous, newLocalWrapper(k))
		}
	case localKey != "":
		k, err := parseHexKey(localKey)
		if err != nil {
			return nil, fmt.Errorf("vault: ENCRYPTION_KEY %w", err)
		}
		current = newLocalWrapper(k)
	default:
		return nil, errors.New("vault: no key storage configured: neither KMS_KEY_ID nor ENCRYPTION_KEY is set; " +
			"set KMS_KEY_ID to a KMS key id/ARN/alias, or ENCRYPTION_KEY to " + keyFormatHint)
	}

	if prev := getenv("ENCRYPTION_KEY_PREVIOUS"); strings.TrimSpace(prev) != "" {
		for i, s := range strings.Split(prev, ",") {
			if strings.TrimSpace(s) == "" {
				continue
			}
			k, err := parseHexKey(s)
			if err != nil {
				return nil, fmt.Errorf("vault: ENCRYPTION_KEY_PREVIOUS entry %d (comma-separated) %w", i+1, err)
			}
			previous = append(previous, newLocalWrapper(k))
		}
	}
	all := append([]Option{WithCache(DefaultCacheSize, DefaultCacheMaxAge)}, opts...)
	return New(current, previous, all...), nil
}
