package routing

// Route is where a request is served.
type Route string

const (
	RouteNone    Route = ""
	RouteBYOK    Route = "byok"
	RouteCredits Route = "credits"
)

// FailureClass classifies a failed upstream call on the BYOK route (docs/api.md §8).
type FailureClass string

const (
	FailNone        FailureClass = ""
	FailAuth        FailureClass = "auth"        // 401, 403: fallback class
	FailBilling     FailureClass = "billing"     // 402, insufficient_quota, Anthropic billing: fallback class
	FailUnavailable FailureClass = "unavailable" // 5xx, 529, timeout, connection error: fallback class
	FailRateLimit   FailureClass = "rate_limit"  // 429 that is not a quota error: never falls back
	FailRequest     FailureClass = "request"     // 400, 404, 413, 422: never falls back
)

// FallbackClass reports whether a BYOK failure of class c may fall back to
// credits.
func (c FailureClass) FallbackClass() bool {
	return c == FailAuth || c == FailBilling || c == FailUnavailable
}

// KeyState is what the user has stored for the request's provider.
type KeyState string

const (
	KeyNone      KeyState = ""
	KeyValid     KeyState = "valid"
	KeyUnchecked KeyState = "unchecked"
	KeyInvalid   KeyState = "invalid"
)

// Input is everything the routing decision depends on.
type Input struct {
	Mode        Mode
	BYOKEnabled bool
	Tier        Tier
	Key         KeyState
	Balance     int64
	// CircuitOpen: the user's BYOK calls to this provider failed as
	// unavailable less than 60 s ago (and this request is not the probe).
	CircuitOpen bool
}

// Eligible reports whether BYOK is eligible (docs/api.md §8): enabled, premium or
// lifetime tier, a key stored for the provider whose status is not invalid.
func (in Input) Eligible() bool {
	return in.BYOKEnabled && in.Tier.BYOKTier() && in.Key != KeyNone && in.Key != KeyInvalid
}

// Outcome codes for a refused request.
const (
	RefusePaymentRequired = "payment_required"
	RefuseBYOKRequired    = "byok_required"
)

// Plan is the routing decision before any upstream call.
type Plan struct {
	// First is the route to try; RouteNone means refuse with Refuse.
	First  Route
	Refuse string
	// Skipped names why an eligible BYOK key was not tried first
	// ("circuit_open"); it becomes the X-Byok-Fallback header.
	Skipped string
}

// Decide returns the plan for in (docs/api.md §8 table).
//
// Choices where docs/api.md is silent: in byok_first with the circuit open but
// no credits, the key is tried anyway (there is nothing to fall back to);
// in credit_first, "credits run out" means the balance cannot cover the
// request's reservation, which the executor reports through AfterCredits.
func Decide(in Input) Plan {
	eligible := in.Eligible()
	switch in.Mode {
	case BYOKOnly:
		if eligible {
			return Plan{First: RouteBYOK}
		}
		return Plan{Refuse: RefuseBYOKRequired}
	case CreditFirst:
		switch {
		case in.Balance > 0:
			return Plan{First: RouteCredits}
		case eligible:
			return Plan{First: RouteBYOK}
		default:
			return Plan{Refuse: RefusePaymentRequired}
		}
	default: // byok_first
		switch {
		case eligible && in.CircuitOpen && in.Balance > 0:
			return Plan{First: RouteCredits, Skipped: "circuit_open"}
		case eligible:
			return Plan{First: RouteBYOK}
		case in.Balance > 0:
			return Plan{First: RouteCredits}
		default:
			return Plan{Refuse: RefusePaymentRequired}
		}
	}
}

// Next is what to do after a failed attempt.
type Next struct {
	// Route is the next route to try (RouteNone: stop).
	Route Route
	// PassThrough: return the upstream failure to the client as it is.
	PassThrough bool
	// Refuse: answer with this code instead (payment_required naming the
	// BYOK failure).
	Refuse string
}

// AfterBYOK decides what follows a failed BYOK attempt of class c.
// bytesSent reports whether any byte already reached the client (a
// stream cannot fall back after its first byte).
func AfterBYOK(in Input, c FailureClass, bytesSent bool) Next {
	if bytesSent || !c.FallbackClass() || in.Mode == BYOKOnly {
		return Next{PassThrough: true}
	}
	if in.Mode == CreditFirst {
		// BYOK is only tried in credit_first once credits ran out.
		return Next{Refuse: RefusePaymentRequired}
	}
	if in.Balance > 0 {
		return Next{Route: RouteCredits}
	}
	return Next{Refuse: RefusePaymentRequired}
}

// AfterCreditsRefused decides what follows when the credits route cannot
// take the request because the balance does not cover its reservation.
func AfterCreditsRefused(in Input) Next {
	if in.Eligible() && (in.Mode == CreditFirst || in.Mode == BYOKFirst && in.CircuitOpen) {
		return Next{Route: RouteBYOK}
	}
	return Next{Refuse: RefusePaymentRequired}
}
