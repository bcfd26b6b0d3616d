// Package keys is the key vault's application service: saving, listing,
// testing and deleting a user's provider keys (SPEC §7), and the HTTP
// handlers of the keys and validate functions.
package keys

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

// Store is the storage the service needs.
type Store interface {
	GetUser(ctx context.Context, userID string) (store.User, error)
	PutKey(ctx context.Context, k store.KeyRecord) (*store.KeyRecord, error)
	UpdateKeyStatus(ctx context.Context, u store.StatusUpdate) (prevStatus, prevReason string, err error)
	DeleteKey(ctx context.Context, userID, provider string) (*store.KeyRecord, error)
	GetSettings(ctx context.Context, defaultMode routing.Mode) (routing.Settings, int64, error)
}

// Sealer seals and opens key plaintexts bound to their row.
type Sealer interface {
	Seal(ctx context.Context, ec vault.Context, plaintext []byte) ([]byte, error)
	Open(ctx context.Context, ec vault.Context, blob []byte) ([]byte, error)
	WrapperID(blob []byte) (string, error)
}

// Validator checks a key live with its provider.
type Validator interface {
	Validate(ctx context.Context, p provider.Name, apiKey string) provider.Result
}

// Service implements the key lifecycle.
type Service struct {
	Store       Store
	Sealer      Sealer
	Validator   Validator
	Events      events.Publisher
	DefaultMode routing.Mode
	Now         func() time.Time
	Log         *slog.Logger
}

// View is a key as clients see it: never more than its hint.
type View struct {
	Provider    string     `json:"provider"`
	Configured  bool       `json:"configured"`
	Status      *string    `json:"status"`
	Reason      *string    `json:"reason"`
	Hint        *string    `json:"hint"`
	ValidatedAt *time.Time `json:"validated_at"`
	UpdatedAt   *time.Time `json:"updated_at"`
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

func viewOf(p provider.Name, k *store.KeyRecord) View {
	v := View{Provider: string(p)}
	if k == nil {
		return v
	}
	v.Configured = true
	st, reason, hint := k.Status, k.Reason, k.Hint
	v.Status, v.Hint = &st, &hint
	if reason != "" {
		v.Reason = &reason
	}
	if !k.ValidatedAt.IsZero() {
		va := k.ValidatedAt.UTC()
		v.ValidatedAt = &va
	}
	if !k.UpdatedAt.IsZero() {
		ua := k.UpdatedAt.UTC()
		v.UpdatedAt = &ua
	}
	return v
}

func tierOf(a *store.Account) routing.Tier {
	if a == nil || !routing.Tier(a.Tier).Valid() {
		return routing.Free
	}
	return routing.Tier(a.Tier)
}

// List returns every supported provider's key state and the routing banner.
func (s *Service) List(ctx context.Context, userID string) (List, error) {
	set, _, err := s.Store.GetSettings(ctx, s.DefaultMode)
	if err != nil {
		return List{}, err
	}
	u, err := s.Store.GetUser(ctx, userID)
	if err != nil {
		return List{}, err
	}
	out := List{Keys: make([]View, 0, len(provider.Supported()))}
	usable := false
	for _, p := range provider.Supported() {
		var kp *store.KeyRecord
		if k, ok := u.Keys[string(p)]; ok {
			kp = &k
			if k.Status != string(provider.StatusInvalid) {
				usable = true
			}
		}
		out.Keys = append(out.Keys, viewOf(p, kp))
	}
	tier := tierOf(u.Account)
	var balance int64
	if u.Account != nil {
		balance = u.Account.CreditBalance
	}
	banner := routing.Banner(set, tier, usable, balance)
	out.Routing = RoutingView{
		Mode: set.RoutingMode, BYOKEnabled: set.BYOKEnabled, BYOKEligible: routing.BYOKEligible(set, tier),
		Banner: banner, BannerText: routing.BannerText(banner), Tier: tier,
	}
	return out, nil
}

// Put validates apiKey's format, the user's right to BYOK, then the key
// itself with the provider, and stores it sealed, replacing any old key.
func (s *Service) Put(ctx context.Context, userID string, p provider.Name, apiKey string) (View, error) {
	if err := provider.CheckFormat(p, apiKey); err != nil {
		return View{}, err
	}
	set, _, err := s.Store.GetSettings(ctx, s.DefaultMode)
	if err != nil {
		return View{}, err
	}
	if !set.BYOKEnabled {
		return View{}, apperr.New(apperr.BYOKDisabled, "bring-your-own-key is disabled by the administrator")
	}
	u, err := s.Store.GetUser(ctx, userID)
	if err != nil {
		return View{}, err
	}
	if !tierOf(u.Account).BYOKTier() {
		return View{}, apperr.New(apperr.BYOKNotAvailable, "bring-your-own-key needs a premium or lifetime plan; your plan is %s", tierOf(u.Account))
	}
	keyID := uuid.NewString()
	ec := vault.Context{UserID: userID, Provider: string(p), KeyID: keyID}
	// Seal before calling the provider: a vault that is not configured or
	// unreachable refuses the save without any upstream call.
	blob, err := s.Sealer.Seal(ctx, ec, []byte(apiKey))
	if err != nil {
		return View{}, err
	}
	wrapperID, err := s.Sealer.WrapperID(blob)
	if err != nil {
		return View{}, err
	}
	res := s.Validator.Validate(ctx, p, apiKey)
	now := s.now()
	rec := store.KeyRecord{
		UserID: userID, Provider: string(p), KeyID: keyID, Ciphertext: blob, WrapperID: wrapperID,
		Hint: provider.Hint(apiKey), Status: string(res.Status), Reason: string(res.Reason),
		ValidatedAt: now, CreatedAt: now, UpdatedAt: now,
	}
	old, err := s.Store.PutKey(ctx, rec)
	if err != nil {
		return View{}, err
	}
	prev := ""
	if old != nil {
		prev = old.Status
	}
	s.transition(ctx, u.Account, rec, prev, events.BySave)
	httpx.Logger(ctx, s.Log).Info("key saved", "user_id", userID, "provider", string(p), "hint", rec.Hint,
		"status", rec.Status, "reason", rec.Reason, "replaced", old != nil)
	return viewOf(p, &rec), nil
}

// Test re-validates the stored key now and records the outcome.
func (s *Service) Test(ctx context.Context, userID string, p provider.Name) (View, error) {
	u, err := s.Store.GetUser(ctx, userID)
	if err != nil {
		return View{}, err
	}
	k, ok := u.Keys[string(p)]
	if !ok {
		return View{}, apperr.New(apperr.NotFound, "no %s key is configured", p)
	}
	plain, err := s.Sealer.Open(ctx, vault.Context{UserID: userID, Provider: string(p), KeyID: k.KeyID}, k.Ciphertext)
	if err != nil {
		return View{}, err
	}
	res := s.Validator.Validate(ctx, p, string(plain))
	clear(plain)
	rec, err := s.Record(ctx, u.Account, k, res, events.ByTest)
	if err != nil {
		return View{}, err
	}
	return viewOf(p, &rec), nil
}

// Record stores a validation outcome for k and publishes an event when the
// status changed to or from invalid. The same path serves test, use and the
// scheduled revalidation.
func (s *Service) Record(ctx context.Context, acc *store.Account, k store.KeyRecord, res provider.Result, detectedBy string) (store.KeyRecord, error) {
	now := s.now()
	prev, _, err := s.Store.UpdateKeyStatus(ctx, store.StatusUpdate{
		UserID: k.UserID, Provider: k.Provider, KeyID: k.KeyID,
		Status: string(res.Status), Reason: string(res.Reason), ValidatedAt: now,
	})
	if errors.Is(err, store.ErrConflict) {
		return store.KeyRecord{}, apperr.New(apperr.NotFound, "the %s key was replaced or deleted meanwhile", k.Provider)
	}
	if err != nil {
		return store.KeyRecord{}, err
	}
	k.Status, k.Reason, k.ValidatedAt = string(res.Status), string(res.Reason), now
	s.transition(ctx, acc, k, prev, detectedBy)
	return k, nil
}

// transition publishes byok.key_invalid when a key becomes invalid and
// byok.key_valid when an invalid key becomes valid; nothing otherwise.
func (s *Service) transition(ctx context.Context, acc *store.Account, k store.KeyRecord, prev, detectedBy string) {
	invalid := string(provider.StatusInvalid)
	var typ string
	switch {
	case k.Status == invalid && prev != invalid:
		typ = events.KeyInvalid
	case k.Status == string(provider.StatusValid) && prev == invalid:
		typ = events.KeyValid
	default:
		return
	}
	if s.Events == nil {
		return
	}
	e := events.Event{Type: typ, UserID: k.UserID, Provider: k.Provider, Hint: k.Hint, Reason: k.Reason,
		DetectedBy: detectedBy, At: s.now()}
	if acc != nil {
		e.Email = acc.Email
	}
	e.Subject, e.Text = events.Describe(e)
	s.Events.Publish(ctx, e)
}

// Delete removes the user's key for p for good.
func (s *Service) Delete(ctx context.Context, userID string, p provider.Name) error {
	old, err := s.Store.DeleteKey(ctx, userID, string(p))
	if err != nil {
		return err
	}
	if old == nil {
		return apperr.New(apperr.NotFound, "no %s key is configured", p)
	}
	httpx.Logger(ctx, s.Log).Info("key deleted", "user_id", userID, "provider", string(p), "hint", old.Hint)
	return nil
}
