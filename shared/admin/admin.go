// Package admin serves the admin routes: global routing settings and user
// accounts (tier, email). Every route needs an admin principal.
package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/mail"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
)

// Store is the storage the admin service needs.
type Store interface {
	GetSettings(ctx context.Context, defaultMode routing.Mode) (routing.Settings, int64, error)
	PutSettings(ctx context.Context, s routing.Settings, version int64, now time.Time) error
	GetAccount(ctx context.Context, userID string) (*store.Account, error)
	UpsertAccount(ctx context.Context, userID string, patch store.AccountPatch, now time.Time) (*store.Account, error)
}

// Ledger grants credits (credits.Ledger).
type Ledger interface {
	Grant(ctx context.Context, userID, idempotencyKey string, amount int64, reason string) (balance int64, replayed bool, err error)
}

// Service implements the admin routes.
type Service struct {
	Store       Store
	Ledger      Ledger
	DefaultMode routing.Mode
	Now         func() time.Time
	Log         *slog.Logger
}

const maxAdminBody = 64 << 10

// Register adds the admin routes to mux, each behind RequireAdmin.
func (s *Service) Register(mux httpx.Router) {
	mux.Handle("GET /v1/admin/settings", auth.RequireAdmin(http.HandlerFunc(s.getSettings)))
	mux.Handle("PUT /v1/admin/settings", auth.RequireAdmin(http.HandlerFunc(s.putSettings)))
	mux.Handle("GET /v1/admin/users/{id}", auth.RequireAdmin(http.HandlerFunc(s.getUser)))
	mux.Handle("PUT /v1/admin/users/{id}", auth.RequireAdmin(http.HandlerFunc(s.putUser)))
	mux.Handle("POST /v1/admin/users/{id}/credits", auth.RequireAdmin(http.HandlerFunc(s.grantCredits)))
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) getSettings(w http.ResponseWriter, r *http.Request) {
	set, _, err := s.Store.GetSettings(r.Context(), s.DefaultMode)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, set)
}

// UpdateSettings applies patch with optimistic concurrency, retrying a few
// times when another admin wrote in between.
func (s *Service) UpdateSettings(ctx context.Context, patch routing.SettingsPatch) (routing.Settings, error) {
	if err := patch.Validate(); err != nil {
		return routing.Settings{}, apperr.New(apperr.InvalidRequest, "%s", err.Error())
	}
	for range 5 {
		cur, version, err := s.Store.GetSettings(ctx, s.DefaultMode)
		if err != nil {
			return routing.Settings{}, err
		}
		next := cur.Apply(patch)
		err = s.Store.PutSettings(ctx, next, version, s.now())
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return routing.Settings{}, err
		}
		httpx.Logger(ctx, s.Log).Info("settings updated", "routing_mode", string(next.RoutingMode), "byok_enabled", next.BYOKEnabled)
		return next, nil
	}
	return routing.Settings{}, apperr.New(apperr.ServiceUnavailable, "settings are being changed concurrently; try again")
}

func (s *Service) putSettings(w http.ResponseWriter, r *http.Request) {
	var patch routing.SettingsPatch
	if err := httpx.DecodeJSON(w, r, maxAdminBody, &patch); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	set, err := s.UpdateSettings(r.Context(), patch)
	httpx.Respond(w, r, http.StatusOK, set, err)
}

// UserView is an account as admins see it.
type UserView struct {
	UserID        string       `json:"user_id"`
	Tier          routing.Tier `json:"tier"`
	Email         string       `json:"email"`
	CreditBalance int64        `json:"credit_balance"`
	UpdatedAt     time.Time    `json:"updated_at"`
}

func userView(a *store.Account) UserView {
	return UserView{UserID: a.UserID, Tier: routing.Tier(a.Tier), Email: a.Email, CreditBalance: a.CreditBalance, UpdatedAt: a.UpdatedAt}
}

// ValidUserID reports whether id can name a user: the one rule of
// auth.ValidUserID, which token subjects follow too, so every user a token
// can name can be managed here and no other.
func ValidUserID(id string) bool { return auth.ValidUserID(id) }

func userID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !ValidUserID(id) {
		httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "user id must be 1-128 printable ASCII characters without spaces or '#' (the rule token subjects follow)"))
		return "", false
	}
	return id, true
}

func (s *Service) getUser(w http.ResponseWriter, r *http.Request) {
	id, ok := userID(w, r)
	if !ok {
		return
	}
	a, err := s.Store.GetAccount(r.Context(), id)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if a == nil {
		httpx.WriteError(w, r, apperr.New(apperr.NotFound, "no account for this user"))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, userView(a))
}

type userPatch struct {
	Tier  *string `json:"tier"`
	Email *string `json:"email"`
}

func (s *Service) putUser(w http.ResponseWriter, r *http.Request) {
	id, ok := userID(w, r)
	if !ok {
		return
	}
	var p userPatch
	if err := httpx.DecodeJSON(w, r, maxAdminBody, &p); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if p.Tier == nil && p.Email == nil {
		httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "send at least one of \"tier\" or \"email\""))
		return
	}
	if p.Tier != nil && !routing.Tier(*p.Tier).Valid() {
		httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "tier must be one of %v", routing.Tiers()))
		return
	}
	if p.Email != nil && *p.Email != "" {
		addr, err := mail.ParseAddress(*p.Email)
		if err != nil || addr.Address != *p.Email || len(*p.Email) > 254 {
			httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "email must be a plain address like name@example.com"))
			return
		}
	}
	a, err := s.Store.UpsertAccount(r.Context(), id, store.AccountPatch{Tier: p.Tier, Email: p.Email}, s.now())
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.Logger(r.Context(), s.Log).Info("account updated", "user_id", id, "tier", a.Tier)
	httpx.WriteJSON(w, http.StatusOK, userView(a))
}

type grantRequest struct {
	Amount *int64  `json:"amount"`
	Reason *string `json:"reason"`
}

// GrantResponse answers a credit grant.
type GrantResponse struct {
	UserID   string `json:"user_id"`
	Amount   int64  `json:"amount"`
	Balance  int64  `json:"balance"`
	Replayed bool   `json:"replayed"`
}

// grantCredits adds (or, with a negative amount, removes) credits,
// idempotently by the Idempotency-Key header.
func (s *Service) grantCredits(w http.ResponseWriter, r *http.Request) {
	id, ok := userID(w, r)
	if !ok {
		return
	}
	idem := r.Header.Get("Idempotency-Key")
	if idem == "" || len(idem) > 200 {
		httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "an Idempotency-Key header (1-200 characters) is required"))
		return
	}
	var req grantRequest
	if err := httpx.DecodeJSON(w, r, maxAdminBody, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if req.Amount == nil || *req.Amount == 0 || *req.Amount > 1_000_000_000_000 || *req.Amount < -1_000_000_000_000 {
		httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "field \"amount\" must be a non-zero integer of at most 10^12 credits"))
		return
	}
	if req.Reason == nil || *req.Reason == "" || len(*req.Reason) > 500 {
		httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "field \"reason\" is required (at most 500 characters)"))
		return
	}
	bal, replayed, err := s.Ledger.Grant(r.Context(), id, idem, *req.Amount, *req.Reason)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.Logger(r.Context(), s.Log).Info("credits granted", "user_id", id, "amount", *req.Amount, "replayed", replayed)
	httpx.WriteJSON(w, http.StatusOK, GrantResponse{UserID: id, Amount: *req.Amount, Balance: bal, Replayed: replayed})
}
