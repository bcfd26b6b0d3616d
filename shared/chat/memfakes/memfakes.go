// Package memfakes holds in-memory stand-ins for the chat executor's storage
// (user rows, settings, usage, ledger, limiter, key recorder). They are for
// benchmarks only: SPEC §14 measures the in-process path "with fake
// storage". Every test of behaviour uses the emulator.
package memfakes

import (
	"context"
	"sync/atomic"

	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/ratelimit"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/usage"
)

// Store answers GetUser and GetSettings from memory and counts the reads.
type Store struct {
	User     store.User
	Settings routing.Settings
	Reads    atomic.Int64
}

// GetUser returns the one user row.
func (m *Store) GetUser(context.Context, string) (store.User, error) {
	m.Reads.Add(1)
	return m.User, nil
}

// GetSettings returns the settings.
func (m *Store) GetSettings(context.Context, routing.Mode) (routing.Settings, int64, error) {
	m.Reads.Add(1)
	return m.Settings, 1, nil
}

// Usage counts usage writes.
type Usage struct{ Writes atomic.Int64 }

// Put counts one write.
func (m *Usage) Put(context.Context, usage.Record) error { m.Writes.Add(1); return nil }

// Ledger moves no credits.
type Ledger struct{}

// Reserve does nothing.
func (Ledger) Reserve(context.Context, string, string, int64) error { return nil }

// Settle does nothing.
func (Ledger) Settle(context.Context, string, string, int64, int64, map[string]any) (int64, error) {
	return 0, nil
}

// Release does nothing.
func (Ledger) Release(context.Context, string, string, int64, map[string]any) error { return nil }

// MarkDelivered records nothing.
func (Ledger) MarkDelivered(context.Context, string, string) error { return nil }

// Limiter admits everything.
type Limiter struct{}

// Admit admits.
func (Limiter) Admit(context.Context, string, routing.TierLimit, int64) (*ratelimit.Ticket, error) {
	return nil, nil
}

// AddTokens does nothing.
func (Limiter) AddTokens(context.Context, string, int64) error { return nil }

// Recorder records nothing.
type Recorder struct{}

// Record returns k unchanged.
func (Recorder) Record(_ context.Context, _ *store.Account, k store.KeyRecord, _ provider.Result, _ string) (store.KeyRecord, error) {
	return k, nil
}
