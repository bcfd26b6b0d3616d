package routing

// Banner values of GET /v1/keys (docs/api.md §7).
const (
	BannerBYOK           = "byok"
	BannerCredits        = "credits"
	BannerActionRequired = "action_required"
)

// BannerText is the human text for each banner value.
func BannerText(b string) string {
	switch b {
	case BannerBYOK:
		return "Using Your API Keys"
	case BannerCredits:
		return "Using Internal Credits"
	default:
		return "Action Required"
	}
}

// BYOKEligible reports whether a user may use their own keys at all: BYOK is
// enabled by the admin and the tier is premium or lifetime.
func BYOKEligible(s Settings, tier Tier) bool { return s.BYOKEnabled && tier.BYOKTier() }

// Banner says which route the user's requests take by default:
//   - byok_first: their keys when eligible with a usable key; else credits
//     when they have a balance; else action required.
//   - credit_first: credits while the balance lasts; then their keys; else
//     action required.
//   - byok_only: their keys when eligible with a usable key; else action
//     required (internal keys are never used).
//
// usableKey means at least one stored key whose status is not invalid.
func Banner(s Settings, tier Tier, usableKey bool, balance int64) string {
	byok := BYOKEligible(s, tier) && usableKey
	switch s.RoutingMode {
	case BYOKOnly:
		if byok {
			return BannerBYOK
		}
		return BannerActionRequired
	case CreditFirst:
		switch {
		case balance > 0:
			return BannerCredits
		case byok:
			return BannerBYOK
		default:
			return BannerActionRequired
		}
	default: // byok_first
		switch {
		case byok:
			return BannerBYOK
		case balance > 0:
			return BannerCredits
		default:
			return BannerActionRequired
		}
	}
}
