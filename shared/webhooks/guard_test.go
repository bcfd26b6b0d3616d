package webhooks_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/webhooks"
)

// stubResolver answers each lookup with the next of its answers (the last
// one repeats): a DNS server that rebinds.
type stubResolver struct {
	mu      sync.Mutex
	answers [][]netip.Addr
	calls   int
}

func (s *stubResolver) LookupNetIP(_ context.Context, _, _ string) ([]netip.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := min(s.calls, len(s.answers)-1)
	s.calls++
	return s.answers[i], nil
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// tlsReceiver is an https endpoint on loopback counting what reaches it.
func tlsReceiver(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestGuardRefusesNonPublicTargets(t *testing.T) {
	t.Parallel()
	srv, hits := tlsReceiver(t)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	cases := map[string]struct {
		url     string
		resolve []netip.Addr
	}{
		"loopback":             {url: "https://127.0.0.1:" + port + "/hook"},
		"loopback v6":          {url: "https://[::1]:" + port + "/hook"},
		"ipv6-mapped loopback": {url: "https://[::ffff:127.0.0.1]:" + port + "/hook"},
		"private":              {url: "https://10.1.2.3:" + port + "/hook"},
		"link-local":           {url: "https://169.254.10.10:" + port + "/hook"},
		"metadata":             {url: "https://169.254.169.254/latest/meta-data/"},
		"unspecified":          {url: "https://0.0.0.0:" + port + "/hook"},
		"name to loopback":     {url: "https://hooks.example.com:" + port + "/hook", resolve: addrs("127.0.0.1")},
		"name to mapped":       {url: "https://hooks.example.com:" + port + "/hook", resolve: addrs("::ffff:127.0.0.1")},
		"name to metadata":     {url: "https://metadata.example.com/", resolve: addrs("169.254.169.254")},
		"name to private v6":   {url: "https://hooks.example.com:" + port + "/", resolve: addrs("fd00::1")},
	}
	for name, c := range cases {
		res := c.resolve
		if res == nil {
			res = addrs("93.184.216.34")
		}
		g := &webhooks.Guard{Resolver: &stubResolver{answers: [][]netip.Addr{res}}}
		// Registration refuses it with a clear 400 ...
		if _, err := g.CheckURL(context.Background(), c.url); !apperr.Is(err, apperr.InvalidRequest) || !strings.Contains(err.Error(), "non-public") {
			t.Errorf("%s: CheckURL = %v, want a non-public refusal", name, err)
		}
		// ... and a delivery (as if it had been registered) never connects.
		s := &webhooks.Sender{Client: g.Client(webhooks.DeliveryTimeout)}
		r, err := s.Send(context.Background(), c.url, "whsec_"+strings.Repeat("A", 43)+"=", "msg_1", []byte(`{}`))
		if err != nil || r.OK || r.Error != "blocked_address" {
			t.Errorf("%s: Send = %+v, %v; want blocked_address", name, r, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the loopback receiver", n)
	}
}

// TestGuardDNSRebinding: the name resolves to a public address when it is
// registered and to loopback when we connect; the connection is refused,
// because the check runs on the address dialled.
func TestGuardDNSRebinding(t *testing.T) {
	t.Parallel()
	srv, hits := tlsReceiver(t)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	res := &stubResolver{answers: [][]netip.Addr{addrs("93.184.216.34"), addrs("127.0.0.1")}}
	g := &webhooks.Guard{Resolver: res}
	u := "https://rebind.example.com:" + port + "/hook"
	if _, err := g.CheckURL(context.Background(), u); err != nil {
		t.Fatalf("first answer is public; CheckURL = %v", err)
	}
	s := &webhooks.Sender{Client: g.Client(webhooks.DeliveryTimeout)}
	r, err := s.Send(context.Background(), u, "whsec_"+strings.Repeat("A", 43)+"=", "msg_1", []byte(`{}`))
	if err != nil || r.OK || r.Error != "blocked_address" {
		t.Fatalf("Send = %+v, %v; want blocked_address", r, err)
	}
	if hits.Load() != 0 || res.calls != 2 {
		t.Fatalf("hits %d, resolver calls %d", hits.Load(), res.calls)
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	g := &webhooks.Guard{Resolver: &stubResolver{answers: [][]netip.Addr{addrs("93.184.216.34")}}, AllowHosts: []string{"127.0.0.1"}}
	ok := []string{"https://hooks.example.com/byok", "https://93.184.216.34:8443/x?token=abc", "http://127.0.0.1:9999/hook"}
	for _, u := range ok {
		if _, err := g.CheckURL(context.Background(), u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	bad := map[string]string{
		"":                                    "required",
		"hooks.example.com/x":                 "absolute",
		"http://hooks.example.com/x":          "https://",
		"ftp://hooks.example.com/x":           "https://",
		"https://user:pw@hooks.example.com/x": "user name",
		"https://hooks.example.com/x#frag":    "fragment",
		"https:///x":                          "no host",
		"https://hooks.example.com/" + strings.Repeat("a", 3000): "longer",
	}
	for u, want := range bad {
		_, err := g.CheckURL(context.Background(), u)
		if !apperr.Is(err, apperr.InvalidRequest) || !strings.Contains(err.Error(), want) {
			t.Errorf("%.60s: %v, want a 400 mentioning %q", u, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("error repeats the credentials: %v", err)
		}
	}
}

// TestNoRedirects: a 3xx is a failed attempt; its Location is never fetched.
func TestNoRedirects(t *testing.T) {
	t.Parallel()
	var other atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { other.Add(1) }))
	defer target.Close()
	redir := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer redir.Close()
	u, _ := url.Parse(redir.URL)
	g := &webhooks.Guard{Resolver: &stubResolver{answers: [][]netip.Addr{addrs("127.0.0.1")}}, AllowHosts: []string{u.Hostname()}}
	s := &webhooks.Sender{Client: g.Client(webhooks.DeliveryTimeout)}
	r, err := s.Send(context.Background(), redir.URL, "whsec_"+strings.Repeat("A", 43)+"=", "msg_1", []byte(`{}`))
	if err != nil || r.OK || r.HTTPStatus != 307 || r.Error != "redirect_not_followed" {
		t.Fatalf("Send = %+v, %v", r, err)
	}
	if other.Load() != 0 {
		t.Fatal("redirect was followed")
	}
}

// TestBigAnswerNotRead: an endpoint answering with a huge body costs us a
// few KiB, not the body.
func TestBigAnswerNotRead(t *testing.T) {
	t.Parallel()
	var written atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		chunk := make([]byte, 64<<10)
		for i := 0; i < 1600; i++ { // 100 MiB if anyone read it all
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	g := &webhooks.Guard{AllowHosts: []string{u.Hostname()}}
	s := &webhooks.Sender{Client: g.Client(webhooks.DeliveryTimeout)}
	r, err := s.Send(context.Background(), srv.URL, "whsec_"+strings.Repeat("A", 43)+"=", "msg_1", []byte(`{}`))
	if err != nil || !r.OK {
		t.Fatalf("Send = %+v, %v", r, err)
	}
	if w := written.Load(); w > 32<<20 {
		t.Fatalf("server wrote %d bytes before we hung up", w)
	}
}
