package credits

import (
	"math"
	"strings"
)

// CreditsPerUSD fixes the value of a credit: 100,000 credits = 1 USD, so
// one credit is a thousandth of a cent and every public list price below is
// a whole number of credits per 1K tokens.
const CreditsPerUSD = 100_000

// DefaultMaxOutputTokens is the output cap assumed when a request sets no
// max_tokens.
const DefaultMaxOutputTokens = 4096

// Price is the price of one model.
type Price struct {
	// InputPer1K and OutputPer1K are credits per 1K tokens.
	InputPer1K  int64 `json:"input_per_1k"`
	OutputPer1K int64 `json:"output_per_1k"`
	// InputUSDPer1M and OutputUSDPer1M are public list prices in USD per
	// 1M tokens, for cost estimates in usage rows.
	InputUSDPer1M  float64 `json:"input_usd_per_1m"`
	OutputUSDPer1M float64 `json:"output_usd_per_1m"`
}

// usd builds a Price from USD per 1M tokens (credits derived from them).
func usd(in, out float64) Price {
	return Price{
		InputPer1K:     int64(math.Round(in * CreditsPerUSD / 1000)),
		OutputPer1K:    int64(math.Round(out * CreditsPerUSD / 1000)),
		InputUSDPer1M:  in,
		OutputUSDPer1M: out,
	}
}

// PriceTable is a versioned price list. Models is keyed by model name
// prefix; the longest matching prefix wins and Default prices the rest.
type PriceTable struct {
	Version string           `json:"version"`
	Models  map[string]Price `json:"models"`
	Default Price            `json:"default"`
}

// DefaultPrices returns the built-in table (public list prices, standard
// tier, no caching or batch discounts). Unknown models are priced like the
// most expensive mainstream model (claude-3-opus), so an unknown model is
// never under-reserved.
//
// whisper-1 is priced per second of audio: pass seconds as inTok
// ($0.006/minute = $100 per 1M seconds).
func DefaultPrices() PriceTable {
	t := PriceTable{
		Version: "2026-12-02", // 2026-12-01 (the Google, Mistral and Cohere rows of providerPrices) with cached-input shares per family
		Models: map[string]Price{
			// OpenAI
			"gpt-4o":                 usd(2.50, 10.00),
			"gpt-4o-mini":            usd(0.15, 0.60),
			"chatgpt-4o":             usd(5.00, 15.00),
			"gpt-4.1":                usd(2.00, 8.00),
			"gpt-4.1-mini":           usd(0.40, 1.60),
			"gpt-4.1-nano":           usd(0.10, 0.40),
			"gpt-4-turbo":            usd(10.00, 30.00),
			"gpt-4":                  usd(30.00, 60.00),
			"gpt-3.5-turbo":          usd(0.50, 1.50),
			"o1":                     usd(15.00, 60.00),
			"o1-mini":                usd(1.10, 4.40),
			"o1-pro":                 usd(150.00, 600.00),
			"o3":                     usd(2.00, 8.00),
			"o3-mini":                usd(1.10, 4.40),
			"o3-pro":                 usd(20.00, 80.00),
			"o4-mini":                usd(1.10, 4.40),
			"text-embedding-3-small": usd(0.02, 0),
			"text-embedding-3-large": usd(0.13, 0),
			"text-embedding-ada-002": usd(0.10, 0),
			"whisper-1":              usd(100.00, 0),
			// Anthropic
			"claude-3-5-sonnet": usd(3.00, 15.00),
			"claude-3-7-sonnet": usd(3.00, 15.00),
			"claude-3-5-haiku":  usd(0.80, 4.00),
			"claude-3-opus":     usd(15.00, 75.00),
			"claude-3-sonnet":   usd(3.00, 15.00),
			"claude-3-haiku":    usd(0.25, 1.25),
			"claude-sonnet-4":   usd(3.00, 15.00),
			"claude-opus-4":     usd(15.00, 75.00),
			"claude-opus-4-5":   usd(5.00, 25.00),
			"claude-haiku-4":    usd(1.00, 5.00),
		},
		Default: usd(15.00, 75.00),
	}
	for m, pr := range providerPrices() {
		t.Models[m] = pr
	}
	return t
}

// providerPrices are the list prices (USD per 1M tokens, standard/paid tier,
// prompts up to 200K tokens, no batch or cache discounts) of the providers
// added in table version 2026-12-01, as published on ai.google.dev/pricing,
// mistral.ai/pricing and cohere.com/pricing when this table was made.
// Azure OpenAI deployments are priced by the OpenAI rows above (a deployment
// named after its model), otherwise by Default.
func providerPrices() map[string]Price {
	return map[string]Price{
		// Google Gemini
		"gemini-2.5-pro":        usd(1.25, 10.00),
		"gemini-2.5-flash":      usd(0.30, 2.50),
		"gemini-2.5-flash-lite": usd(0.10, 0.40),
		"gemini-2.0-flash":      usd(0.10, 0.40),
		"gemini-2.0-flash-lite": usd(0.075, 0.30),
		"gemini-1.5-pro":        usd(1.25, 5.00),
		"gemini-1.5-flash":      usd(0.075, 0.30),
		"gemini-embedding-001":  usd(0.15, 0),
		"text-embedding-004":    usd(0, 0),
		// Mistral
		"mistral-large":     usd(2.00, 6.00),
		"mistral-medium":    usd(0.40, 2.00),
		"mistral-small":     usd(0.10, 0.30),
		"ministral-8b":      usd(0.10, 0.10),
		"ministral-3b":      usd(0.04, 0.04),
		"codestral":         usd(0.30, 0.90),
		"open-mistral-nemo": usd(0.15, 0.15),
		"pixtral-large":     usd(2.00, 6.00),
		"pixtral-12b":       usd(0.15, 0.15),
		"magistral-medium":  usd(2.00, 5.00),
		"magistral-small":   usd(0.50, 1.50),
		"devstral-small":    usd(0.10, 0.30),
		"devstral-medium":   usd(0.40, 2.00),
		"mistral-embed":     usd(0.10, 0),
		// Cohere
		"command-a":               usd(2.50, 10.00),
		"command-r-plus":          usd(2.50, 10.00),
		"command-r":               usd(0.15, 0.60),
		"command-r7b":             usd(0.0375, 0.15),
		"embed-v4.0":              usd(0.12, 0),
		"embed-english-v3.0":      usd(0.10, 0),
		"embed-multilingual-v3.0": usd(0.10, 0),
	}
}

// Lookup returns the price of model (matched case-insensitively by longest
// prefix, after any "provider/" prefix) and whether the table knows it.
func (p PriceTable) Lookup(model string) (Price, bool) {
	m := strings.ToLower(strings.TrimSpace(model))
	if i := strings.LastIndexByte(m, '/'); i >= 0 {
		m = m[i+1:]
	}
	best, found := "", false
	for prefix := range p.Models {
		if strings.HasPrefix(m, prefix) && len(prefix) > len(best) {
			best, found = prefix, true
		}
	}
	if !found {
		return p.Default, false
	}
	return p.Models[best], true
}

// Credits returns the credits inTok input and outTok output tokens of model
// cost: rounded up, at least 1.
func (p PriceTable) Credits(model string, inTok, outTok int64) int64 {
	pr, _ := p.Lookup(model)
	inTok, outTok = max(inTok, 0), max(outTok, 0)
	milli := satAdd(satMul(inTok, pr.InputPer1K), satMul(outTok, pr.OutputPer1K))
	c := milli / 1000
	if milli%1000 != 0 {
		c++
	}
	return max(c, 1)
}

// cachedInputShares are the shares of the input price that cached input is
// billed at, by model family (public list prices, docs/api.md §9): Anthropic
// cache reads 10 %; Gemini context caching and OpenAI's gpt-4.1, o3 and
// o4-mini 25 %; every other model 50 % (OpenAI's gpt-4o, o1, o3-mini).
var cachedInputShares = [...]struct {
	family string
	share  float64
}{
	{"claude", 0.1}, {"gemini", 0.25}, {"gpt-4.1", 0.25}, {"o3", 0.25}, {"o3-mini", 0.5}, {"o4-mini", 0.25},
}

// cachedInputShare returns model's share: the longest family it equals or
// extends at a '-' boundary wins, else 50 %.
func cachedInputShare(model string) float64 {
	m := strings.ToLower(model)
	if i := strings.LastIndexByte(m, '/'); i >= 0 {
		m = m[i+1:]
	}
	share, best := 0.5, 0
	for _, f := range cachedInputShares {
		if len(f.family) > best && (m == f.family || strings.HasPrefix(m, f.family+"-")) {
			share, best = f.share, len(f.family)
		}
	}
	return share
}

// CreditsWithCache is Credits where cacheRead of the inTok input tokens were
// served from the provider's prompt cache and are billed at the cached-input
// price. Rounded up, at least 1.
func (p PriceTable) CreditsWithCache(model string, inTok, cacheRead, outTok int64) int64 {
	pr, _ := p.Lookup(model)
	inTok, outTok = max(inTok, 0), max(outTok, 0)
	cacheRead = min(max(cacheRead, 0), inTok)
	cached := int64(math.Ceil(float64(cacheRead) * float64(pr.InputPer1K) * cachedInputShare(model)))
	milli := satAdd(satAdd(satMul(inTok-cacheRead, pr.InputPer1K), cached), satMul(outTok, pr.OutputPer1K))
	c := milli / 1000
	if milli%1000 != 0 {
		c++
	}
	return max(c, 1)
}

// CostUSD returns the estimated list-price cost of the tokens in USD.
func (p PriceTable) CostUSD(model string, inTok, outTok int64) float64 {
	pr, _ := p.Lookup(model)
	return (float64(max(inTok, 0))*pr.InputUSDPer1M + float64(max(outTok, 0))*pr.OutputUSDPer1M) / 1e6
}

// EstimateTokens is the conservative estimate a reservation is made from:
// about one input token per 3 bytes of request body (rounded up), and
// maxTokens output tokens, or DefaultMaxOutputTokens when maxTokens is 0.
func EstimateTokens(bodyLen int, maxTokens int64) (in, out int64) {
	in = (int64(max(bodyLen, 0)) + 2) / 3
	out = maxTokens
	if out <= 0 {
		out = DefaultMaxOutputTokens
	}
	return in, out
}

func satMul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
