package usage

import (
	"context"
	"net/http"
	"strconv"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/credits"
	"github.com/synthstack/byok/shared/httpx"
)

// CreditLedger reads a user's balance and ledger (credits.Ledger).
type CreditLedger interface {
	Balance(ctx context.Context, userID string) (int64, error)
	List(ctx context.Context, userID string, limit int, cursor string) ([]credits.Transaction, string, error)
}

// CreditsService serves GET /v1/credits.
type CreditsService struct {
	Ledger CreditLedger
}

// Register adds the route to mux.
func (s *CreditsService) Register(mux httpx.Router) {
	mux.HandleFunc("GET /v1/credits", s.get)
}

// CreditsResponse is the body of GET /v1/credits.
type CreditsResponse struct {
	Balance      int64                 `json:"balance"`
	Transactions []credits.Transaction `json:"transactions"`
	NextCursor   *string               `json:"next_cursor"`
}

func (s *CreditsService) get(w http.ResponseWriter, r *http.Request) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		httpx.WriteError(w, r, apperr.New(apperr.Unauthorized, "missing credentials"))
		return
	}
	q := r.URL.Query()
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "limit must be an integer from 1 to 200"))
			return
		}
		limit = n
	}
	bal, err := s.Ledger.Balance(r.Context(), p.UserID)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	txs, next, err := s.Ledger.List(r.Context(), p.UserID, limit, q.Get("cursor"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if txs == nil {
		txs = []credits.Transaction{}
	}
	resp := CreditsResponse{Balance: bal, Transactions: txs}
	if next != "" {
		resp.NextCursor = &next
	}
	httpx.WriteJSON(w, http.StatusOK, resp)
}
