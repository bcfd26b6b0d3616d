package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an httptest server that counts the connections opened
// to it.
func countingServer(t *testing.T, h http.Handler, tls bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	if tls {
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	return ts, &n
}

func call(t *testing.T, c *http.Client, method, u, body string) (int, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp.StatusCode, string(b)
}

func echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	})
}

func TestKeepsTheConnection(t *testing.T) {
	ts, opened := countingServer(t, echo(), false)
	c := &http.Client{Transport: &Transport{}}
	for i := range 5 {
		code, got := call(t, c, "POST", ts.URL+"/v1/x", fmt.Sprintf(`{"n":%d}`, i))
		if want := fmt.Sprintf(`POST /v1/x {"n":%d}`, i); code != 200 || got != want {
			t.Fatalf("got %d %q, want 200 %q", code, got, want)
		}
	}
	if code, got := call(t, c, "GET", ts.URL+"/get", ""); code != 200 || got != "GET /get " {
		t.Fatalf("GET: %d %q", code, got)
	}
	if n := opened.Load(); n != 1 {
		t.Fatalf("%d connections opened for 6 sequential requests, want 1", n)
	}
}

func TestChunkedAndEmptyBodiesKeepTheConnection(t *testing.T) {
	ts, opened := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		}
	}), false)
	c := &http.Client{Transport: &Transport{}}
	for range 3 {
		if code, got := call(t, c, "GET", ts.URL+"/chunked", ""); code != 200 || got != "part0;part1;part2;" {
			t.Fatalf("chunked: %d %q", code, got)
		}
		if code, got := call(t, c, "GET", ts.URL+"/empty", ""); code != 204 || got != "" {
			t.Fatalf("204: %d %q", code, got)
		}
	}
	if n := opened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want 1", n)
	}
}

func TestTLS(t *testing.T) {
	var opened atomic.Int32
	ts := httptest.NewUnstartedServer(echo())
	ts.EnableHTTP2 = true // offered: the transport must still speak HTTP/1.1
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	tr := &Transport{TLSClientConfig: ts.Client().Transport.(*http.Transport).TLSClientConfig}
	c := &http.Client{Transport: tr}
	for range 3 {
		resp, err := c.Post(ts.URL+"/s", "text/plain", strings.NewReader("hi"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "POST /s hi" || resp.Proto != "HTTP/1.1" {
			t.Fatalf("got %d %q over %s", resp.StatusCode, b, resp.Proto)
		}
	}
	if n := opened.Load(); n != 1 {
		t.Fatalf("%d TLS connections opened, want 1", n)
	}
	// Without the test CA the certificate is refused: verification is on.
	if _, err := (&http.Client{Transport: &Transport{}}).Get(ts.URL); err == nil {
		t.Fatal("an untrusted certificate was accepted")
	}
}

func TestConnectionCloseIsNotKept(t *testing.T) {
	ts, opened := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	}), false)
	c := &http.Client{Transport: &Transport{}}
	for range 3 {
		if code, got := call(t, c, "GET", ts.URL, ""); code != 200 || got != "bye" {
			t.Fatalf("got %d %q", code, got)
		}
	}
	if n := opened.Load(); n != 3 {
		t.Fatalf("%d connections for 3 answers marked Connection: close, want 3", n)
	}
}

// rawServer answers each accepted connection with serve, for answers
// net/http's server would not give.
func rawServer(t *testing.T, serve func(n int, c net.Conn)) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(accepted.Add(1))
			go func() {
				defer c.Close()
				serve(n, c)
			}()
		}
	}()
	return "http://" + ln.Addr().String(), &accepted
}

// readRequest reads one request and its body from br.
func readRequest(br *bufio.Reader) (string, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(req.Body)
	return string(b), err
}

func TestServerClosedIdleConnection(t *testing.T) {
	// The server answers one request per connection and then closes it
	// while advertising keep-alive: the kept connection is found closed
	// before it is used, and the next request goes on a new one.
	u, accepted := rawServer(t, func(_ int, c net.Conn) {
		if _, err := readRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	c := &http.Client{Transport: &Transport{}}
	for i := range 3 {
		if code, got := call(t, c, "POST", u, "x"); code != 200 || got != "ok" {
			t.Fatalf("request %d: %d %q", i, code, got)
		}
		time.Sleep(20 * time.Millisecond) // let the close arrive
	}
	if n := accepted.Load(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}

// dropSecond is a server whose first connection answers one request and
// drops the next one unanswered (a close racing the request); later
// connections answer everything. It records each body it read.
func dropSecond(t *testing.T) (string, *atomic.Int32, func() string) {
	var mu sync.Mutex
	var bodies []string
	u, accepted := rawServer(t, func(n int, c net.Conn) {
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			b, err := readRequest(br)
			if err != nil {
				return
			}
			mu.Lock()
			bodies = append(bodies, b)
			mu.Unlock()
			if n == 1 && i == 1 {
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
		}
	})
	return u, accepted, func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(bodies, ",")
	}
}

func TestASentPostIsNotSentTwice(t *testing.T) {
	// The provider may have started (and billed) the dropped call.
	u, accepted, seen := dropSecond(t)
	c := &http.Client{Transport: &Transport{}}
	call(t, c, "POST", u, "first")
	req, _ := http.NewRequest("POST", u, strings.NewReader("second"))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("a dropped POST came back answered")
	}
	if got := seen(); got != "first,second" {
		t.Fatalf("server read %q, want first,second (no resend)", got)
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestRepeatableRequestsAreSentAgain(t *testing.T) {
	for _, tc := range []struct {
		name, method string
		header       http.Header
	}{
		{"GET", "GET", nil},
		{"POST with Idempotency-Key", "POST", http.Header{"Idempotency-Key": {"k1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, accepted, seen := dropSecond(t)
			c := &http.Client{Transport: &Transport{}}
			call(t, c, tc.method, u, "first")
			req, _ := http.NewRequest(tc.method, u, strings.NewReader("second"))
			maps.Copy(req.Header, tc.header)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "second" {
				t.Fatalf("answer %q", b)
			}
			if got := seen(); got != "first,second,second" {
				t.Fatalf("server read %q, want first,second,second", got)
			}
			if n := accepted.Load(); n != 2 {
				t.Fatalf("%d connections, want 2", n)
			}
		})
	}
}

// failingWrites fails every write after the first n on connections it
// dials: a kept connection that died between its check and its use.
type failingWrites struct {
	net.Conn
	left *atomic.Int32
}

func (f failingWrites) Write(p []byte) (int, error) {
	if f.left.Add(-1) < 0 {
		return 0, errors.New("broken pipe (test)")
	}
	return f.Conn.Write(p)
}

func TestARequestThatDidNotGetOutIsSentAgain(t *testing.T) {
	ts, opened := countingServer(t, echo(), false)
	var dials atomic.Int32
	tr := &Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		left := &atomic.Int32{}
		left.Store(1000)
		if dials.Add(1) == 1 {
			left.Store(1) // the first connection takes one request, then breaks
		}
		return failingWrites{Conn: c, left: left}, nil
	}}
	c := &http.Client{Transport: tr}
	call(t, c, "POST", ts.URL+"/a", "one")
	// A body without GetBody cannot be sent again: the error comes back.
	req, _ := http.NewRequest("POST", ts.URL+"/b", io.MultiReader(strings.NewReader("x")))
	if _, err := c.Do(req); err == nil {
		t.Fatal("a request with a body that cannot be rewound was sent again")
	}
	dials.Store(0) // the next dial breaks after one request too
	call(t, c, "POST", ts.URL+"/c", "one")
	if code, got := call(t, c, "POST", ts.URL+"/d", "two"); code != 200 || got != "POST /d two" {
		t.Fatalf("after a failed write on a kept connection: %d %q", code, got)
	}
	if n := opened.Load(); n != 3 {
		t.Fatalf("%d connections, want 3", n)
	}
}

func TestEarlyCloseClosesTheConnection(t *testing.T) {
	// An abandoned stream: Close must not wait for the rest of it, and the
	// connection is not reused.
	gone := make(chan struct{})
	ts, opened := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/short" {
			io.WriteString(w, "short")
			return
		}
		for {
			select {
			case <-r.Context().Done():
				close(gone)
				return
			case <-time.After(10 * time.Millisecond):
			}
			io.WriteString(w, "data: tick\n\n")
			w.(http.Flusher).Flush()
		}
	}), false)
	c := &http.Client{Transport: &Transport{}}
	resp, err := c.Get(ts.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	<-gone // the server saw the client go (the test's timeout bounds this)
	if code, got := call(t, c, "GET", ts.URL+"/short", ""); code != 200 || got != "short" {
		t.Fatalf("after an early close: %d %q", code, got)
	}
	if n := opened.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the abandoned one is not reused)", n)
	}
	if _, err := resp.Body.Read(buf); err == nil {
		t.Fatal("a read after Close succeeded")
	}
}

func TestCancelUnblocksABodyRead(t *testing.T) {
	ts, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}), false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL, nil)
	resp, err := (&http.Client{Transport: &Transport{}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	_, err = resp.Body.Read(buf)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
}

func TestCancelBeforeTheAnswer(t *testing.T) {
	ts, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // net/http's server sees the client go only once the body is read
		<-r.Context().Done()
	}), false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.URL, strings.NewReader("x"))
	_, err := (&http.Client{Transport: &Transport{}}).Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
}

func TestInterimAnswersAreSkipped(t *testing.T) {
	u, _ := rawServer(t, func(_ int, c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := readRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
		}
	})
	c := &http.Client{Transport: &Transport{}}
	for range 2 {
		if code, got := call(t, c, "GET", u, ""); code != 200 || got != "final" {
			t.Fatalf("got %d %q", code, got)
		}
	}
}

type recordingRT struct{ n atomic.Int32 }

func (r *recordingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r.n.Add(1)
	return &http.Response{StatusCode: 299, Body: http.NoBody, Request: req}, nil
}

func TestProxiedAndOtherRequestsGoToTheFallback(t *testing.T) {
	fb := &recordingRT{}
	proxy, _ := url.Parse("http://proxy.invalid:3128")
	tr := &Transport{Fallback: fb, Proxy: func(*http.Request) (*url.URL, error) { return proxy, nil }}
	resp, err := (&http.Client{Transport: tr}).Get("http://example.invalid/")
	if err != nil || resp.StatusCode != 299 {
		t.Fatalf("proxied request: %v %v", resp, err)
	}
	tr = &Transport{Fallback: fb}
	req, _ := http.NewRequest("GET", "http://example.invalid/", nil)
	req.Header.Set("Upgrade", "websocket")
	if resp, err := tr.RoundTrip(req); err != nil || resp.StatusCode != 299 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if n := fb.n.Load(); n != 2 {
		t.Fatalf("fallback carried %d requests, want 2", n)
	}
}

func TestConcurrentRequests(t *testing.T) {
	ts, opened := countingServer(t, echo(), false)
	tr := &Transport{MaxIdleConnsPerHost: 4}
	c := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				body := fmt.Sprintf("%d-%d", g, i)
				if code, got := call(t, c, "PUT", ts.URL+"/c", body); code != 200 || got != "PUT /c "+body {
					t.Errorf("got %d %q", code, got)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := opened.Load(); n > 8+40 {
		t.Fatalf("%d connections for 8 concurrent callers", n)
	}
	tr.CloseIdleConnections()
	if code, _ := call(t, c, "GET", ts.URL, ""); code != 200 {
		t.Fatal("after CloseIdleConnections")
	}
}

func TestDialFailure(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	body := &closeCounter{Reader: strings.NewReader("x")}
	req, _ := http.NewRequest("POST", "http://"+addr, body)
	_, err := (&Transport{}).RoundTrip(req)
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Fatalf("got %v, want a dial error", err)
	}
	if body.closed.Load() != 1 {
		t.Fatal("the request body was not closed on a failed dial")
	}
}

type closeCounter struct {
	io.Reader
	closed atomic.Int32
}

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

func TestReadAfterEOFKeepsSayingEOF(t *testing.T) {
	ts, _ := countingServer(t, echo(), false)
	resp, err := (&http.Client{Transport: &Transport{}}).Get(ts.URL + "/eof")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if n, err := resp.Body.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read after EOF: %d, %v; want 0, io.EOF", n, err)
		}
	}
	resp.Body.Close()
}

func TestCloseDuringABlockedReadSparesTheNextUser(t *testing.T) {
	// A Close from another goroutine unblocks a Read at once; and a Close
	// that comes after the body was read to its end (its connection back
	// in the pool, maybe in use again) does not touch the connection.
	release, gate := make(chan struct{}), make(chan struct{})
	ts, opened := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gated" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-gate
			io.WriteString(w, "later")
			return
		}
		if r.URL.Path == "/slow" {
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, "quick")
	}), false)
	c := &http.Client{Transport: &Transport{}}
	resp, err := c.Get(ts.URL + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	io.ReadFull(resp.Body, buf)
	errc := make(chan error, 1)
	go func() { _, err := resp.Body.Read(buf); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	resp.Body.Close()
	if err := <-errc; err == nil {
		t.Fatal("a Read blocked while the body was closed succeeded")
	}
	close(release)

	first, err := c.Get(ts.URL + "/quick")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(first.Body) // the connection goes back to the pool
	second, err := c.Get(ts.URL + "/gated")
	if err != nil {
		t.Fatal(err)
	}
	first.Body.Close() // late: must not close the connection second is using
	close(gate)        // second's body is sent only now
	if b, err := io.ReadAll(second.Body); err != nil || string(b) != "later" {
		t.Fatalf("the next user's answer: %q, %v", b, err)
	}
	second.Body.Close()
	if n := opened.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the closed stream's, then one kept for both later calls)", n)
	}
}

// partialWrites writes only part of the first n-th write on the first
// connection, then fails: a request cut off on its way out.
type partialWrites struct {
	net.Conn
	calls *atomic.Int32
}

func (p partialWrites) Write(b []byte) (int, error) {
	if p.calls.Add(1) == 2 {
		n, _ := p.Conn.Write(b[:len(b)/2])
		return n, errors.New("connection reset (test)")
	}
	return p.Conn.Write(b)
}

func TestAPostCutOffOnItsWayOutIsNotSentAgain(t *testing.T) {
	// Half of the request reached the provider: it may act on it, so the
	// request is not sent again.
	ts, opened := countingServer(t, echo(), false)
	var dials atomic.Int32
	tr := &Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil || dials.Add(1) > 1 {
			return c, err
		}
		return partialWrites{Conn: c, calls: &atomic.Int32{}}, nil
	}}
	c := &http.Client{Transport: tr}
	call(t, c, "POST", ts.URL+"/a", "one")
	req, _ := http.NewRequest("POST", ts.URL+"/b", strings.NewReader(strings.Repeat("x", 1000)))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("a POST cut off on its way out came back answered (sent again?)")
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials, want 1: the cut-off POST was sent again", n)
	}
	_ = opened
}

func TestAnAnswerBeforeTheWholeBodyIsReturned(t *testing.T) {
	// The server refuses a large upload after its headers and closes
	// without reading it: the caller gets the 413, not a write error.
	u, _ := rawServer(t, func(_ int, c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!")
		time.Sleep(20 * time.Millisecond)
	})
	req, _ := http.NewRequest("POST", u, bytes.NewReader(make([]byte, 32<<20)))
	resp, err := (&http.Client{Transport: &Transport{}}).Do(req)
	if err != nil {
		t.Fatalf("got %v, want the server's 413", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || string(b) != "too big!" {
		t.Fatalf("got %d %q", resp.StatusCode, b)
	}
}

func TestAnswersThatEndTheConnection(t *testing.T) {
	// An HTTP/1.0 answer and one followed by stray bytes are returned,
	// but their connections are not kept.
	for _, tc := range []struct{ name, answer string }{
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{"stray bytes", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, accepted := rawServer(t, func(_ int, c net.Conn) {
				br := bufio.NewReader(c)
				for {
					if _, err := readRequest(br); err != nil {
						return
					}
					io.WriteString(c, tc.answer)
				}
			})
			c := &http.Client{Transport: &Transport{}}
			for range 2 {
				if code, got := call(t, c, "GET", u, ""); code != 200 || got != "ok" {
					t.Fatalf("got %d %q", code, got)
				}
			}
			if n := accepted.Load(); n != 2 {
				t.Fatalf("%d connections, want 2 (none kept)", n)
			}
		})
	}
}

func TestHeadAndTrailers(t *testing.T) {
	ts, opened := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "body")
		w.Header().Set("X-Sum", "42")
	}), false)
	c := &http.Client{Transport: &Transport{}}
	for range 2 {
		resp, err := c.Head(ts.URL)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("HEAD: %v %v", resp, err)
		}
		resp.Body.Close()
		resp, err = c.Get(ts.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "body" || resp.Trailer.Get("X-Sum") != "42" {
			t.Fatalf("GET: %q, trailer %q", b, resp.Trailer.Get("X-Sum"))
		}
	}
	if n := opened.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

func TestAHugeHeadIsRefused(t *testing.T) {
	u, _ := rawServer(t, func(_ int, c net.Conn) {
		if _, err := readRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: ")
		chunk := strings.Repeat("a", 64<<10)
		for range (maxHeadBytes / len(chunk)) + 2 {
			if _, err := io.WriteString(c, chunk); err != nil {
				return
			}
		}
	})
	_, err := (&http.Client{Transport: &Transport{}}).Get(u)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("got %v, want the head refused as too large", err)
	}
}

func TestIdleConnectionsExpire(t *testing.T) {
	ts, opened := countingServer(t, echo(), false)
	tr := &Transport{IdleConnTimeout: 30 * time.Millisecond}
	c := &http.Client{Transport: tr}
	call(t, c, "GET", ts.URL, "")
	time.Sleep(60 * time.Millisecond)
	call(t, c, "GET", ts.URL, "")
	if n := opened.Load(); n != 2 {
		t.Fatalf("%d connections, want 2 (the first expired while idle)", n)
	}
}

func TestHandshakeTimeoutIsNamed(t *testing.T) {
	// A server that takes the connection and never speaks TLS.
	u, _ := rawServer(t, func(_ int, c net.Conn) { time.Sleep(500 * time.Millisecond) })
	tr := &Transport{TLSHandshakeTimeout: 30 * time.Millisecond}
	_, err := (&http.Client{Transport: tr}).Get(strings.Replace(u, "http://", "https://", 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || errors.Is(err, context.DeadlineExceeded) ||
		!strings.Contains(err.Error(), "TLS handshake") {
		t.Fatalf("got %v; want a timeout naming the TLS handshake, not the caller's deadline", err)
	}
}
