package keys_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

// memStore is an in-memory keys.Store for benchmarks only (docs/api.md §14 measures
// the in-process path with fake storage); tests use the emulator.
type memStore struct {
	user store.User
	set  routing.Settings
}

func (m *memStore) GetUser(context.Context, string) (store.User, error) { return m.user, nil }
func (m *memStore) UpdateKeyStatus(context.Context, store.StatusUpdate) (string, string, error) {
	return "", "", nil
}
func (m *memStore) GetSettings(context.Context, routing.Mode) (routing.Settings, int64, error) {
	return m.set, 1, nil
}

// BenchmarkListKeysHandler measures GET /v1/keys through the whole handler
// stack (request id, logging, JWT verification, handler, JSON) with storage
// answered from memory.
func BenchmarkListKeysHandler(b *testing.B) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	ver, err := auth.NewVerifier(context.Background(), auth.Config{HS256Secret: secret})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	k := store.KeyRecord{UserID: "alice", Provider: "openai", KeyID: "k1", Hint: "sk-...abcdefg", Status: "valid", ValidatedAt: now, UpdatedAt: now}
	ms := &memStore{
		user: store.User{
			Account: &store.Account{UserID: "alice", Tier: "premium", CreditBalance: 10},
			Keys:    map[string]store.KeyRecord{"openai": k},
			Set:     store.NewKeySet(k),
		},
		set: routing.DefaultSettings(routing.BYOKFirst),
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	v := vault.Disabled(nil)
	svc := &keys.Service{Store: ms, Sealer: v, Validator: provider.NewValidator(nil, provider.Endpoints{}, 0), Log: log}
	mux := http.NewServeMux()
	svc.RegisterKeys(mux)
	h := httpx.Middleware(log, ver.Middleware(mux))
	tok, err := auth.Mint(secret, "alice", "", time.Hour, "", "")
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/v1/keys", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
