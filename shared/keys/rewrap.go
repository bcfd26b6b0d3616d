package keys

import (
	"context"
	"errors"
	"log/slog"

	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

// RewrapStore is the storage a rewrap pass needs.
type RewrapStore interface {
	ScanKeys(ctx context.Context, segment, total int32, fn func(store.KeyRecord) error) error
	ReplaceCiphertext(ctx context.Context, k store.KeyRecord, newCiphertext []byte, wrapperID string) error
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

// RewrapAll moves every stored key's data key (every key of every scope:
// users', orgs' and projects') to the current wrapping key.
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
		blob, err := rw.Rewrap(ctx, VaultContext(k), k.Ciphertext)
		if err != nil {
			sum.Errors++
			log.Error("rewrap failed", ownerAttrs(k, "provider", k.Provider, "hint", k.Hint, "err", err.Error())...)
			return nil
		}
		id, err := rw.WrapperID(blob)
		if err != nil {
			sum.Errors++
			return nil
		}
		switch err := st.ReplaceCiphertext(ctx, k, blob, id); {
		case errors.Is(err, store.ErrConflict):
			sum.Conflicts++
		case err != nil:
			sum.Errors++
			log.Error("rewrap write failed", ownerAttrs(k, "provider", k.Provider, "err", err.Error())...)
		default:
			sum.Rewrapped++
		}
		return nil
	})
	return sum, err
}

// VaultContext is the row binding k's ciphertext is sealed with: its scope,
// owner, provider and key id.
// An Azure key's endpoint is bound too: a row whose endpoint was edited
// opens nothing, so its key cannot be sent to another host.
func VaultContext(k store.KeyRecord) vault.Context {
	var ec vault.Context
	switch k.Scope() {
	case store.ScopeOrg:
		ec = vault.Context{Scope: vault.ScopeOrg, Org: k.Org, Provider: k.Provider, KeyID: k.KeyID}
	case store.ScopeProject:
		ec = vault.Context{Scope: vault.ScopeProject, Org: k.Org, Project: k.Project, Provider: k.Provider, KeyID: k.KeyID}
	default:
		ec = vault.Context{UserID: k.UserID, Provider: k.Provider, KeyID: k.KeyID}
	}
	if k.Provider == string(provider.AzureOpenAI) {
		// Always set for Azure (even empty), so a row that lost its
		// endpoint does not fall back to the endpoint-free layout.
		ec.Endpoint = "azure:" + k.Endpoint
	}
	return ec
}

// ownerAttrs prefixes log attributes with who holds k (ids only).
func ownerAttrs(k store.KeyRecord, rest ...any) []any {
	out := []any{"scope", k.Scope()}
	switch k.Scope() {
	case store.ScopeOrg:
		out = append(out, "org", k.Org)
	case store.ScopeProject:
		out = append(out, "org", k.Org, "project", k.Project)
	default:
		out = append(out, "user_id", k.UserID)
	}
	return append(out, rest...)
}
