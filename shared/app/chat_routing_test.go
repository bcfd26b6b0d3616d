package app_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/synthstack/byok/shared/fakeprovider"
)

type failure struct {
	name string
	b    fakeprovider.Behavior
}

func failures() []failure {
	return []failure{
		{"success", fakeprovider.OK()},
		{"401", fakeprovider.Unauthorized()},
		{"403", fakeprovider.Forbidden()},
		{"402", fakeprovider.PaymentRequired()},
		{"429 insufficient_quota", fakeprovider.InsufficientQuota()},
		{"429 rate limit", fakeprovider.RateLimited()},
		{"500", fakeprovider.ServerError()},
		{"529", fakeprovider.Overloaded()},
		{"timeout", fakeprovider.Behavior{Stall: true}},
		{"connection dropped", fakeprovider.Behavior{DropConn: true}},
		{"400", fakeprovider.Behavior{Status: 400}},
	}
}

// fallbackClass is docs/api.md §8's fallback class.
func fallbackClass(name string) bool {
	switch name {
	case "401", "403", "402", "429 insufficient_quota", "500", "529", "timeout", "connection dropped":
		return true
	}
	return false
}

// expect is the answer docs/api.md §8 requires for one case.
type expect struct {
	status        int
	route         string
	fallback      bool // X-Byok-Fallback present
	userCalls     int  // chat calls made with the user's key
	internalCalls int
	code          string // error.code when not passed through
}

// TestRoutingTable: all three modes × eligibility × every failure class,
// through the dev server with a plain HTTP client, counting upstream calls
// per key on the fake provider. Run for an OpenAI and an Anthropic model.
func TestRoutingTable(t *testing.T) {
	e := newEnv(t, nil)
	n := 0
	for _, model := range []string{"gpt-4o-mini", "claude-3-5-haiku-20241022"} {
		prov, internal := "openai", internalOpenAIKey
		if strings.HasPrefix(model, "claude") {
			prov, internal = "anthropic", internalAnthropicKey
		}
		for _, mode := range []string{"byok_first", "credit_first", "byok_only"} {
			e.setMode(mode)
			for _, eligible := range []bool{true, false} {
				for _, bal := range []int64{0, 1_000_000} {
					for _, f := range failures() {
						if !eligible && f.name != "success" {
							continue // the user's key is not used at all
						}
						n++
						user := fmt.Sprintf("u%d", n)
						name := fmt.Sprintf("%s/%s/eligible=%v/balance=%d/%s", model, mode, eligible, bal, f.name)
						e.setTier(user, "premium")
						if bal > 0 {
							e.grant(user, bal)
						}
						key := openAIKey(t)
						if prov == "anthropic" {
							key = anthropicKey(t)
						}
						if eligible {
							e.saveKey(user, prov, key)
						}
						e.fake.SetKey(key, f.b)
						want := expectFor(mode, eligible, bal > 0, f.name, prov)
						userBefore, intBefore := e.fake.Calls(key), e.fake.Calls(internal)
						r := e.do("POST", "/v1/chat/completions", e.token(user, ""), map[string]any{
							"model": model, "messages": []map[string]string{{"role": "user", "content": "hello"}},
						})
						got := expect{status: r.Status, route: r.Header.Get("X-Byok-Route"), fallback: r.Header.Get("X-Byok-Fallback") != "",
							userCalls: e.fake.Calls(key) - userBefore, internalCalls: e.fake.Calls(internal) - intBefore}
						if want.code != "" {
							got.code = r.errCode(t)
						}
						if got != want {
							t.Errorf("%s:\n got  %+v\n want %+v\n body %s", name, got, want, r.Body)
							continue
						}
						if r.Status == 200 && r.json(t)["object"] != "chat.completion" {
							t.Errorf("%s: not a chat completion: %s", name, r.Body)
						}
						if f.name == "429 rate limit" && want.status == 429 && r.Header.Get("Retry-After") != "7" {
							t.Errorf("%s: Retry-After %q, want the provider's 7", name, r.Header.Get("Retry-After"))
						}
						if (f.name == "401" || f.name == "403") && want.userCalls == 1 {
							if st := keysByProvider(t, e.do("GET", "/v1/keys", e.token(user, ""), nil))[prov]["status"]; st != "invalid" {
								t.Errorf("%s: key status %v after a %s on use, want invalid", name, st, f.name)
							}
						}
					}
				}
			}
		}
	}
}

func expectFor(mode string, eligible, credits bool, fail, prov string) expect {
	ok := expect{status: 200, route: "credits", internalCalls: 1}
	switch mode {
	case "byok_only":
		if !eligible {
			return expect{status: 403, route: "byok", code: "byok_required"}
		}
		return byokAsIs(fail, prov)
	case "credit_first":
		if credits {
			return ok
		}
		if !eligible {
			return expect{status: 402, route: "credits", code: "payment_required"}
		}
		if fallbackClass(fail) {
			return expect{status: 402, route: "byok", userCalls: 1, code: "payment_required"}
		}
		return byokAsIs(fail, prov)
	default: // byok_first
		if !eligible {
			if credits {
				return ok
			}
			return expect{status: 402, route: "credits", code: "payment_required"}
		}
		if fallbackClass(fail) {
			if credits {
				return expect{status: 200, route: "credits", fallback: true, userCalls: 1, internalCalls: 1}
			}
			return expect{status: 402, route: "byok", userCalls: 1, code: "payment_required"}
		}
		return byokAsIs(fail, prov)
	}
}

// byokAsIs is a BYOK attempt whose answer is returned as it is.
func byokAsIs(fail, prov string) expect {
	e := expect{route: "byok", userCalls: 1}
	switch fail {
	case "success":
		e.status = 200
	case "429 rate limit":
		e.status, e.code = 429, "provider_rate_limited"
	case "timeout", "connection dropped":
		e.status, e.code = 502, "provider_error"
	case "429 insufficient_quota":
		e.status = 429
	case "529":
		e.status = 529
	default:
		fmt.Sscanf(fail, "%d", &e.status)
	}
	return e
}
