// Package memfakes holds in-memory stand-ins for the chat executor's storage
// (user rows, settings, usage, ledger, limiter, key recorder). They are for
// benchmarks only: docs/api.md §14 measures the in-process path "with fake
// storage". Every test of behaviour uses the emulator.
//
// A Latency shared by the stand-ins is the storage latency model of
// docs/performance.md: every call waits Delay (e.g. 4 ms, a DynamoDB-like
// round trip) before it answers, so a benchmark shows which storage calls
// the client waits for.
package memfakes

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/ratelimit"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/usage"
)

// maxWaits bounds the waits a Latency keeps for Waits (the most recent).
const maxWaits = 1 << 16

// Latency delays each storage call by Delay and records how long each wait
// really took (a timer overshoots its delay by tens to hundreds of µs on a
// loaded machine; a benchmark compares against what the model really cost,
// not its nominal figure). A nil *Latency or a zero Delay adds nothing.
type Latency struct {
	Delay time.Duration

	mu    sync.Mutex
	waits []time.Duration // ring of the last maxWaits waits
	next  int
	calls atomic.Int64
}

// NewLatency returns a model delaying every call by d.
func NewLatency(d time.Duration) *Latency { return &Latency{Delay: d} }

// wait blocks for the delay, or until ctx ends (then it returns ctx's
// error, as a storage client would).
func (l *Latency) wait(ctx context.Context) error {
	if l == nil || l.Delay <= 0 {
		return nil
	}
	l.calls.Add(1)
	start := time.Now()
	t := time.NewTimer(l.Delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	took := time.Since(start)
	l.mu.Lock()
	if len(l.waits) < maxWaits {
		l.waits = append(l.waits, took)
	} else {
		l.waits[l.next] = took
		l.next = (l.next + 1) % maxWaits
	}
	l.mu.Unlock()
	return nil
}

// Calls is the number of delayed calls so far.
func (l *Latency) Calls() int64 {
	if l == nil {
		return 0
	}
	return l.calls.Load()
}

// Waits returns the recorded waits (the most recent maxWaits), sorted, and
// forgets them, so a benchmark can take the waits of one measured phase.
func (l *Latency) Waits() []time.Duration {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	w := l.waits
	l.waits, l.next = nil, 0
	l.mu.Unlock()
	slices.Sort(w)
	return w
}

// Store answers GetUser and GetSettings from memory and counts the reads.
type Store struct {
	User     store.User
	Settings routing.Settings
	Reads    atomic.Int64
	Latency  *Latency
}

// GetUser returns the one user row.
func (m *Store) GetUser(ctx context.Context, _ string) (store.User, error) {
	m.Reads.Add(1)
	if err := m.Latency.wait(ctx); err != nil {
		return store.User{}, err
	}
	return m.User, nil
}

// GetSettings returns the settings.
func (m *Store) GetSettings(ctx context.Context, _ routing.Mode) (routing.Settings, int64, error) {
	m.Reads.Add(1)
	if err := m.Latency.wait(ctx); err != nil {
		return routing.Settings{}, 0, err
	}
	return m.Settings, 1, nil
}

// Usage counts usage writes.
type Usage struct {
	Writes  atomic.Int64
	Latency *Latency
}

// Put counts one write.
func (m *Usage) Put(ctx context.Context, _ usage.Record) error {
	m.Writes.Add(1)
	return m.Latency.wait(ctx)
}

// Ledger moves no credits.
type Ledger struct{ Latency *Latency }

// Reserve does nothing.
func (l Ledger) Reserve(ctx context.Context, _, _ string, _ int64) error { return l.Latency.wait(ctx) }

// Settle does nothing.
func (l Ledger) Settle(ctx context.Context, _, _ string, _, _ int64, _ map[string]any) (int64, error) {
	return 0, l.Latency.wait(ctx)
}

// Release does nothing.
func (l Ledger) Release(ctx context.Context, _, _ string, _ int64, _ map[string]any) error {
	return l.Latency.wait(ctx)
}

// MarkDelivered records nothing.
func (Ledger) MarkDelivered(context.Context, string, string) error { return nil }

// Limiter admits everything.
type Limiter struct{ Latency *Latency }

// Admit admits.
func (l Limiter) Admit(ctx context.Context, _ string, _ routing.TierLimit, _ int64) (*ratelimit.Ticket, error) {
	return nil, l.Latency.wait(ctx)
}

// AddTokens does nothing.
func (l Limiter) AddTokens(ctx context.Context, _ string, _ int64) error { return l.Latency.wait(ctx) }

// Recorder records nothing.
type Recorder struct{}

// Record returns k unchanged.
func (Recorder) Record(_ context.Context, _ *store.Account, k store.KeyRecord, _ provider.Result, _ string) (store.KeyRecord, error) {
	return k, nil
}
