package page_test

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/synthstack/byok/shared/page"
)

func server(t *testing.T) *httptest.Server {
	t.Helper()
	h, err := page.New()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, s *httptest.Server, method, path string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestHeaders: every answer of the page, found or not, carries the
// security headers; files carry cache validators and their content type.
func TestHeaders(t *testing.T) {
	s := server(t)
	cases := []struct{ path, ctype string }{
		{"/settings/", "text/html; charset=utf-8"},
		{"/settings/org/", "text/html; charset=utf-8"},
		{"/settings/admin/", "text/html; charset=utf-8"},
		{"/settings/static/user.js", "text/javascript; charset=utf-8"},
		{"/settings/static/style.css", "text/css; charset=utf-8"},
	}
	for _, c := range cases {
		resp := get(t, s, "GET", c.path)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", c.path, resp.StatusCode)
		}
		checkSecurity(t, c.path, resp.Header)
		if got := resp.Header.Get("Content-Type"); got != c.ctype {
			t.Errorf("%s: Content-Type %q, want %q", c.path, got, c.ctype)
		}
		if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("%s: Cache-Control %q", c.path, got)
		}
		etag := resp.Header.Get("ETag")
		if etag == "" {
			t.Fatalf("%s: no ETag", c.path)
		}
		again := get(t, s, "GET", c.path, "If-None-Match", etag)
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("%s with If-None-Match: %d, want 304", c.path, again.StatusCode)
		}
		checkSecurity(t, c.path+" (304)", again.Header)
		if head := get(t, s, "HEAD", c.path); head.StatusCode != 200 {
			t.Errorf("HEAD %s: %d", c.path, head.StatusCode)
		}
	}
	for _, p := range []string{"/settings/static/nope.js", "/settings/static/index.html", "/settings/other/", "/settings/static/..%2fpage.go"} {
		resp := get(t, s, "GET", p)
		if resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404", p, resp.StatusCode)
		}
		if resp.StatusCode == 404 && resp.Header.Get("Content-Security-Policy") == "" && p != "/settings/other/" {
			t.Errorf("%s: 404 without the page's headers", p)
		}
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(s.URL + "/settings")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, _ := resp.Location(); resp.StatusCode != http.StatusPermanentRedirect || loc == nil || loc.Path != "/settings/" {
		t.Errorf("GET /settings: %d to %v, want 308 to /settings/", resp.StatusCode, loc)
	}
	if resp := get(t, s, "POST", "/settings/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /settings/: %d, want 405", resp.StatusCode)
	}
}

func checkSecurity(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", what, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-") {
		t.Errorf("%s: CSP allows unsafe sources: %q", what, csp)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", what, h.Get("X-Content-Type-Options"))
	}
	if h.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("%s: Referrer-Policy %q", what, h.Get("Referrer-Policy"))
	}
}

// TestNoInlineCode: the HTML has no inline script, style or handler (the
// CSP would block them), every module it loads exists, and no script
// writes HTML from strings.
func TestNoInlineCode(t *testing.T) {
	dir := "static"
	inline := regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]|<style|\sstyle=|\son[a-z]+=|javascript:`)
	src := regexp.MustCompile(`(?:src|href)="([^"]+)"`)
	imports := regexp.MustCompile(`from '\./([^']+)'`)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		text := string(b)
		switch filepath.Ext(p) {
		case ".html":
			if m := inline.FindString(text); m != "" {
				t.Errorf("%s: inline code %q", p, m)
			}
			for _, m := range src.FindAllStringSubmatch(text, -1) {
				if strings.HasPrefix(m[1], "#") {
					continue
				}
				if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(strings.TrimPrefix(m[1], "../"), "static/"))); err != nil {
					t.Errorf("%s loads %s, which is not in static/", p, m[1])
				}
			}
		case ".js":
			for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage"} {
				if strings.Contains(text, bad) {
					t.Errorf("%s uses %s", p, bad)
				}
			}
			for _, m := range imports.FindAllStringSubmatch(text, -1) {
				if _, err := os.Stat(filepath.Join(dir, m[1])); err != nil {
					t.Errorf("%s imports %s, which is missing", p, m[1])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
