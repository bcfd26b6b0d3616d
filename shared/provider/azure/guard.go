package azure

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/synthstack/byok/shared/netguard"
)

// DefaultSuffixes are AZURE_OPENAI_ALLOWED_SUFFIXES' default.
var DefaultSuffixes = []string{".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"}

// ParseSuffixes reads AZURE_OPENAI_ALLOWED_SUFFIXES (comma-separated; empty
// means DefaultSuffixes).
func ParseSuffixes(env string) []string {
	var out []string
	for _, s := range strings.Split(env, ",") {
		if s = strings.ToLower(strings.TrimSpace(s)); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return append([]string(nil), DefaultSuffixes...)
	}
	return out
}

// ErrEndpoint is wrapped by every refusal of an endpoint or address.
var ErrEndpoint = errors.New("azure endpoint refused")

// Guard is the server-side request forgery fence around user-chosen Azure
// endpoints: the host must sit under an allowed suffix, and the address
// actually dialled must be public, checked at connect time (so DNS that
// changes between save and use cannot point us inward). An address is
// allowed although not public only when an operator listed it verbatim as a
// suffix (tests list 127.0.0.1 for the fake).
type Guard struct {
	Suffixes []string
	// Lookup resolves a host; nil means net.DefaultResolver.LookupNetIP.
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// hostAllowed reports whether host (lower-case, no port) is under a suffix.
func (g *Guard) hostAllowed(host string) bool {
	for _, s := range g.Suffixes {
		if strings.HasPrefix(s, ".") {
			if strings.HasSuffix(host, s) && len(host) > len(s) {
				return true
			}
			continue
		}
		if host == s || strings.HasSuffix(host, "."+s) {
			return true
		}
	}
	return false
}

// CheckEndpoint validates a user's endpoint: https, no credentials, path,
// query or fragment, and a host under an allowed suffix. It returns the
// normalised endpoint ("https://host[:port]").
func (g *Guard) CheckEndpoint(endpoint string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(endpoint))
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("%w: endpoint must be a URL like https://<resource>.openai.azure.com", ErrEndpoint)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("%w: endpoint must use https", ErrEndpoint)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("%w: endpoint must be only https://<host>, without credentials, path or query", ErrEndpoint)
	}
	host := strings.ToLower(u.Hostname())
	if !g.hostAllowed(host) {
		return "", fmt.Errorf("%w: endpoint host must end in one of %s", ErrEndpoint, strings.Join(g.Suffixes, ", "))
	}
	// Only an operator-listed host (the tests' fake) may be an address or
	// use another port: a resource endpoint is a DNS name on 443.
	if !g.listedHost(host) {
		if !dnsName(host) {
			return "", fmt.Errorf("%w: endpoint host must be a DNS name like <resource>.openai.azure.com", ErrEndpoint)
		}
		if p := u.Port(); p != "" && p != "443" {
			return "", fmt.Errorf("%w: endpoint must use the https port 443", ErrEndpoint)
		}
	} else if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%w: endpoint port %q is not a port number", ErrEndpoint, p)
		}
	}
	return "https://" + strings.ToLower(u.Host), nil
}

// listedHost reports whether the operator named host itself as a suffix
// entry (no leading dot).
func (g *Guard) listedHost(host string) bool {
	for _, s := range g.Suffixes {
		if !strings.HasPrefix(s, ".") && host == s {
			return true
		}
	}
	return false
}

// dnsName reports whether host is letters, digits, '-' and '.' only.
func dnsName(host string) bool {
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return host != ""
}

// listed reports whether the operator named ip itself as an allowed suffix.
func (g *Guard) listed(ip netip.Addr) bool {
	for _, s := range g.Suffixes {
		if a, err := netip.ParseAddr(s); err == nil && a.Unmap() == ip.Unmap() {
			return true
		}
	}
	return false
}

// CheckAddr refuses addresses that are not public (netguard.Public):
// loopback, private, link-local (169.254.169.254 metadata included),
// reserved and translation ranges, and IPv4-mapped forms of any of them.
func (g *Guard) CheckAddr(ip netip.Addr) error {
	if g.listed(ip) {
		return nil
	}
	if !netguard.Public(ip) {
		return fmt.Errorf("%w: the endpoint resolves to an address that is not public (loopback, private, link-local or reserved)", ErrEndpoint)
	}
	return nil
}

// control is the net.Dialer Control hook: it sees the address the socket
// is about to connect to, after every resolution.
func (g *Guard) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read dialled address", ErrEndpoint)
	}
	return g.CheckAddr(ap.Addr())
}

// DialContext resolves host through Lookup, refuses non-public answers and
// dials the checked address with the Control hook checking it again.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if !g.hostAllowed(strings.ToLower(host)) {
		return nil, fmt.Errorf("%w: host %q is not under an allowed suffix", ErrEndpoint, host)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		lookup := g.Lookup
		if lookup == nil {
			lookup = func(ctx context.Context, h string) ([]netip.Addr, error) {
				return net.DefaultResolver.LookupNetIP(ctx, "ip", h)
			}
		}
		if ips, err = lookup(ctx, host); err != nil {
			return nil, err
		}
	}
	d := net.Dialer{Timeout: 10 * time.Second, Control: g.control}
	var last error = fmt.Errorf("%w: %s resolved to no address", ErrEndpoint, host)
	for _, ip := range ips {
		if err := g.CheckAddr(ip); err != nil {
			return nil, err // one inward answer condemns the name
		}
	}
	for _, ip := range ips {
		c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, last
}

// Client returns an HTTP client for Azure endpoints: guarded dialing, no
// proxy (a proxy would dial for us), redirects never followed. base may be
// nil; its TLS settings are kept.
func (g *Guard) Client(base *http.Transport, timeout time.Duration) *http.Client {
	var t *http.Transport
	if base != nil {
		t = base.Clone()
	} else {
		t = http.DefaultTransport.(*http.Transport).Clone()
	}
	t.Proxy = nil
	t.DialContext = g.DialContext
	t.DialTLSContext = nil
	return &http.Client{
		Transport:     t,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
