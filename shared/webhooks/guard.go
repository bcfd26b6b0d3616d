package webhooks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/netguard"
)

// Resolver is what the guard needs from DNS (*net.Resolver satisfies it).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Guard keeps webhook deliveries from reaching our own network (server-side
// request forgery): https only, public addresses only, checked on the
// address actually dialled, redirects never followed. AllowHosts lists hosts
// (as written in the URL, e.g. "127.0.0.1") that may be reached over plain
// http at any address: for tests and self-hosters (WEBHOOK_ALLOW_HOSTS).
type Guard struct {
	Resolver   Resolver
	AllowHosts []string
}

// ErrBlocked is the cause of every refusal by the guard.
var ErrBlocked = errors.New("webhook target is not a public address")

// NewGuard returns a guard using the system resolver.
func NewGuard(allowHosts []string) *Guard {
	return &Guard{Resolver: net.DefaultResolver, AllowHosts: allowHosts}
}

// ParseAllowHosts splits WEBHOOK_ALLOW_HOSTS (comma-separated).
func ParseAllowHosts(s string) []string {
	var out []string
	for _, h := range strings.Split(s, ",") {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			out = append(out, h)
		}
	}
	return out
}

func (g *Guard) allowed(host string) bool {
	return slices.Contains(g.AllowHosts, strings.ToLower(host))
}

// maxURLLen bounds a registered URL.
const maxURLLen = 2048

// CheckURL validates a webhook URL at registration: https (or http to an
// allowed host), a host, no credentials, no fragment; a literal address or a
// name that resolves now must be public. A name that does not resolve now is
// accepted: the dial-time check is the one that counts.
func (g *Guard) CheckURL(ctx context.Context, raw string) (*url.URL, error) {
	bad := func(format string, args ...any) error {
		return apperr.New(apperr.InvalidRequest, "field \"url\" "+format, args...)
	}
	if raw == "" {
		return nil, bad("is required")
	}
	if len(raw) > maxURLLen {
		return nil, bad("is longer than %d characters", maxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" {
		return nil, bad("must be an absolute URL such as https://hooks.example.com/byok")
	}
	host := u.Hostname()
	switch {
	case host == "":
		return nil, bad("has no host")
	case u.User != nil:
		return nil, bad("must not carry a user name or password; put a token in the path instead")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, bad("must not have a #fragment")
	case u.Scheme == "https":
	case u.Scheme == "http" && g.allowed(host):
	default:
		return nil, bad("must start with https://")
	}
	if g.allowed(host) {
		return u, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !Public(ip) {
			return nil, bad("points to a non-public address (%s); webhooks are delivered only to public addresses", ip)
		}
		return u, nil
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if ips, err := g.Resolver.LookupNetIP(lctx, "ip", host); err == nil {
		for _, ip := range ips {
			if !Public(ip) {
				return nil, bad("resolves to a non-public address (%s); webhooks are delivered only to public addresses", ip.Unmap())
			}
		}
	}
	return u, nil
}

// Public reports whether ip is a public unicast address (netguard.Public).
func Public(ip netip.Addr) bool { return netguard.Public(ip) }

// control runs on every socket before it connects, with the address the
// kernel is about to use: the last word, whatever DNS said before.
func control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrBlocked, address)
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrBlocked, ap.Addr().Unmap())
	}
	return nil
}

// DialContext resolves addr once with the guard's resolver and dials only
// public addresses, re-checked at connect time; allowed hosts dial as they
// are.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	if g.allowed(host) {
		return d.DialContext(ctx, network, addr)
	}
	d.Control = control
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else if ips, err = g.Resolver.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, err
	}
	var firstErr error
	for _, ip := range ips {
		if !Public(ip) {
			if firstErr == nil {
				firstErr = fmt.Errorf("%w: %s resolves to %s", ErrBlocked, host, ip.Unmap())
			}
			continue
		}
		c, err := d.DialContext(ctx, network, netip.AddrPortFrom(ip, parsePort(port)).String())
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("%s: no address", host)
	}
	return nil, firstErr
}

func parsePort(s string) uint16 {
	n, _ := strconv.ParseUint(s, 10, 16)
	return uint16(n)
}

// Client returns the HTTP client for deliveries: the guard's dialer, no
// proxy from the environment (it would bypass the guard), no redirects, and
// timeout for the whole exchange.
func (g *Guard) Client(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           g.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
