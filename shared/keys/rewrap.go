package keys

import (
	"context"
	"errors"
	"log/slog"

	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

// RewrapStore is the storage a rewrap pass needs.
type RewrapStore interface {
	ScanKeys(ctx context.Context, segment, total int32, fn func(store.KeyRecord) error) error
	ReplaceCiphertext(ctx context.Context, userID, provider string, oldCiphertext, newCiphertext []byte, wrapperID string) error
}

// Rewrapper re-wraps envelopes under the current wrapping key.
type Rewrapper interface {
	NeedsRewrap(blob []byte) bool
	Rewrap(ctx context.Context, ec vault.Context, blob []byte) ([]byte, error)
	WrapperID(blob []byte) (string, error)
}

// RewrapSummary counts one rewrap pass.
type RewrapSummary struct {
	Scanned   int `json:"scanned"`
	Rewrapped int `json:"rewrapped"`
	Current   int `json:"already_current"`
	Conflicts int `json:"conflicts"`
	Errors    int `json:"errors"`
}

// RewrapAll moves every stored key's data key to the current wrapping key.
// The key ciphertext itself is unchanged and each row is swapped with a
// conditional write, so requests keep working throughout (old wrapping keys
// stay configured as previous keys until the pass is done) and a key saved
// or deleted meanwhile is never overwritten. Failing rows are counted and
// logged (without key material); the pass goes on.
func RewrapAll(ctx context.Context, st RewrapStore, rw Rewrapper, log *slog.Logger) (RewrapSummary, error) {
	var sum RewrapSummary
	err := st.ScanKeys(ctx, 0, 1, func(k store.KeyRecord) error {
		sum.Scanned++
		if !rw.NeedsRewrap(k.Ciphertext) {
			sum.Current++
			return nil
		}
		ec := vault.Context{UserID: k.UserID, Provider: k.Provider, KeyID: k.KeyID}
		blob, err := rw.Rewrap(ctx, ec, k.Ciphertext)
		if err != nil {
			sum.Errors++
			log.Error("rewrap failed", "user_id", k.UserID, "provider", k.Provider, "hint", k.Hint, "err", err.Error())
			return nil
		}
		id, err := rw.WrapperID(blob)
		if err != nil {
			sum.Errors++
			return nil
		}
		switch err := st.ReplaceCiphertext(ctx, k.UserID, k.Provider, k.Ciphertext, blob, id); {
		case errors.Is(err, store.ErrConflict):
			sum.Conflicts++
		case err != nil:
			sum.Errors++
			log.Error("rewrap write failed", "user_id", k.UserID, "provider", k.Provider, "err", err.Error())
		default:
			sum.Rewrapped++
		}
		return nil
	})
	return sum, err
}
