// Package h1 holds an HTTP/1.1 client transport that does each request's
// I/O on the goroutine that sends it.
//
// net/http's Transport hands every request to a per-connection writer
// goroutine and the answer back from a reader goroutine: two or three
// goroutine hand-offs per call, each a thread wake-up on an idle CPU. The
// gateway makes one upstream call per request and waits for it, so those
// hand-offs are most of what it adds over the provider itself
// (docs/performance.md). The wire format is net/http's own (Request.Write,
// ReadResponse); this package only keeps the connections.
package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Defaults of the zero Transport, as net/http's DefaultTransport.
const (
	DefaultMaxIdleConnsPerHost = 128
	DefaultIdleConnTimeout     = 90 * time.Second
	DefaultDialTimeout         = 10 * time.Second
	DefaultTLSHandshakeTimeout = 10 * time.Second
)

// Transport is an http.RoundTripper for http and https URLs over HTTP/1.1
// with keep-alive. Requests it does not carry itself (through a proxy from
// the environment, another scheme, a protocol upgrade) go to Fallback.
// Responses are not decompressed: it sends no Accept-Encoding of its own.
type Transport struct {
	// DialContext opens TCP connections; nil means a net.Dialer with
	// DefaultDialTimeout and a 30 s keep-alive.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSClientConfig is used (cloned, offering only http/1.1) for https.
	TLSClientConfig     *tls.Config
	TLSHandshakeTimeout time.Duration // 0 means DefaultTLSHandshakeTimeout
	MaxIdleConnsPerHost int           // 0 means DefaultMaxIdleConnsPerHost
	IdleConnTimeout     time.Duration // 0 means DefaultIdleConnTimeout
	// Proxy picks a proxy as http.Transport.Proxy does (nil: none, as
	// there); a proxied request goes to Fallback.
	Proxy func(*http.Request) (*url.URL, error)
	// Fallback carries the requests this transport does not; nil means
	// http.DefaultTransport.
	Fallback http.RoundTripper

	mu   sync.Mutex
	idle map[string][]*conn // per scheme://host:port, most recent last
}

// RoundTrip sends req and reads the response head on the caller's
// goroutine; the body is read from the connection as the caller reads it,
// and the connection is kept for the next request once the body is read
// to its end (a body closed early closes the connection).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if ok, err := t.carries(req); err != nil || !ok {
		if err != nil {
			closeBody(req)
			return nil, err
		}
		return t.fallback().RoundTrip(req)
	}
	key := req.URL.Scheme + "://" + hostPort(req.URL)
	for try := 0; ; try++ {
		c, err := t.get(req.Context(), key, req.URL)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := t.exchange(c, req)
		if err == nil {
			return resp, nil
		}
		// A kept connection the server closed while it sat idle fails
		// before any byte of an answer. As net/http does, send once more on
		// a new one if the request did not get out, or got out but may be
		// repeated (GET and the like, or with an Idempotency-Key): a chat
		// call that reached the provider may have been billed.
		var nr noResponse
		if try == 0 && c.reused && errors.As(err, &nr) && (!nr.sent || replayable(req)) && req.Context().Err() == nil {
			if again, ok := rewound(req); ok {
				req = again
				continue
			}
		}
		closeBody(req)
		if cerr := req.Context().Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
}

// CloseIdleConnections closes the connections kept for reuse (and
// Fallback's, when it has that method); http.Client calls it.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, cs := range idle {
		for _, c := range cs {
			c.nc.Close()
		}
	}
	if ci, ok := t.fallback().(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

func (t *Transport) carries(req *http.Request) (bool, error) {
	if req.URL == nil || (req.URL.Scheme != "http" && req.URL.Scheme != "https") || req.URL.Host == "" {
		return false, nil
	}
	if req.Header.Get("Upgrade") != "" {
		return false, nil
	}
	if t.Proxy == nil {
		return true, nil
	}
	p, err := t.Proxy(req)
	if err != nil {
		return false, err
	}
	return p == nil, nil
}

func (t *Transport) fallback() http.RoundTripper {
	if t.Fallback != nil {
		return t.Fallback
	}
	return http.DefaultTransport
}

// noResponse marks a failure before the first byte of the answer; sent
// says whether the whole request had been written.
type noResponse struct {
	err  error
	sent bool
}

func (e noResponse) Error() string { return e.err.Error() }
func (e noResponse) Unwrap() error { return e.err }

// exchange writes req on c and reads the response head. On error c is
// closed.
func (t *Transport) exchange(c *conn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.nc.Close()
		return nil, err
	}
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		return fail(noResponse{err: fmt.Errorf("h1: sending the request: %w", err)})
	}
	if _, err := c.br.Peek(1); err != nil {
		return fail(noResponse{err: fmt.Errorf("h1: waiting for the response: %w", err), sent: true})
	}
	var resp *http.Response
	for {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return fail(fmt.Errorf("h1: reading the response: %w", err))
		}
		// Interim 1xx answers (103 Early Hints, 100 Continue) precede the
		// real one; 101 would switch protocols, which requests here never ask.
		if resp.StatusCode < 100 || resp.StatusCode >= 200 {
			break
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(errors.New("h1: unexpected 101 Switching Protocols"))
		}
	}
	reuse := !resp.Close && !req.Close && resp.ProtoAtLeast(1, 1)
	if resp.Body == http.NoBody {
		t.release(c, stop, reuse)
		return resp, nil
	}
	resp.Body = &body{rc: resp.Body, t: t, c: c, stop: stop, reuse: reuse, ctx: ctx}
	return resp, nil
}

// release keeps c for reuse when its exchange ended cleanly, else closes it.
func (t *Transport) release(c *conn, stop func() bool, reuse bool) {
	// stop reports false once the context's deadline trap has been set on
	// the connection: it is then unusable.
	if !stop() || !reuse || c.br.Buffered() > 0 {
		c.nc.Close()
		return
	}
	max := t.MaxIdleConnsPerHost
	if max <= 0 {
		max = DefaultMaxIdleConnsPerHost
	}
	c.idleAt = time.Now()
	c.reused = true
	t.mu.Lock()
	if t.idle == nil {
		t.idle = make(map[string][]*conn)
	}
	cs := t.idle[c.key]
	if len(cs) >= max {
		t.mu.Unlock()
		c.nc.Close()
		return
	}
	t.idle[c.key] = append(cs, c)
	t.mu.Unlock()
}

// get returns a kept connection to key that still looks open, or dials one.
func (t *Transport) get(ctx context.Context, key string, u *url.URL) (*conn, error) {
	timeout := t.IdleConnTimeout
	if timeout <= 0 {
		timeout = DefaultIdleConnTimeout
	}
	for {
		t.mu.Lock()
		cs := t.idle[key]
		if len(cs) == 0 {
			t.mu.Unlock()
			break
		}
		c := cs[len(cs)-1]
		cs[len(cs)-1] = nil
		t.idle[key] = cs[:len(cs)-1]
		t.mu.Unlock()
		if time.Since(c.idleAt) < timeout && open(c.raw) {
			return c, nil
		}
		c.nc.Close()
	}
	return t.dial(ctx, key, u)
}

func (t *Transport) dial(ctx context.Context, key string, u *url.URL) (*conn, error) {
	dial := t.DialContext
	if dial == nil {
		d := &net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	addr := hostPort(u)
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	nc := raw
	if u.Scheme == "https" {
		cfg := &tls.Config{}
		if t.TLSClientConfig != nil {
			cfg = t.TLSClientConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"}
		hs := t.TLSHandshakeTimeout
		if hs <= 0 {
			hs = DefaultTLSHandshakeTimeout
		}
		hctx, cancel := context.WithTimeout(ctx, hs)
		tc := tls.Client(raw, cfg)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, err
		}
		nc = tc
	}
	return &conn{key: key, raw: raw, nc: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}, nil
}

type conn struct {
	key    string
	raw    net.Conn // the TCP connection, under TLS for https
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool
	idleAt time.Time
}

// body is a response body on a kept connection: read to its end it gives
// the connection back; closed early or failed, it closes it.
type body struct {
	rc    io.ReadCloser
	t     *Transport
	c     *conn
	stop  func() bool
	reuse bool
	ctx   context.Context

	readMu sync.Mutex // one Read at a time
	mu     sync.Mutex // guards ended and err
	ended  bool       // the connection was given back or closed
	err    error      // what Read returns once ended
}

var errBodyClosed = errors.New("h1: read on a closed response body")

func (b *body) Read(p []byte) (int, error) {
	b.readMu.Lock()
	defer b.readMu.Unlock()
	b.mu.Lock()
	ended, endErr := b.ended, b.err
	b.mu.Unlock()
	if ended {
		return 0, endErr
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.end(true, io.EOF)
	case err != nil:
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
		b.end(false, err)
	}
	return n, err
}

// Close closes the connection unless the body was read to its end. It
// does not drain what is left (net/http's body reader would, which for an
// abandoned stream could take minutes), and a Read blocked in another
// goroutine fails at once.
func (b *body) Close() error {
	b.end(false, errBodyClosed)
	return nil
}

// end gives the connection back (ok) or closes it, once: whichever of
// Read and Close comes first decides, so a connection already given back
// to the pool is never closed under its next user.
func (b *body) end(ok bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return
	}
	b.ended, b.err = true, err
	if ok {
		b.t.release(b.c, b.stop, b.reuse)
		return
	}
	b.stop()
	b.c.nc.Close()
}

func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// replayable is net/http's rule for sending a request twice.
func replayable(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

// rewound is req with its body ready to be sent again, if it can be.
func rewound(req *http.Request) (*http.Request, bool) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, true
	}
	if req.GetBody == nil {
		return nil, false
	}
	b, err := req.GetBody()
	if err != nil {
		return nil, false
	}
	again := *req
	again.Body = b
	return &again, true
}
