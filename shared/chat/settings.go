package chat

import (
	"context"
	"sync"
	"time"

	"github.com/synthstack/byok/shared/routing"
)

// SettingsStore reads the admin settings.
type SettingsStore interface {
	GetSettings(ctx context.Context, defaultMode routing.Mode) (routing.Settings, int64, error)
}

// SettingsCache keeps the admin settings for a few seconds so a warm request
// does not read them; admin changes apply within TTL, without a redeploy.
type SettingsCache struct {
	Store       SettingsStore
	DefaultMode routing.Mode
	TTL         time.Duration

	mu  sync.Mutex
	val routing.Settings
	at  time.Time
}

// Get returns the cached settings, reading them when older than TTL.
func (c *SettingsCache) Get(ctx context.Context) (routing.Settings, error) {
	ttl := c.TTL
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	c.mu.Lock()
	if !c.at.IsZero() && time.Since(c.at) < ttl {
		v := c.val
		c.mu.Unlock()
		return v, nil
	}
	c.mu.Unlock()
	s, _, err := c.Store.GetSettings(ctx, c.DefaultMode)
	if err != nil {
		return routing.Settings{}, err
	}
	c.mu.Lock()
	c.val, c.at = s, time.Now()
	c.mu.Unlock()
	return s, nil
}
