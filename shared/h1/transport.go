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
	"math"
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

	mu       sync.Mutex
	idle     map[string][]*conn // per scheme://host:port, most recent last
	sessions tls.ClientSessionCache
}

func (t *Transport) sessionCache() tls.ClientSessionCache {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sessions == nil {
		t.sessions = tls.NewLRUClientSessionCache(64)
	}
	return t.sessions
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
		c, err := t.get(req.Context(), key, req.URL, try == 0) // a resend goes on a new connection
		if err != nil {
			closeBody(req)
			if cerr := req.Context().Err(); cerr != nil {
				return nil, cerr
			}
			return nil, err
		}
		resp, err := t.exchange(c, req)
		if err == nil {
			return resp, nil
		}
		// A kept connection the server closed while it sat idle fails
		// before any byte of an answer. As net/http does, send once more
		// (on another connection) if not one byte of the request got out,
		// or if it may be repeated (GET and the like, or with an
		// Idempotency-Key): a chat call that reached the provider, even in
		// part, may have been billed.
		var nr noResponse
		if try == 0 && c.reused && errors.As(err, &nr) && (nr.written == 0 || replayable(req)) && req.Context().Err() == nil {
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
			c.close()
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

// handshakeTimeout is a TLS handshake that outlasted TLSHandshakeTimeout;
// a net.Error that reports a timeout, as net/http's.
type handshakeTimeout struct {
	addr  string
	after time.Duration
}

func (e handshakeTimeout) Error() string {
	return fmt.Sprintf("h1: TLS handshake with %s took longer than %s", e.addr, e.after)
}
func (handshakeTimeout) Timeout() bool   { return true }
func (handshakeTimeout) Temporary() bool { return true }

// noResponse marks a failure before the first byte of the answer;
// written is how many bytes of the request had reached the connection.
type noResponse struct {
	err     error
	written int64
}

func (e noResponse) Error() string { return e.err.Error() }
func (e noResponse) Unwrap() error { return e.err }

// Limits on an answer's head, as net/http's: its size, and how many
// interim 1xx answers may come first.
const (
	maxHeadBytes   = 10 << 20
	maxInterim     = 5
	earlyReplyWait = 50 * time.Millisecond
)

// exchange writes req on c and reads the response head. On error c is
// closed.
func (t *Transport) exchange(c *conn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	stop := context.AfterFunc(ctx, func() { c.raw.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.close()
		return nil, err
	}
	c.out.n = 0
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		// A server may answer before it has read the whole request (a 413,
		// a 401) and close: its answer is the one to return, not the write
		// error. Give it a moment to be in the socket.
		if c.out.n > 0 && ctx.Err() == nil { // a cancel's deadline broke the write: nothing to wait for
			c.raw.SetReadDeadline(time.Now().Add(earlyReplyWait))
			if resp, rerr := t.readHead(c, req); rerr == nil {
				c.raw.SetReadDeadline(time.Time{})
				if ctx.Err() == nil { // else the cancel's deadline may have been undone
					return t.answer(c, req, resp, stop, false), nil
				}
			}
		}
		return fail(noResponse{err: fmt.Errorf("h1: sending the request: %w", err), written: c.out.n})
	}
	if _, err := c.br.Peek(1); err != nil {
		return fail(noResponse{err: fmt.Errorf("h1: waiting for the response: %w", err), written: c.out.n})
	}
	resp, err := t.readHead(c, req)
	if err != nil {
		return fail(err)
	}
	return t.answer(c, req, resp, stop, !resp.Close && !req.Close && resp.ProtoAtLeast(1, 1)), nil
}

// readHead reads the answer's head, skipping interim 1xx answers (103
// Early Hints, 100 Continue); 101 would switch protocols, which requests
// here never ask for.
func (t *Transport) readHead(c *conn, req *http.Request) (*http.Response, error) {
	c.in.n = maxHeadBytes
	defer func() { c.in.n = math.MaxInt64 }()
	for range maxInterim + 1 {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			if c.in.n <= 0 {
				return nil, fmt.Errorf("h1: the answer's head is larger than %d bytes", maxHeadBytes)
			}
			return nil, fmt.Errorf("h1: reading the response: %w", err)
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return nil, errors.New("h1: unexpected 101 Switching Protocols")
		}
		if resp.StatusCode < 100 || resp.StatusCode >= 200 {
			return resp, nil
		}
	}
	return nil, fmt.Errorf("h1: more than %d interim 1xx answers", maxInterim)
}

// answer hands resp to the caller with a body that gives c back at its
// end (or at once when there is no body), if reuse.
func (t *Transport) answer(c *conn, req *http.Request, resp *http.Response, stop func() bool, reuse bool) *http.Response {
	if resp.Body == http.NoBody {
		t.release(c, stop, reuse)
		return resp
	}
	resp.Body = &body{rc: resp.Body, t: t, c: c, stop: stop, reuse: reuse, ctx: req.Context()}
	return resp
}

// release keeps c for reuse when its exchange ended cleanly, else closes it.
func (t *Transport) release(c *conn, stop func() bool, reuse bool) {
	// stop reports false once the context's deadline trap has been set on
	// the connection: it is then unusable.
	if !stop() || !reuse || c.br.Buffered() > 0 {
		c.close()
		return
	}
	max := t.MaxIdleConnsPerHost
	if max <= 0 {
		max = DefaultMaxIdleConnsPerHost
	}
	now := time.Now()
	c.idleAt, c.reused = now, true
	t.mu.Lock()
	if t.idle == nil {
		t.idle = make(map[string][]*conn)
	}
	// The oldest come first: when one is given back, drop those idle too
	// long, so a burst's connections do not linger half-closed while the
	// host is still in use (CloseIdleConnections drops the rest).
	cs := t.idle[c.key]
	var expired []*conn
	for len(cs) > 0 && now.Sub(cs[0].idleAt) >= t.idleTimeout() {
		expired = append(expired, cs[0])
		cs[0] = nil
		cs = cs[1:]
	}
	full := len(cs) >= max
	if !full {
		cs = append(cs, c)
	}
	t.idle[c.key] = cs
	t.mu.Unlock()
	for _, e := range expired {
		e.close()
	}
	if full {
		c.close()
	}
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleConnTimeout > 0 {
		return t.IdleConnTimeout
	}
	return DefaultIdleConnTimeout
}

// get returns a kept connection to key that still looks open (if kept),
// or dials one.
func (t *Transport) get(ctx context.Context, key string, u *url.URL, kept bool) (*conn, error) {
	timeout := t.idleTimeout()
	for kept {
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
		c.close()
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
		if cfg.ClientSessionCache == nil { // resume TLS sessions on new connections
			cfg.ClientSessionCache = t.sessionCache()
		}
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
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				// Not the caller's deadline: say whose it was.
				return nil, handshakeTimeout{addr: addr, after: hs}
			}
			return nil, err
		}
		nc = tc
	}
	c := &conn{key: key, raw: raw, nc: nc}
	c.in = limitedReader{r: nc, n: math.MaxInt64}
	c.out = countingWriter{w: nc}
	c.br = bufio.NewReaderSize(&c.in, 4<<10)
	c.bw = bufio.NewWriterSize(&c.out, 4<<10)
	return c, nil
}

type conn struct {
	key    string
	raw    net.Conn // the TCP connection, under TLS for https
	nc     net.Conn
	in     limitedReader  // under br: bounds an answer's head
	out    countingWriter // under bw: what of a request got out
	br     *bufio.Reader
	bw     *bufio.Writer
	reused bool
	idleAt time.Time
}

// close closes the TCP connection itself: closing a TLS connection first
// writes a close_notify, which waits up to 5 s for a peer that is not
// reading.
func (c *conn) close() { c.raw.Close() }

// limitedReader reads from r until n bytes have been read.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("h1: read limit reached")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// countingWriter counts what reaches w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	return n, err
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
	b.c.close()
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
