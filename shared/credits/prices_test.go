package credits

import (
	"math"
	"testing"
)

func TestPrices(t *testing.T) {
	p := DefaultPrices()
	if p.Version == "" {
		t.Fatal("price table has no version")
	}
	for _, c := range []struct {
		model   string
		in, out int64 // credits per 1K
		known   bool
	}{
		{"gpt-4o", 250, 1000, true},
		{"gpt-4o-2024-08-06", 250, 1000, true},
		{"gpt-4o-mini", 15, 60, true},
		{"gpt-4o-mini-2024-07-18", 15, 60, true},
		{"openai/GPT-4.1-mini", 40, 160, true},
		{"gpt-4.1", 200, 800, true},
		{"o3-mini", 110, 440, true},
		{"o4-mini-2025-04-16", 110, 440, true},
		{"text-embedding-3-small", 2, 0, true},
		{"claude-3-5-sonnet-20241022", 300, 1500, true},
		{"claude-3-5-haiku-latest", 80, 400, true},
		{"claude-3-haiku-20240307", 25, 125, true},
		{"claude-opus-4-1-20250805", 1500, 7500, true},
		{"claude-opus-4-5", 500, 2500, true},
		{"claude-sonnet-4-5", 300, 1500, true},
		{"claude-haiku-4-5", 100, 500, true},
		{"some-new-model", 1500, 7500, false},
	} {
		pr, known := p.Lookup(c.model)
		if pr.InputPer1K != c.in || pr.OutputPer1K != c.out || known != c.known {
			t.Errorf("%s: %+v known=%v, want %d/%d known=%v", c.model, pr, known, c.in, c.out, c.known)
		}
	}
	// 1234 in × 15/1K + 10 out × 60/1K = 18.51 + 0.6 → 20 (ceil).
	if got := p.Credits("gpt-4o-mini", 1234, 10); got != 20 {
		t.Errorf("Credits = %d, want 20", got)
	}
	if got := p.Credits("text-embedding-3-small", 1, 0); got != 1 {
		t.Errorf("minimum Credits = %d, want 1", got)
	}
	if got := p.CostUSD("gpt-4o", 1_000_000, 1_000_000); math.Abs(got-12.5) > 1e-9 {
		t.Errorf("CostUSD = %v, want 12.5", got)
	}
	if got := p.Credits("gpt-4o", math.MaxInt64, math.MaxInt64); got <= 0 {
		t.Errorf("Credits overflowed: %d", got)
	}
	if in, out := EstimateTokens(3001, 0); in != 1001 || out != DefaultMaxOutputTokens {
		t.Errorf("EstimateTokens = %d, %d", in, out)
	}
	if _, out := EstimateTokens(10, 256); out != 256 {
		t.Errorf("EstimateTokens out = %d", out)
	}
}

// The providers added in table version 2026-12-01 are priced, longest
// prefix first, and never by the conservative default.
func TestProviderPrices(t *testing.T) {
	p := DefaultPrices()
	for m, want := range map[string]float64{
		"gemini-2.5-flash": 0.30, "gemini-2.5-flash-lite-preview": 0.10, "mistral-large-latest": 2.00,
		"ministral-8b-latest": 0.10, "codestral-2501": 0.30, "command-a-03-2025": 2.50, "command-r7b-12-2024": 0.0375,
		"google/gemini-2.0-flash": 0.10, "embed-v4.0": 0.12,
	} {
		got, ok := p.Lookup(m)
		if !ok || got.InputUSDPer1M != want {
			t.Errorf("Lookup(%s) = %+v, %v; want input $%v/1M", m, got, ok, want)
		}
	}
}
