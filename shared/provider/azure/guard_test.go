package azure_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/provider/azure"
)

func TestCheckEndpoint(t *testing.T) {
	g := &azure.Guard{Suffixes: azure.DefaultSuffixes}
	ok := []string{"https://myres.openai.azure.com", "https://MyRes.openai.azure.com/", "https://x.cognitiveservices.azure.com", "https://a.b.services.ai.azure.com:443"}
	bad := []string{
		"http://myres.openai.azure.com",           // not https
		"https://openai.azure.com",                // the suffix itself, no resource
		"https://myres.openai.azure.com.evil.com", // suffix not at the end
		"https://evilopenai.azure.com",            // no dot boundary
		"https://user:pw@myres.openai.azure.com",  // credentials
		"https://myres.openai.azure.com/openai",   // path
		"https://myres.openai.azure.com?x=1",      // query
		"https://127.0.0.1",                       // not listed
		"https://169.254.169.254",                 // metadata
		"file:///etc/passwd", "", "myres.openai.azure.com",
		"https://myres.openai.azure.com:8443",  // a port other than 443 on a suffix host
		"https://myres.openai.azure.com:99999", // not a port at all
		"https://[::1%25.openai.azure.com]",    // an IPv6 zone dressed as a suffix
		"https://my_res.openai.azure.com",      // not a DNS name
	}
	for _, e := range ok {
		if _, err := g.CheckEndpoint(e); err != nil {
			t.Errorf("CheckEndpoint(%q) = %v, want ok", e, err)
		}
	}
	for _, e := range bad {
		if _, err := g.CheckEndpoint(e); !errors.Is(err, azure.ErrEndpoint) {
			t.Errorf("CheckEndpoint(%q) = %v, want refused", e, err)
		}
	}
}

// A host the operator listed verbatim (the tests' fake) may use any port.
func TestCheckEndpointListedHostPort(t *testing.T) {
	g := &azure.Guard{Suffixes: []string{"127.0.0.1", ".openai.azure.com"}}
	if ep, err := g.CheckEndpoint("https://127.0.0.1:8443"); err != nil || ep != "https://127.0.0.1:8443" {
		t.Fatalf("listed host with a port: %q %v", ep, err)
	}
	if _, err := g.CheckEndpoint("https://x.openai.azure.com:8443"); !errors.Is(err, azure.ErrEndpoint) {
		t.Fatalf("suffix host with a port: %v", err)
	}
}

func TestCheckAddr(t *testing.T) {
	g := &azure.Guard{Suffixes: azure.DefaultSuffixes}
	for _, a := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
		"::1", "fe80::1", "fc00::1", "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "224.0.0.1",
		// reserved and translation ranges: NAT64 and 6to4 forms of the metadata and private addresses, 240/4, broadcast
		"0.1.2.3", "192.0.0.170", "240.0.0.1", "255.255.255.255", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:5", "2002:a9fe:a9fe::1", "100::1"} {
		if err := g.CheckAddr(netip.MustParseAddr(a)); err == nil {
			t.Errorf("CheckAddr(%s) allowed", a)
		}
	}
	for _, a := range []string{"20.50.1.2", "2603:1030::1"} {
		if err := g.CheckAddr(netip.MustParseAddr(a)); err != nil {
			t.Errorf("CheckAddr(%s) = %v", a, err)
		}
	}
	// An operator may list one address verbatim (tests list the fake's).
	g = &azure.Guard{Suffixes: []string{"127.0.0.1"}}
	if err := g.CheckAddr(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Errorf("listed address refused: %v", err)
	}
	if err := g.CheckAddr(netip.MustParseAddr("127.0.0.2")); err == nil {
		t.Error("unlisted loopback allowed")
	}
}

// counting is a TLS server that counts every connection it accepts and
// every request it receives: a refusal must leave both at zero.
func counting(t *testing.T, h http.Handler) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	var conns, reqs atomic.Int64
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		h.ServeHTTP(w, r)
	}))
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts, &conns, &reqs
}

// A name under an allowed suffix that resolves inward is refused at
// connect time, before a byte is sent (DNS rebinding, metadata, private).
func TestDialRefusesInwardAddresses(t *testing.T) {
	ts, conns, reqs := counting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	port := ts.Listener.Addr().(interface{ String() string }).String()
	port = port[strings.LastIndexByte(port, ':')+1:]
	for _, ip := range []string{"127.0.0.1", "10.0.0.7", "169.254.169.254", "::ffff:127.0.0.1"} {
		g := &azure.Guard{Suffixes: azure.DefaultSuffixes, Lookup: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr(ip)}, nil
		}}
		c := g.Client(ts.Client().Transport.(*http.Transport), 5*time.Second)
		_, err := c.Get("https://evil.openai.azure.com:" + port + "/openai/models?api-version=2024-10-21")
		if !errors.Is(err, azure.ErrEndpoint) {
			t.Errorf("resolving to %s: err = %v, want refused", ip, err)
		}
	}
	// A mixed answer (one public, one private) is refused too.
	g := &azure.Guard{Suffixes: azure.DefaultSuffixes, Lookup: func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("20.1.1.1"), netip.MustParseAddr("127.0.0.1")}, nil
	}}
	if _, err := g.Client(nil, time.Second).Get("https://mixed.openai.azure.com:" + port + "/"); !errors.Is(err, azure.ErrEndpoint) {
		t.Errorf("mixed answer: err = %v", err)
	}
	// Hosts outside the suffixes are refused without a lookup.
	g = &azure.Guard{Suffixes: azure.DefaultSuffixes, Lookup: func(context.Context, string) ([]netip.Addr, error) {
		t.Error("looked up a host outside the suffixes")
		return nil, errors.New("no")
	}}
	if _, err := g.Client(nil, time.Second).Get(ts.URL); !errors.Is(err, azure.ErrEndpoint) {
		t.Errorf("outside suffixes: err = %v", err)
	}
	if conns.Load() != 0 || reqs.Load() != 0 {
		t.Fatalf("refused dials reached the server: %d connections, %d requests", conns.Load(), reqs.Load())
	}
}

// Redirects are never followed: the redirect target never hears from us.
func TestNoRedirects(t *testing.T) {
	target, conns, reqs := counting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	redir := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	defer redir.Close()
	g := &azure.Guard{Suffixes: []string{"127.0.0.1"}}
	resp, err := g.Client(redir.Client().Transport.(*http.Transport), 5*time.Second).Get(redir.URL + "/openai/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("status %d, want the 307 itself", resp.StatusCode)
	}
	if conns.Load() != 0 || reqs.Load() != 0 {
		t.Fatalf("redirect followed: %d connections, %d requests", conns.Load(), reqs.Load())
	}
	u, _ := url.Parse(resp.Header.Get("Location"))
	if u.Path != "/stolen" {
		t.Fatalf("Location %q", u)
	}
}

func TestParseSuffixes(t *testing.T) {
	if got := azure.ParseSuffixes(""); len(got) != 3 {
		t.Fatalf("default = %v", got)
	}
	if got := azure.ParseSuffixes(" 127.0.0.1 , .Example.com,"); len(got) != 2 || got[1] != ".example.com" {
		t.Fatalf("parsed = %v", got)
	}
}
