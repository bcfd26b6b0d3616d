// Package page serves the API Keys page (docs/page.md): plain HTML, CSS and
// JavaScript modules embedded in the binary, no build step and no CDN. The
// page holds no secret and no user data, so its routes are public; every
// datum it shows comes from the JSON API, called with the user's token in the
// Authorization header only.
package page

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/httpx"
)

//go:embed static
var files embed.FS

// Route patterns of the page, as the keys function serves them. The HTML
// routes end in {$} so that /settings/anything-else is a 404, not the page.
const (
	UserPattern   = "GET /settings/{$}"
	OrgPattern    = "GET /settings/org/{$}"
	AdminPattern  = "GET /settings/admin/{$}"
	StaticPattern = "GET /settings/static/{file}"
	// BarePattern sends /settings (typed without the slash) to the page,
	// which would otherwise meet the API's 401.
	BarePattern = "GET /settings"
)

// CSP allows only the page's own files: no inline script or style, no
// framing, no plugins, API calls to the same origin only.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, read once at start-up.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the page's files.
type Handler struct {
	assets map[string]asset // by file name under static/
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// New reads the embedded files. It fails only if the binary was built with
// a broken embed, which the package's tests catch.
func New() (*Handler, error) {
	h := &Handler{assets: map[string]asset{}}
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := contentTypes[path.Ext(p)]
		if ct == "" {
			ct = "application/octet-stream"
		}
		h.assets[strings.TrimPrefix(p, "static/")] = asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	return h, err
}

// Must is New for callers that wire at start-up.
func Must() *Handler {
	h, err := New()
	if err != nil {
		panic("page: embedded files unreadable: " + err.Error())
	}
	return h
}

// Register adds the page's routes.
func (h *Handler) Register(mux httpx.Router) {
	mux.HandleFunc(BarePattern, func(w http.ResponseWriter, r *http.Request) {
		SetHeaders(w.Header())
		// Relative, so a stage prefix in front of the path is kept.
		http.Redirect(w, r, "settings/", http.StatusPermanentRedirect)
	})
	mux.Handle(UserPattern, h.file("index.html"))
	mux.Handle(OrgPattern, h.file("org.html"))
	mux.Handle(AdminPattern, h.file("admin.html"))
	mux.HandleFunc(StaticPattern, func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if strings.HasSuffix(name, ".html") { // the pages have their own routes
			name = ""
		}
		h.serve(w, r, name)
	})
}

func (h *Handler) file(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, name) })
}

// SetHeaders puts the page's security headers on a response.
func SetHeaders(hd http.Header) {
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY") // for browsers without frame-ancestors
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request, name string) {
	SetHeaders(w.Header())
	a, ok := h.assets[name]
	if !ok {
		httpx.WriteError(w, r, apperr.New(apperr.NotFound, "no such file of the settings page: %q", r.URL.Path))
		return
	}
	// Revalidate every time: a deploy changes the files under the same
	// names, and the ETag makes the revalidation a 304.
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", a.etag)
	w.Header().Set("Vary", "Accept-Encoding")
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", a.contentType)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(a.body)
	}
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t), "W/"))
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
