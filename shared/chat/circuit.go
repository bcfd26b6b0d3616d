package chat

import (
	"sync"
	"time"
)

// Circuit is the BYOK circuit (docs/api.md §8), one per user and key (chat names
// each by user, provider and key: keyCircuit, docs/teams.md): after an
// `unavailable` failure it stays open for OpenFor, then lets one probe
// through. It lives in the process (one Lambda instance); it holds no key
// material. The zero value is not usable; use NewCircuit.
type Circuit struct {
	mu      sync.Mutex
	openFor time.Duration
	now     func() time.Time
	max     int
	m       map[string]*circuitState
}

type circuitState struct {
	openedAt time.Time
	probing  bool
	probeAt  time.Time
}

// NewCircuit returns a circuit with the given open period (60 s by default).
func NewCircuit(openFor time.Duration, now func() time.Time) *Circuit {
	if openFor <= 0 {
		openFor = 60 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	return &Circuit{openFor: openFor, now: now, max: 100_000, m: map[string]*circuitState{}}
}

func circuitKey(user, prov string) string { return user + "\x00" + prov }

// Open reports whether BYOK must be skipped for user and provider. When the
// open period has passed, the first caller becomes the probe (Open returns
// false for it) and the others keep skipping until the probe reports.
func (c *Circuit) Open(user, prov string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.m[circuitKey(user, prov)]
	if !ok {
		return false
	}
	now := c.now()
	if now.Sub(st.openedAt) < c.openFor {
		return true
	}
	// A probe that never reported (its request died, panicked or could not
	// open the key) expires after the same period, so the circuit can never
	// stay open for good.
	if st.probing && now.Sub(st.probeAt) < c.openFor {
		return true
	}
	st.probing, st.probeAt = true, now
	return false
}

// Failure opens (or re-opens) the circuit after an unavailable failure.
func (c *Circuit) Failure(user, prov string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		now := c.now()
		for k, st := range c.m {
			if now.Sub(st.openedAt) >= c.openFor && !st.probing {
				delete(c.m, k)
			}
		}
	}
	c.m[circuitKey(user, prov)] = &circuitState{openedAt: c.now()}
}

// Success closes the circuit.
func (c *Circuit) Success(user, prov string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, circuitKey(user, prov))
}

// Done ends a probe that failed for a reason that says nothing about
// availability (the circuit stays as it was, with no probe in flight).
func (c *Circuit) Done(user, prov string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m[circuitKey(user, prov)]; ok {
		st.probing = false
	}
}
