// Package routing holds the admin settings that govern routing (mode, BYOK
// on/off, tier limits), the tiers, and the rules that decide whether a user
// can use their own key and what the routing banner says.
package routing

import (
	"fmt"
	"slices"
)

// Mode is the admin-set routing mode.
type Mode string

const (
	BYOKFirst   Mode = "byok_first"
	CreditFirst Mode = "credit_first"
	BYOKOnly    Mode = "byok_only"
)

// Modes lists every routing mode.
func Modes() []Mode { return []Mode{BYOKFirst, CreditFirst, BYOKOnly} }

// Valid reports whether m is a known mode.
func (m Mode) Valid() bool { return slices.Contains(Modes(), m) }

// Tier is a user's subscription tier.
type Tier string

const (
	Free     Tier = "free"
	Starter  Tier = "starter"
	Premium  Tier = "premium"
	Lifetime Tier = "lifetime"
)

// Tiers lists every tier.
func Tiers() []Tier { return []Tier{Free, Starter, Premium, Lifetime} }

// Valid reports whether t is a known tier.
func (t Tier) Valid() bool { return slices.Contains(Tiers(), t) }

// BYOKTier reports whether the tier may use its own keys.
func (t Tier) BYOKTier() bool { return t == Premium || t == Lifetime }

// TierLimit is the credits-route limit set of one tier.
type TierLimit struct {
	RequestsPerMinute  int64 `json:"requests_per_minute" dynamodbav:"requests_per_minute"`
	TokensPerDay       int64 `json:"tokens_per_day" dynamodbav:"tokens_per_day"`
	ConcurrentRequests int64 `json:"concurrent_requests" dynamodbav:"concurrent_requests"`
}

// Settings are the global admin settings.
type Settings struct {
	RoutingMode Mode               `json:"routing_mode" dynamodbav:"routing_mode"`
	BYOKEnabled bool               `json:"byok_enabled" dynamodbav:"byok_enabled"`
	TierLimits  map[Tier]TierLimit `json:"tier_limits" dynamodbav:"tier_limits"`
}

// DefaultTierLimits are docs/api.md §9's defaults.
func DefaultTierLimits() map[Tier]TierLimit {
	return map[Tier]TierLimit{
		Free:     {RequestsPerMinute: 10, TokensPerDay: 20_000, ConcurrentRequests: 3},
		Starter:  {RequestsPerMinute: 30, TokensPerDay: 100_000, ConcurrentRequests: 5},
		Premium:  {RequestsPerMinute: 100, TokensPerDay: 1_000_000, ConcurrentRequests: 10},
		Lifetime: {RequestsPerMinute: 100, TokensPerDay: 1_000_000, ConcurrentRequests: 10},
	}
}

// DefaultSettings are the settings in force before an admin saves any:
// mode (byok_first unless the deployment chose another), BYOK enabled,
// default tier limits.
func DefaultSettings(mode Mode) Settings {
	if !mode.Valid() {
		mode = BYOKFirst
	}
	return Settings{RoutingMode: mode, BYOKEnabled: true, TierLimits: DefaultTierLimits()}
}

// SettingsPatch is a partial update: nil fields stay as they are; tier limits
// merge per tier and per field.
type SettingsPatch struct {
	RoutingMode *Mode                   `json:"routing_mode"`
	BYOKEnabled *bool                   `json:"byok_enabled"`
	TierLimits  map[Tier]TierLimitPatch `json:"tier_limits"`
}

// TierLimitPatch is a partial tier limit.
type TierLimitPatch struct {
	RequestsPerMinute  *int64 `json:"requests_per_minute"`
	TokensPerDay       *int64 `json:"tokens_per_day"`
	ConcurrentRequests *int64 `json:"concurrent_requests"`
}

// Validate checks a patch and returns a message for the first problem.
func (p SettingsPatch) Validate() error {
	if p.RoutingMode != nil && !p.RoutingMode.Valid() {
		return fmt.Errorf("routing_mode must be one of %v", Modes())
	}
	for t, l := range p.TierLimits {
		if !t.Valid() {
			return fmt.Errorf("tier_limits: unknown tier %q; tiers are %v", truncate(string(t)), Tiers())
		}
		for name, v := range map[string]*int64{"requests_per_minute": l.RequestsPerMinute,
			"tokens_per_day": l.TokensPerDay, "concurrent_requests": l.ConcurrentRequests} {
			if v != nil && (*v < 1 || *v > 1_000_000_000) {
				return fmt.Errorf("tier_limits.%s.%s must be between 1 and 1000000000", t, name)
			}
		}
	}
	return nil
}

// Apply returns s with p applied.
func (s Settings) Apply(p SettingsPatch) Settings {
	out := s
	out.TierLimits = make(map[Tier]TierLimit, len(s.TierLimits))
	for t, l := range s.TierLimits {
		out.TierLimits[t] = l
	}
	if p.RoutingMode != nil {
		out.RoutingMode = *p.RoutingMode
	}
	if p.BYOKEnabled != nil {
		out.BYOKEnabled = *p.BYOKEnabled
	}
	for t, lp := range p.TierLimits {
		l := out.TierLimits[t]
		if lp.RequestsPerMinute != nil {
			l.RequestsPerMinute = *lp.RequestsPerMinute
		}
		if lp.TokensPerDay != nil {
			l.TokensPerDay = *lp.TokensPerDay
		}
		if lp.ConcurrentRequests != nil {
			l.ConcurrentRequests = *lp.ConcurrentRequests
		}
		out.TierLimits[t] = l
	}
	return out
}

// Normalize fills missing parts of stored settings with defaults.
func (s Settings) Normalize(defaultMode Mode) Settings {
	d := DefaultSettings(defaultMode)
	if !s.RoutingMode.Valid() {
		s.RoutingMode = d.RoutingMode
	}
	if s.TierLimits == nil {
		s.TierLimits = map[Tier]TierLimit{}
	}
	for t, l := range d.TierLimits {
		if _, ok := s.TierLimits[t]; !ok {
			s.TierLimits[t] = l
		}
	}
	return s
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}
