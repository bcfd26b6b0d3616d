// Package keys is the key vault's application service: saving, listing,
// testing and deleting a user's provider keys (docs/api.md §7), and the HTTP
// handlers of the keys and validate functions.
package keys

import (
	"context"
	"log/slog"
	"time"

	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/provider/azure"
	"github.com/synthstack/byok/shared/provider/schema"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

// Store is the storage the service needs.
type Store interface {
	GetUser(ctx context.Context, userID string) (store.User, error)
	UpdateKeyStatus(ctx context.Context, u store.StatusUpdate) (prevStatus, prevReason string, err error)
	GetSettings(ctx context.Context, defaultMode routing.Mode) (routing.Settings, int64, error)
}

// Sealer seals and opens key plaintexts bound to their row.
type Sealer interface {
	Seal(ctx context.Context, ec vault.Context, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, ec vault.Context, blob []byte) ([]byte, error)
	WrapperID(blob []byte) (string, error)
}

// Validator checks a key live with its provider (provider.Validator); cred
// carries Azure's endpoint, api_version and deployments (Credential).
type Validator interface {
	ValidateCredential(ctx context.Context, p provider.Name, cred schema.Credential) provider.Result
}

// SetStore is the storage of several keys per provider and scope (what
// *store.Store offers beyond Store). When Service.Sets is nil, Store is used
// if it implements SetStore.
type SetStore interface {
	GetOrg(ctx context.Context, org, project string) (store.Org, error)
	GetKeySet(ctx context.Context, owner store.Owner) (store.KeySet, error)
	AddKey(ctx context.Context, k store.KeyRecord, version int64) error
	ReplaceKeys(ctx context.Context, k store.KeyRecord, old []store.KeyRecord) error
	PatchKey(ctx context.Context, k store.KeyRecord, p store.KeyPatch, now time.Time) (store.KeyRecord, error)
	DeleteKeys(ctx context.Context, ks []store.KeyRecord) error
	PutOrgSettings(ctx context.Context, org string, p store.OrgSettingsPatch, now time.Time) (store.OrgSettings, error)
}

// Service implements the key lifecycle.
type Service struct {
	Store     Store
	Sets      SetStore
	Sealer    Sealer
	Validator Validator
	// AzureGuard checks Azure endpoints on save (nil: the default suffixes).
	AzureGuard  *azure.Guard
	Events      events.Publisher
	DefaultMode routing.Mode
	Now         func() time.Time
	Log         *slog.Logger
}

// RoutingView is the routing banner of GET /v1/keys.
type RoutingView struct {
	Mode         routing.Mode `json:"mode"`
	BYOKEnabled  bool         `json:"byok_enabled"`
	BYOKEligible bool         `json:"byok_eligible"`
	Banner       string       `json:"banner"`
	BannerText   string       `json:"banner_text"`
	Tier         routing.Tier `json:"tier"`
}

// List is the body of GET /v1/keys.
type List struct {
	Keys    []View      `json:"keys"`
	Routing RoutingView `json:"routing"`
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func tierOf(a *store.Account) routing.Tier {
	if a == nil || !routing.Tier(a.Tier).Valid() {
		return routing.Free
	}
	return routing.Tier(a.Tier)
}
