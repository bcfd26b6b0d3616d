package routing

import (
	"fmt"
	"testing"
)

// Every row of the docs/api.md §8 table, for every eligibility cause.
func TestDecide(t *testing.T) {
	eligible := Input{BYOKEnabled: true, Tier: Premium, Key: KeyValid}
	notEligible := map[string]Input{
		"no key":        {BYOKEnabled: true, Tier: Premium},
		"invalid key":   {BYOKEnabled: true, Tier: Lifetime, Key: KeyInvalid},
		"free tier":     {BYOKEnabled: true, Tier: Free, Key: KeyValid},
		"starter tier":  {BYOKEnabled: true, Tier: Starter, Key: KeyValid},
		"byok disabled": {BYOKEnabled: false, Tier: Premium, Key: KeyValid},
	}
	type want struct {
		first   Route
		refuse  string
		skipped string
	}
	check := func(name string, in Input, w want) {
		t.Helper()
		p := Decide(in)
		if p.First != w.first || p.Refuse != w.refuse || p.Skipped != w.skipped {
			t.Errorf("%s: Decide(%+v) = %+v, want %+v", name, in, p, w)
		}
	}
	for _, bal := range []int64{0, 1} {
		with := func(in Input, m Mode) Input { in.Mode, in.Balance = m, bal; return in }
		// eligible
		check("byok_first eligible", with(eligible, BYOKFirst), want{first: RouteBYOK})
		u := eligible
		u.Key = KeyUnchecked
		check("byok_first unchecked key", with(u, BYOKFirst), want{first: RouteBYOK})
		check("byok_only eligible", with(eligible, BYOKOnly), want{first: RouteBYOK})
		if bal > 0 {
			check("credit_first eligible", with(eligible, CreditFirst), want{first: RouteCredits})
		} else {
			check("credit_first eligible, no credits", with(eligible, CreditFirst), want{first: RouteBYOK})
		}
		// not eligible
		for why, in := range notEligible {
			name := fmt.Sprintf("%s, balance %d", why, bal)
			check("byok_only "+name, with(in, BYOKOnly), want{refuse: RefuseBYOKRequired})
			if bal > 0 {
				check("byok_first "+name, with(in, BYOKFirst), want{first: RouteCredits})
				check("credit_first "+name, with(in, CreditFirst), want{first: RouteCredits})
			} else {
				check("byok_first "+name, with(in, BYOKFirst), want{refuse: RefusePaymentRequired})
				check("credit_first "+name, with(in, CreditFirst), want{refuse: RefusePaymentRequired})
			}
		}
	}
	// circuit open: byok_first goes straight to credits when it can
	open := eligible
	open.Mode, open.CircuitOpen, open.Balance = BYOKFirst, true, 5
	check("circuit open", open, want{first: RouteCredits, skipped: "circuit_open"})
	open.Balance = 0
	check("circuit open, no credits", open, want{first: RouteBYOK})
	open.Mode, open.Balance = BYOKOnly, 5
	check("circuit open, byok_only", open, want{first: RouteBYOK})
}

func TestAfterBYOK(t *testing.T) {
	classes := []FailureClass{FailAuth, FailBilling, FailUnavailable, FailRateLimit, FailRequest}
	for _, mode := range Modes() {
		for _, bal := range []int64{0, 10} {
			for _, c := range classes {
				for _, sent := range []bool{false, true} {
					in := Input{Mode: mode, BYOKEnabled: true, Tier: Premium, Key: KeyValid, Balance: bal}
					got := AfterBYOK(in, c, sent)
					var w Next
					switch {
					case sent, !c.FallbackClass(), mode == BYOKOnly:
						w = Next{PassThrough: true}
					case mode == CreditFirst:
						w = Next{Refuse: RefusePaymentRequired}
					case bal > 0:
						w = Next{Route: RouteCredits}
					default:
						w = Next{Refuse: RefusePaymentRequired}
					}
					if got != w {
						t.Errorf("AfterBYOK(%s, bal %d, %s, sent %v) = %+v, want %+v", mode, bal, c, sent, got, w)
					}
				}
			}
		}
	}
}

func TestAfterCreditsRefused(t *testing.T) {
	el := Input{BYOKEnabled: true, Tier: Premium, Key: KeyValid, Balance: 3}
	for _, c := range []struct {
		in   Input
		want Next
	}{
		{func() Input { i := el; i.Mode = CreditFirst; return i }(), Next{Route: RouteBYOK}},
		{func() Input { i := el; i.Mode = BYOKFirst; i.CircuitOpen = true; return i }(), Next{Route: RouteBYOK}},
		{func() Input { i := el; i.Mode = BYOKFirst; i.Key = KeyNone; return i }(), Next{Refuse: RefusePaymentRequired}},
		{func() Input { i := el; i.Mode = CreditFirst; i.Tier = Free; return i }(), Next{Refuse: RefusePaymentRequired}},
	} {
		if got := AfterCreditsRefused(c.in); got != c.want {
			t.Errorf("AfterCreditsRefused(%+v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}

func TestBanner(t *testing.T) {
	s := DefaultSettings(BYOKFirst)
	cases := []struct {
		mode    Mode
		enabled bool
		tier    Tier
		usable  bool
		bal     int64
		want    string
	}{
		{BYOKFirst, true, Premium, true, 0, BannerBYOK},
		{BYOKFirst, true, Premium, false, 5, BannerCredits},
		{BYOKFirst, true, Premium, false, 0, BannerActionRequired},
		{BYOKFirst, true, Free, true, 5, BannerCredits},
		{BYOKFirst, false, Premium, true, 0, BannerActionRequired},
		{CreditFirst, true, Premium, true, 5, BannerCredits},
		{CreditFirst, true, Premium, true, 0, BannerBYOK},
		{CreditFirst, true, Starter, false, 0, BannerActionRequired},
		{BYOKOnly, true, Lifetime, true, 0, BannerBYOK},
		{BYOKOnly, true, Premium, false, 100, BannerActionRequired},
		{BYOKOnly, true, Free, true, 100, BannerActionRequired},
	}
	for _, c := range cases {
		s.RoutingMode, s.BYOKEnabled = c.mode, c.enabled
		if got := Banner(s, c.tier, c.usable, c.bal); got != c.want {
			t.Errorf("Banner(%s, enabled %v, %s, usable %v, bal %d) = %s, want %s", c.mode, c.enabled, c.tier, c.usable, c.bal, got, c.want)
		}
	}
}

func TestSettingsPatch(t *testing.T) {
	s := DefaultSettings("")
	if s.RoutingMode != BYOKFirst || !s.BYOKEnabled || s.TierLimits[Free].RequestsPerMinute != 10 {
		t.Fatalf("defaults: %+v", s)
	}
	m, off, rpm := CreditFirst, false, int64(42)
	next := s.Apply(SettingsPatch{RoutingMode: &m, BYOKEnabled: &off, TierLimits: map[Tier]TierLimitPatch{Starter: {RequestsPerMinute: &rpm}}})
	if next.RoutingMode != CreditFirst || next.BYOKEnabled || next.TierLimits[Starter].RequestsPerMinute != 42 || next.TierLimits[Starter].TokensPerDay != 100_000 {
		t.Fatalf("apply: %+v", next)
	}
	if s.TierLimits[Starter].RequestsPerMinute != 30 {
		t.Fatal("Apply mutated its receiver")
	}
	bad := Mode("fastest")
	zero := int64(0)
	for _, p := range []SettingsPatch{{RoutingMode: &bad}, {TierLimits: map[Tier]TierLimitPatch{"gold": {}}},
		{TierLimits: map[Tier]TierLimitPatch{Free: {TokensPerDay: &zero}}}} {
		if p.Validate() == nil {
			t.Errorf("Validate(%+v) = nil, want an error", p)
		}
	}
}
