package keys

import (
	"net/http"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/provider"
)

// maxKeyBody bounds PUT /v1/keys bodies: a key plus a few fields.
const maxKeyBody = 64 << 10

// RegisterKeys adds the keys function's routes to mux.
func (s *Service) RegisterKeys(mux httpx.Router) {
	mux.HandleFunc("GET /v1/keys", s.handleList)
	mux.HandleFunc("PUT /v1/keys/{provider}", s.handlePut)
	mux.HandleFunc("DELETE /v1/keys/{provider}", s.handleDelete)
}

// RegisterValidate adds the validate function's route to mux.
func (s *Service) RegisterValidate(mux httpx.Router) {
	mux.HandleFunc("POST /v1/keys/{provider}/test", s.handleTest)
}

func principal(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		httpx.WriteError(w, r, apperr.New(apperr.Unauthorized, "missing credentials"))
	}
	return p, ok
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r)
	if !ok {
		return
	}
	out, err := s.List(r.Context(), p.UserID)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

type putRequest struct {
	APIKey *string `json:"api_key"`
}

func (s *Service) handlePut(w http.ResponseWriter, r *http.Request) {
	user, p, ok := userAndProvider(w, r)
	if !ok {
		return
	}
	var req putRequest
	if err := httpx.DecodeJSON(w, r, maxKeyBody, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if req.APIKey == nil || *req.APIKey == "" {
		httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "field \"api_key\" is required"))
		return
	}
	v, err := s.Put(r.Context(), user, p, *req.APIKey)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}

// userAndProvider resolves the caller and the {provider} path value,
// writing the error when either is missing or unknown.
func userAndProvider(w http.ResponseWriter, r *http.Request) (string, provider.Name, bool) {
	pr, ok := principal(w, r)
	if !ok {
		return "", "", false
	}
	p, err := provider.Parse(r.PathValue("provider"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return "", "", false
	}
	return pr.UserID, p, true
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) {
	user, p, ok := userAndProvider(w, r)
	if !ok {
		return
	}
	if err := s.Delete(r.Context(), user, p); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleTest(w http.ResponseWriter, r *http.Request) {
	user, p, ok := userAndProvider(w, r)
	if !ok {
		return
	}
	v, err := s.Test(r.Context(), user, p)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, v)
}
