package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/fakeprovider"
)

// screenshotDir is set by make screenshots (docs/screenshots); the journey
// runs the same with or without it.
var screenshotDir = flag.String("screenshots", "", "write the settings page's screenshots (PNG) into this directory")

// chromiumPath finds Debian's chromium. Missing is a failure, never a skip:
// .ci/run installs it (apt-get install -y chromium).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: the settings page's browser tests need Debian's chromium (apt-get install -y chromium; .ci/run installs it)")
	return ""
}

// pageRequest is one request the page made, as the browser sent it.
type pageRequest struct {
	Method, URL, Authorization, IdempotencyKey string
}

// browserLog collects what the browser did: requests, script errors.
type browserLog struct {
	mu       sync.Mutex
	requests []pageRequest
	errors   []string
}

func header(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return fmt.Sprint(v)
		}
	}
	return ""
}

func (b *browserLog) on(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, pageRequest{Method: ev.Request.Method, URL: ev.Request.URL, // what is sent: never the fragment
			Authorization: header(ev.Request.Headers, "Authorization"), IdempotencyKey: header(ev.Request.Headers, "Idempotency-Key")})
	case *runtime.EventExceptionThrown:
		msg := ev.ExceptionDetails.Text
		if ev.ExceptionDetails.Exception != nil {
			msg += " " + ev.ExceptionDetails.Exception.Description
		}
		b.errors = append(b.errors, "uncaught: "+msg)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			b.errors = append(b.errors, "console.error: "+strings.Join(parts, " "))
		}
	}
}

func (b *browserLog) all() []pageRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]pageRequest(nil), b.requests...)
}

// made returns the requests with this method whose path (and query) starts
// with prefix.
func (b *browserLog) made(method, prefix string) []pageRequest {
	var out []pageRequest
	for _, r := range b.all() {
		u, err := url.Parse(r.URL)
		if err == nil && r.Method == method && strings.HasPrefix(u.RequestURI(), prefix) {
			out = append(out, r)
		}
	}
	return out
}

type tab struct {
	t   *testing.T
	ctx context.Context
	log *browserLog
}

// newTab starts a headless chromium with its own profile.
func newTab(t *testing.T) *tab {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // containers often have a tiny /dev/shm
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	log := &browserLog{}
	ctx, cancelCtx := chromedp.NewContext(alloc, chromedp.WithListener(log.on))
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	tb := &tab{t: t, ctx: ctx, log: log}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// Record CSP violations: the page must need no inline script or style.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`,
	}); err != nil {
		t.Fatal(err)
	}
	return tb
}

func (b *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

func evalAs[T any](b *tab, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it is true.
func (b *tab) waitFor(what, expr string) {
	b.t.Helper()
	var err error
	for range 3 { // a reload during the poll destroys its execution context
		if _, err = chromedp.Run(b.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second))); err == nil || !strings.Contains(err.Error(), "context") {
			break
		}
	}
	if err != nil {
		b.t.Fatalf("waiting for %s (%s): %v\npage text: %s", what, expr, err, evalAs[string](b, `document.body.innerText`))
	}
}

// open navigates to u and waits until the page's script has finished.
func (b *tab) open(u string) {
	b.t.Helper()
	if strings.Contains(u, "#") { // a fresh load, not a same-document fragment change
		b.do(chromedp.Navigate("about:blank"))
	}
	b.do(chromedp.Navigate(u))
	b.waitFor("the page to load", `document.body && document.body.dataset.ready === 'true'`)
}

func (b *tab) text(sel string) string {
	b.t.Helper()
	return evalAs[string](b, fmt.Sprintf(`(document.querySelector(%q) || {innerText: ''}).innerText`, sel))
}

func (b *tab) shot(name string) {
	b.t.Helper()
	if *screenshotDir == "" {
		return
	}
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.MkdirAll(*screenshotDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*screenshotDir, name+".png"), buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// checkClean fails on script errors and CSP violations so far.
func (b *tab) checkClean() {
	b.t.Helper()
	b.log.mu.Lock()
	errs := append([]string(nil), b.log.errors...)
	b.log.mu.Unlock()
	if len(errs) > 0 {
		b.t.Fatalf("page script errors: %v", errs)
	}
	if v := evalAs[[]string](b, `window.__csp || []`); len(v) > 0 {
		b.t.Fatalf("CSP violations: %v", v)
	}
}

// assertSecret fails if any secret (a provider key, the token) is in the
// DOM, an input's value, web storage (keys only: the token lives in
// sessionStorage by design), the address bar or any URL the page requested.
func (b *tab) assertSecret(token string, keys ...string) {
	b.t.Helper()
	type snapshot struct {
		HTML, Href, Local, Session string
		Values                     []string
	}
	s := evalAs[snapshot](b, `({HTML: document.documentElement.outerHTML, Href: location.href,
		Local: JSON.stringify({...localStorage}), Session: JSON.stringify({...sessionStorage}),
		Values: [...document.querySelectorAll('input, textarea, select')].map((i) => i.value)})`)
	for _, k := range keys {
		tail := k[len(k)-16:] // the random part; the hint shows only the last 7
		for what, text := range map[string]string{"DOM": s.HTML, "address bar": s.Href, "localStorage": s.Local, "sessionStorage": s.Session, "input values": strings.Join(s.Values, "\n")} {
			if strings.Contains(text, tail) {
				b.t.Fatalf("a provider key reached the %s", what)
			}
		}
	}
	if strings.Contains(s.Href, token) || strings.Contains(s.HTML, token) || strings.Contains(s.Local, token) {
		b.t.Fatal("the token is in the address bar, the DOM or localStorage")
	}
	for _, r := range b.log.all() {
		if strings.Contains(r.URL, token) {
			b.t.Fatalf("the token was sent in a URL: %s %s", r.Method, r.URL[:min(len(r.URL), 60)])
		}
		for _, k := range keys {
			if strings.Contains(r.URL, k[len(k)-16:]) {
				b.t.Fatalf("a provider key was sent in a URL: %s", r.Method)
			}
		}
		if u, err := url.Parse(r.URL); err == nil && strings.HasPrefix(u.Path, "/v1/") && r.Authorization != "Bearer "+token && !strings.HasPrefix(r.Authorization, "Bearer ey") {
			b.t.Fatalf("%s %s went without the bearer token in Authorization", r.Method, u.Path)
		}
	}
}

// contrastJS lists visible text elements whose colour against their
// (nearest opaque) background is below WCAG AA's 4.5:1.
const contrastJS = `(() => {
  const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const bg = (el) => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor); if (c.length === 3 || c[3] > 0.9) return c.slice(0, 3); } return [255, 255, 255]; };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    if (!el.offsetParent || ![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    if (el.closest('svg') || el.disabled) continue;
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) out.push(el.tagName + '.' + el.className + ' ' + ratio.toFixed(2) + ' "' + el.textContent.trim().slice(0, 30) + '"');
  }
  return out;
})()`

// waitUsage polls GET /v1/usage until user has byok and credits requests.
func (e *testEnv) waitUsage(user string, byok, credits int) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := e.do("GET", "/v1/usage?days=30", e.token(user, ""), nil).json(e.t)
		b := m["byok"].(map[string]any)["requests"].(float64)
		c := m["credits"].(map[string]any)["requests"].(float64)
		if int(b) >= byok && int(c) >= credits {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("usage shows %v byok and %v credits requests, want %d and %d", b, c, byok, credits)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSettingsPageJourney drives the API Keys page in a real headless
// chromium against the dev server's handlers (moto and the fake provider):
// keys saved (valid, invalid, badly formatted), tested and removed; the
// banner in each routing state; usage after requests; the export download;
// the admin page; errors in words; and no secret anywhere it must not be.
func TestSettingsPageJourney(t *testing.T) {
	e := newEnv(t, nil)
	b := newTab(t)
	alice := e.token("alice", "")
	admin := e.token("root", "admin")
	e.setTier("alice", "premium")
	good := openAIKey(t)
	bad := anthropicKey(t) // unknown to the fake: 401 → invalid/unauthorized
	e.fake.SetKey(good, fakeprovider.OK())
	base := e.srv.URL
	const openaiSaveSel = `[data-provider="openai"] form.save button[type="submit"]`

	// Without a token the page says how to sign in and calls nothing.
	b.open(base + "/settings/")
	if got := b.text("#notice"); !strings.Contains(got, "not signed in") {
		t.Fatalf("notice without token = %q", got)
	}
	if n := len(b.log.made("GET", "/v1/")); n != 0 {
		t.Fatalf("the page called the API %d times without a token", n)
	}
	b.shot("01-signed-out")

	// The token moves from the fragment into sessionStorage; the fragment goes.
	b.open(base + "/settings/#token=" + alice)
	if href := evalAs[string](b, `location.href`); href != base+"/settings/" {
		t.Fatalf("address bar after load has %d characters, want %q (the fragment removed)", len(href), base+"/settings/")
	}
	if v := evalAs[string](b, `sessionStorage.getItem('byok.token')`); v != alice {
		t.Fatal("token not kept in sessionStorage")
	}
	b.waitFor("the cards", `document.querySelectorAll('#cards .card').length >= 2`)
	// A card per provider the API lists, in its order.
	var listed []string
	for _, k := range e.do("GET", "/v1/keys", alice, nil).json(t)["keys"].([]any) {
		listed = append(listed, k.(map[string]any)["provider"].(string))
	}
	if got := evalAs[[]string](b, `[...document.querySelectorAll('#cards .card')].map((c) => c.dataset.provider)`); strings.Join(got, ",") != strings.Join(listed, ",") {
		t.Fatalf("cards %v, want the API's providers %v", got, listed)
	}
	if got := b.text("#banner"); !strings.Contains(got, "Action Required") || !strings.Contains(got, "no credits") {
		t.Fatalf("banner with no key and no credits = %q", got)
	}
	if typ := evalAs[string](b, `document.querySelector('[data-provider="openai"] input[name="api_key"]').type`); typ != "password" {
		t.Fatalf("key input type = %q, want password", typ)
	}
	// Every input has a label.
	if unlabelled := evalAs[[]string](b, `[...document.querySelectorAll('input, select')].filter((i) => !(i.labels && i.labels.length) && !i.getAttribute('aria-label')).map((i) => i.name)`); len(unlabelled) > 0 {
		t.Fatalf("inputs without a label: %v", unlabelled)
	}
	// Keyboard: the first Tab reaches the skip link; a focused control
	// shows a visible outline; text has AA contrast (4.5:1).
	b.do(chromedp.KeyEvent("\t"))
	if got := evalAs[string](b, `document.activeElement.className + ' ' + getComputedStyle(document.activeElement).left`); !strings.HasPrefix(got, "skip ") || strings.HasPrefix(got, "skip -") {
		t.Fatalf("first Tab focuses %q, want the visible skip link", got)
	}
	b.do(chromedp.Focus(chromedp.CSS(openaiSaveSel)), chromedp.KeyEvent("\t"), chromedp.KeyEvent("\t", chromedp.KeyModifiers(chromedp.ModifierShift)))
	if got := evalAs[string](b, `document.activeElement.matches(':focus-visible') ? getComputedStyle(document.activeElement).outlineStyle : 'not focus-visible'`); got != "solid" {
		t.Fatalf("keyboard focus outline = %q, want solid", got)
	}
	if low := evalAs[[]string](b, contrastJS); len(low) > 0 {
		t.Fatalf("text below 4.5:1 contrast: %v", low)
	}
	// Webhooks show only when the server has them.
	whHidden := evalAs[bool](b, `document.getElementById('webhooks').hidden`)
	if has := e.do("GET", "/v1/webhooks", alice, nil).Status != 404; has == whHidden {
		t.Fatalf("webhooks section hidden=%v, but the API answers (available=%v)", whHidden, has)
	}
	b.shot("02-no-keys-action-required")

	// A key of the wrong format: the API's message next to the key field.
	openaiInput := `[data-provider="openai"] input[name="api_key"]`
	openaiSave := chromedp.CSS(openaiSaveSel)
	b.do(chromedp.SendKeys(chromedp.CSS(openaiInput), "not-a-key-at-all"), chromedp.Click(openaiSave))
	b.waitFor("the format error", `document.querySelector('[data-provider="openai"] form.save .field-error:not([hidden])') !== null`)
	errText := b.text(`[data-provider="openai"] form.save .field-error:not([hidden])`)
	if !strings.Contains(strings.ToLower(errText), "key") {
		t.Fatalf("format error = %q", errText)
	}
	if inv := evalAs[string](b, `document.querySelector('`+openaiInput+`').getAttribute('aria-invalid')`); inv != "true" {
		t.Fatalf("key field aria-invalid = %q", inv)
	}
	if n := len(b.log.made("PUT", "/v1/keys/openai")); n != 1 {
		t.Fatalf("PUT /v1/keys/openai made %d times, want 1", n)
	}
	b.shot("03-key-format-error")

	// A valid key: Valid chip, hint only, the field cleared, banner BYOK.
	b.do(chromedp.SendKeys(chromedp.CSS(openaiInput), good), chromedp.Click(openaiSave))
	b.waitFor("the Valid chip", `document.querySelector('[data-provider="openai"] .chip[data-status="valid"]') !== null`)
	if v := evalAs[string](b, `document.querySelector('`+openaiInput+`').value`); v != "" {
		t.Fatal("key field not cleared after saving")
	}
	if hint := b.text(`[data-provider="openai"] .hint`); hint != "sk-..."+good[len(good)-7:] {
		t.Fatalf("hint = %q", hint)
	}
	if got := b.text("#banner"); !strings.Contains(got, "Using Your API Keys (BYOK)") {
		t.Fatalf("banner with a valid key = %q", got)
	}
	// An invalid key: red chip and the reason in words.
	b.do(chromedp.SendKeys(chromedp.CSS(`[data-provider="anthropic"] input[name="api_key"]`), bad),
		chromedp.Click(chromedp.CSS(`[data-provider="anthropic"] form.save button[type="submit"]`)))
	b.waitFor("the Invalid chip", `document.querySelector('[data-provider="anthropic"] .chip[data-status="invalid"]') !== null`)
	if why := b.text(`[data-provider="anthropic"] .reason`); !strings.Contains(why, "rejected this key") {
		t.Fatalf("invalid reason = %q", why)
	}
	b.assertSecret(alice, good, bad)
	b.shot("04-valid-and-invalid-keys")

	// Test: the page calls the test route and shows the outcome.
	b.do(chromedp.Click(chromedp.CSS(`[data-provider="openai"] button.test`)))
	b.waitFor("the test result", `document.querySelector('[data-provider="openai"] .card-status').innerText.includes('Test finished: Valid')`)
	// The provider's test route, or the one key's when the card lists entries.
	tests := 0
	for _, r := range b.log.made("POST", "/v1/keys/openai/") {
		if strings.HasSuffix(r.URL, "/test") {
			tests++
		}
	}
	if n := tests; n != 1 {
		t.Fatalf("POST /v1/keys/openai/.../test made %d times", n)
	}

	// Usage after requests: three BYOK (openai), two on credits (anthropic,
	// whose key is invalid).
	e.grant("alice", 1_000_000)
	for range 3 {
		if r := e.do("POST", "/v1/chat/completions", alice, map[string]any{"model": "gpt-4o-mini", "messages": []any{map[string]any{"role": "user", "content": "hello"}}}); r.Status != 200 {
			t.Fatalf("byok chat: %d %s", r.Status, r.Body)
		}
	}
	for range 2 {
		if r := e.do("POST", "/v1/chat/completions", alice, map[string]any{"model": "claude-3-5-sonnet-latest", "max_tokens": 64, "messages": []any{map[string]any{"role": "user", "content": "hello"}}}); r.Status != 200 {
			t.Fatalf("credits chat: %d %s", r.Status, r.Body)
		}
	}
	e.waitUsage("alice", 3, 2)
	b.open(base + "/settings/")
	b.waitFor("the chart", `document.querySelector('#usage-chart') !== null`)
	today := time.Now().UTC().Format("2006-01-02")
	if got := evalAs[[]int](b, fmt.Sprintf(`(() => { const g = document.querySelector('#usage-chart g.day[data-date=%q]'); return g ? [Number(g.dataset.byok), Number(g.dataset.credits), g.querySelectorAll('rect').length] : []; })()`, today)); len(got) != 3 || got[0] != 3 || got[1] != 2 || got[2] != 2 {
		t.Fatalf("today's bar (byok, credits, rects) = %v, want [3 2 2]", got)
	}
	if got := b.text(`#usage-totals tr[data-route="byok"]`); !strings.Contains(got, "3") {
		t.Fatalf("BYOK totals row = %q", got)
	}
	if got := b.text(`#usage-providers`); !strings.Contains(got, "OpenAI") || !strings.Contains(got, "Anthropic") {
		t.Fatalf("per-provider table = %q", got)
	}
	if n := evalAs[int](b, `document.querySelectorAll('#usage-chart g.day').length`); n < 30 {
		t.Fatalf("chart has %d days, want 30 or 31", n)
	}
	b.shot("05-usage")

	// Export: fetched with the header, saved from a Blob.
	dl := t.TempDir()
	if _, err := chromedp.CallBrowser(b.ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl,
	}); err != nil {
		t.Fatal(err)
	}
	b.do(chromedp.Click(chromedp.ID("export-csv")))
	b.waitFor("the export message", `document.getElementById('export-status').innerText.startsWith('Downloaded')`)
	var csv []byte
	for deadline := time.Now().Add(15 * time.Second); ; {
		files, _ := filepath.Glob(filepath.Join(dl, "*.csv"))
		if len(files) == 1 {
			csv, _ = os.ReadFile(files[0])
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CSV downloaded into %s", dl)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if lines := strings.Split(strings.TrimSpace(string(csv)), "\n"); len(lines) != 1+5 || !strings.Contains(lines[0], "request_id") {
		t.Fatalf("downloaded CSV has %d lines (want header + 5): %q", len(lines), lines[0])
	}
	if reqs := b.log.made("GET", "/v1/usage/export?format=csv"); len(reqs) != 1 || reqs[0].Authorization != "Bearer "+alice {
		t.Fatalf("export requests: %+v", reqs)
	}

	// Remove, with a confirmation: cancel keeps the key, confirm deletes it.
	b.do(chromedp.Click(chromedp.CSS(`[data-provider="anthropic"] button.remove`)))
	b.waitFor("the dialog", `document.getElementById('confirm').open`)
	b.shot("06-remove-confirm")
	b.do(chromedp.Click(chromedp.ID("confirm-cancel")))
	if n := len(b.log.made("DELETE", "/v1/keys/anthropic")); n != 0 {
		t.Fatal("cancel still deleted the key")
	}
	b.do(chromedp.Click(chromedp.CSS(`[data-provider="anthropic"] button.remove`)))
	b.waitFor("the dialog", `document.getElementById('confirm').open`)
	b.do(chromedp.Click(chromedp.ID("confirm-ok")))
	b.waitFor("the removed card", `document.querySelector('[data-provider="anthropic"] .chip-none') !== null`)
	if n := len(b.log.made("DELETE", "/v1/keys/anthropic")); n != 1 {
		t.Fatalf("DELETE /v1/keys/anthropic made %d times", n)
	}
	if e.keyItem("alice", "anthropic") != nil {
		t.Fatal("the anthropic key is still stored")
	}
	b.assertSecret(alice, good, bad)
	b.checkClean()

	// Admin page: change the routing mode; errors next to their fields;
	// grant credits with a fresh Idempotency-Key per click.
	b.open(base + "/settings/admin/#token=" + admin)
	b.waitFor("the settings form", `document.querySelector('#settings-form select[name="routing_mode"]') !== null`)
	b.do(chromedp.SetValue(chromedp.CSS(`#settings-form select[name="routing_mode"]`), "credit_first"),
		chromedp.Click(chromedp.CSS(`#settings-form button[type="submit"]`)))
	b.waitFor("saved settings", `(document.getElementById('settings-status') || {innerText: ''}).innerText.includes('Credits first')`)
	if got := e.do("GET", "/v1/admin/settings", admin, nil).json(t)["routing_mode"]; got != "credit_first" {
		t.Fatalf("routing mode after the admin page saved = %v", got)
	}
	b.shot("07-admin-settings")
	b.do(chromedp.SendKeys(chromedp.ID("lookup-id"), "nobody"), chromedp.Click(chromedp.CSS(`#lookup-form button[type="submit"]`)))
	b.waitFor("the lookup error", `!document.getElementById('lookup-id-err').hidden`)
	if got := b.text("#lookup-id-err"); !strings.Contains(got, "no account") {
		t.Fatalf("lookup error = %q", got)
	}
	b.do(chromedp.SetValue(chromedp.ID("lookup-id"), "alice"), chromedp.Click(chromedp.CSS(`#lookup-form button[type="submit"]`)))
	b.waitFor("alice's account", `document.getElementById('user-balance') !== null`)
	before := e.balance("alice")
	b.do(chromedp.Click(chromedp.CSS(`#grant-form button[type="submit"]`)))
	b.waitFor("the amount error", `!document.getElementById('grant-amount-err').hidden`)
	for i := range 2 {
		b.do(chromedp.SendKeys(chromedp.ID("grant-amount"), "500"), chromedp.SendKeys(chromedp.ID("grant-reason"), "support"),
			chromedp.Click(chromedp.CSS(`#grant-form button[type="submit"]`)))
		b.waitFor("the grant", fmt.Sprintf(`document.getElementById('user-balance').innerText.replace(/,/g, '') === '%d'`, before+int64(500*(i+1))))
		evalAs[bool](b, `(document.getElementById("grant-reason").value = "") === ""`)
	}
	grants := b.log.made("POST", "/v1/admin/users/alice/credits")
	if len(grants) != 2 || grants[0].IdempotencyKey == "" || grants[0].IdempotencyKey == grants[1].IdempotencyKey {
		t.Fatalf("grant requests %+v: want two, each with its own Idempotency-Key", grants)
	}
	b.shot("08-admin-user")
	b.assertSecret(admin)
	b.checkClean()

	// The banner in each routing state, with the why.
	b.open(base + "/settings/#token=" + alice)
	if got := b.text("#banner"); !strings.Contains(got, "Using Internal Credits") || !strings.Contains(got, "credits first") {
		t.Fatalf("banner in credit_first with a balance = %q", got)
	}
	b.shot("09-banner-credits")
	if r := e.do("PUT", "/v1/admin/settings", admin, map[string]any{"routing_mode": "byok_first", "byok_enabled": false}); r.Status != 200 {
		t.Fatal(r.Status)
	}
	b.open(base + "/settings/")
	if got := b.text("#banner"); !strings.Contains(got, "Using Internal Credits") || !strings.Contains(got, "turned off") {
		t.Fatalf("banner with BYOK disabled = %q", got)
	}
	b.shot("10-banner-byok-disabled")
	if r := e.do("PUT", "/v1/admin/settings", admin, map[string]any{"routing_mode": "byok_only", "byok_enabled": true}); r.Status != 200 {
		t.Fatal(r.Status)
	}
	e.setTier("alice", "free")
	b.open(base + "/settings/")
	if got := b.text("#banner"); !strings.Contains(got, "Action Required") || !strings.Contains(got, "Free") || !strings.Contains(got, "BYOK only") ||
		strings.Contains(got, "use internal credits") { // byok_only never uses them
		t.Fatalf("banner in byok_only on the free tier = %q", got)
	}
	b.shot("11-banner-action-required")
	e.setTier("alice", "premium")
	b.open(base + "/settings/")
	if got := b.text("#banner"); !strings.Contains(got, "Using Your API Keys (BYOK)") {
		t.Fatalf("banner in byok_only with a valid key = %q", got)
	}
	// A save refused by the tier shows the API's words next to the form.
	e.setTier("alice", "free")
	b.open(base + "/settings/")
	b.do(chromedp.SendKeys(chromedp.CSS(`[data-provider="anthropic"] input[name="api_key"]`), anthropicKey(t)),
		chromedp.Click(chromedp.CSS(`[data-provider="anthropic"] form.save button[type="submit"]`)))
	b.waitFor("the tier error", `[...document.querySelectorAll('[data-provider="anthropic"] .error:not([hidden])')].some((n) => n.innerText.length > 0)`)
	b.assertSecret(alice, good, bad)
	b.checkClean()

	// The org page: cards on the org's routes when the server has them, and
	// the org's usage per project with its export (docs/teams.md).
	orgTok := e.orgToken("olga", "acme", "", "admin")
	e.setTier("mina", "premium")
	e.saveTeamKey("mina", "acme", "web", "project", fakeprovider.OK())
	wantStatus(t, e.do("POST", "/v1/chat/completions", e.orgToken("mina", "acme", "web", "member"), string(chatBody("gpt-4o-mini", 10, "hi"))), 200, "")
	waitFor(t, "the org's usage row", func() bool { return strings.Contains(e.scanUsage(), "for_project=web") })
	b.open(base + "/settings/org/#token=" + orgTok)
	if e.do("GET", "/v1/orgs/acme/keys", orgTok, nil).Status == 404 {
		if got := b.text("#org-body"); !strings.Contains(got, "not available") {
			t.Fatalf("org page without org keys = %q", got)
		}
	} else {
		b.waitFor("org cards", `document.querySelectorAll('#cards .card').length >= 2`)
	}
	b.waitFor("the org's usage", `document.querySelector('#org-usage-projects tr[data-project="web"]') !== null`)
	if got := b.text(`#org-usage-projects tr[data-project="web"]`); !strings.Contains(got, "web") || !strings.Contains(got, "1") || !strings.Contains(got, "OpenAI") {
		t.Fatalf("org usage row for web = %q", got)
	}
	b.do(chromedp.Click(chromedp.ID("org-export-csv")))
	b.waitFor("the org export message", `document.getElementById('org-export-status').innerText.startsWith('Downloaded')`)
	if reqs := b.log.made("GET", "/v1/usage/export?format=csv&org=acme"); len(reqs) != 1 || reqs[0].Authorization != "Bearer "+orgTok {
		t.Fatalf("org export requests: %+v", reqs)
	}
	b.shot("12-org")
	b.checkClean()
	b.assertSecret(orgTok)
}

// TestSettingsPageTokenNotInRequests checks, from the requests alone, that a
// token given in the fragment is never sent in a URL (the fragment is not
// sent, and the page removes it before any call).
func TestSettingsPageTokenNotInRequests(t *testing.T) {
	e := newEnv(t, nil)
	b := newTab(t)
	tok := e.token("carol", "")
	b.open(e.srv.URL + "/settings/#token=" + tok + "&x=1")
	reqs := b.log.all()
	if len(reqs) == 0 {
		t.Fatal("no requests recorded")
	}
	enc := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"`))[:8]
	for _, r := range reqs {
		if strings.Contains(r.URL, tok) || (strings.Contains(r.URL, enc) && !strings.HasPrefix(r.URL, "data:")) {
			t.Fatalf("token in a requested URL: %s", r.Method)
		}
	}
	if len(b.log.made("GET", "/v1/keys")) != 1 {
		t.Fatalf("requests: %+v", reqs)
	}
	raw, _ := json.Marshal(reqs)
	if strings.Contains(string(raw), "#token") {
		t.Fatal("a request carried the fragment")
	}
	b.checkClean()
}

// TestSettingsPageServedPublicly: the keys function serves the page without
// a token (the token is in the fragment, which browsers never send), behind
// the same request-id middleware, while its API still demands the token.
func TestSettingsPageServedPublicly(t *testing.T) {
	e := newEnv(t, nil)
	for _, p := range []string{"/settings/", "/settings/org/", "/settings/admin/", "/settings/static/api.js"} {
		resp, err := http.Get(e.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("Content-Security-Policy") == "" {
			t.Fatalf("%s: %d, request id %q, CSP %q", p, resp.StatusCode, resp.Header.Get("X-Request-Id"), resp.Header.Get("Content-Security-Policy"))
		}
	}
	if r := e.do("GET", "/v1/keys", "", nil); r.Status != 401 {
		t.Fatalf("GET /v1/keys without a token: %d", r.Status)
	}
	h := app.Routes()["keys"]
	if !slices.Contains(h, "GET /settings/{$}") {
		t.Fatalf("keys routes %v lack the settings page", h)
	}
}

// TestSettingsPageRendersEntries renders the cards from a GET /v1/keys body
// of the several-keys shape (entries with label, priority, models) and for
// azure_openai, which the API on this branch does not produce yet, and
// checks that every reason code the validator gives has a sentence.
func TestSettingsPageRendersEntries(t *testing.T) {
	e := newEnv(t, nil)
	b := newTab(t)
	b.open(e.srv.URL + "/settings/") // signed out: no API call, an empty page to render into
	body := `[
	  {"provider": "openai", "configured": true, "status": "valid", "hint": "sk-...aaaaaaa", "entries": [
	    {"key_id": "k1", "label": "prod", "priority": 0, "models": ["gpt-4o*"], "status": "valid", "reason": null, "hint": "sk-...aaaaaaa", "validated_at": "2026-11-30T10:00:00Z", "last_used_at": "2026-11-30T11:00:00Z", "stale": false, "scope": "user"},
	    {"key_id": "k2", "label": "backup", "priority": 5, "models": [], "status": "invalid", "reason": "quota_exceeded", "hint": "sk-...bbbbbbb", "validated_at": null, "last_used_at": null, "stale": true, "scope": "org"}]},
	  {"provider": "azure_openai", "configured": false, "entries": []},
	  {"provider": "google", "configured": false}]`
	b.do(chromedp.Evaluate[chromedp.Void](`import('/settings/static/cards.js').then((m) => { m.renderCards(document.getElementById('cards'), ` + body + `, {base: '/v1/keys', reload: async () => {}}); document.body.dataset.rendered = '1'; })`))
	b.waitFor("the rendered cards", `document.body.dataset.rendered === '1'`)
	if got := evalAs[[]string](b, `[...document.querySelectorAll('[data-provider="openai"] li.entry')].map((li) => li.dataset.keyId + ':' + li.querySelector('strong').innerText)`); strings.Join(got, ",") != "k1:prod,k2:backup" {
		t.Fatalf("entries = %v", got)
	}
	openai := b.text(`[data-provider="openai"]`)
	for _, want := range []string{"gpt-4o*", "all models", "Priority", "used up its quota", "Unused for 90 days", "org key", "Test prod", "Remove backup", "Remove all", "Add OpenAI key"} {
		if !strings.Contains(openai, want) {
			t.Errorf("openai card lacks %q:\n%s", want, openai)
		}
	}
	for _, name := range []string{"label", "priority", "models"} {
		if !evalAs[bool](b, `!!document.querySelector('[data-provider="openai"] form.save input[name="`+name+`"]')`) {
			t.Errorf("the add form lacks %s", name)
		}
	}
	for _, name := range []string{"api_key", "endpoint", "api_version", "deployments"} {
		if !evalAs[bool](b, `!!document.querySelector('[data-provider="azure_openai"] form.save [name="`+name+`"]')`) {
			t.Errorf("the Azure form lacks %s", name)
		}
	}
	if got := b.text(`[data-provider="google"] h3`); got != "Google Gemini" {
		t.Errorf("google card title = %q", got)
	}
	codes := []string{"unauthorized", "no_billing", "quota_exceeded", "forbidden", "deployment_not_found", "endpoint_refused", "invalid_format", "provider_unreachable",
		"provider_unavailable", "timeout", "rate_limited", "request_error", "unexpected_status", "canceled", "unsupported_provider"}
	raw, _ := json.Marshal(codes)
	b.do(chromedp.Evaluate[chromedp.Void](`import('/settings/static/format.js').then((m) => { window.__missing = ` + string(raw) + `.filter((c) => !m.REASONS[c]); })`))
	b.waitFor("the reason check", `Array.isArray(window.__missing)`)
	if missing := evalAs[[]string](b, `window.__missing`); len(missing) > 0 {
		t.Fatalf("reason codes without a sentence: %v", missing)
	}
	b.checkClean()
}
