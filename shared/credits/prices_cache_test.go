package credits

import "testing"

func TestCreditsWithCache(t *testing.T) {
	p := DefaultPrices()
	// No cache: the same as Credits.
	if a, b := p.CreditsWithCache("claude-3-5-sonnet-20241022", 10_000, 0, 1000), p.Credits("claude-3-5-sonnet-20241022", 10_000, 1000); a != b {
		t.Fatalf("no cache: %d != %d", a, b)
	}
	// Anthropic cache reads at 10 % of input.
	full := p.Credits("claude-3-5-sonnet-20241022", 10_000, 0)
	cached := p.CreditsWithCache("claude-3-5-sonnet-20241022", 10_000, 10_000, 0)
	if cached*10 > full+10 || cached*10 < full-10 {
		t.Fatalf("claude fully cached: %d credits, want about a tenth of %d", cached, full)
	}
	// OpenAI cached input at 50 %.
	full = p.Credits("gpt-4o", 10_000, 0)
	cached = p.CreditsWithCache("gpt-4o", 10_000, 10_000, 0)
	if cached*2 > full+2 || cached*2 < full-2 {
		t.Fatalf("gpt-4o fully cached: %d credits, want about half of %d", cached, full)
	}
	// Cached input at a quarter of the input price: Gemini (context caching)
	// and the OpenAI families that publish a 75 % discount (gpt-4.1, o3,
	// o4-mini); gpt-4o, o1 and o3-mini stay at half.
	for _, m := range []string{"gemini-2.5-flash", "gemini-2.5-pro-preview-06-05", "gpt-4.1-mini", "o3", "o4-mini-2025-04-16", "google/gemini-2.0-flash"} {
		full = p.Credits(m, 100_000, 0)
		cached = p.CreditsWithCache(m, 100_000, 100_000, 0)
		if cached*4 > full+4 || cached*4 < full-4 {
			t.Errorf("%s fully cached: %d credits, want about a quarter of %d", m, cached, full)
		}
	}
	for _, m := range []string{"o1", "o3-mini", "gpt-4o-mini"} {
		full = p.Credits(m, 100_000, 0)
		cached = p.CreditsWithCache(m, 100_000, 100_000, 0)
		if cached*2 > full+2 || cached*2 < full-2 {
			t.Errorf("%s fully cached: %d credits, want about half of %d", m, cached, full)
		}
	}
	// More cached than input is clamped; never below 1.
	if got := p.CreditsWithCache("gpt-4o", 100, 1_000, 0); got != p.CreditsWithCache("gpt-4o", 100, 100, 0) || got < 1 {
		t.Fatalf("clamp: %d", got)
	}
}
