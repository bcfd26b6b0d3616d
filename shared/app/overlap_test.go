package app_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/awstest"
)

// queryGate watches (and can hold) the DynamoDB Query calls, the user-row
// read of a chat request: started counts them, inFlight is those not yet
// answered, cancelled those whose caller gave up while held.
type queryGate struct {
	next                        http.RoundTripper
	started, inFlight, canceled atomic.Int64
	mu                          sync.Mutex
	held                        chan struct{} // nil: Query goes through
}

func (g *queryGate) hold() {
	g.mu.Lock()
	g.held = make(chan struct{})
	g.mu.Unlock()
}

func (g *queryGate) release() {
	g.mu.Lock()
	if g.held != nil {
		close(g.held)
		g.held = nil
	}
	g.mu.Unlock()
}

func (g *queryGate) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("X-Amz-Target") != "DynamoDB_20120810.Query" {
		return g.next.RoundTrip(r)
	}
	g.started.Add(1)
	g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	g.mu.Lock()
	held := g.held
	g.mu.Unlock()
	if held != nil {
		select {
		case <-held:
		case <-r.Context().Done():
			g.canceled.Add(1)
			return nil, r.Context().Err()
		}
	}
	return g.next.RoundTrip(r)
}

func gatedEnv(t *testing.T) (*testEnv, *queryGate) {
	e := newEnv(t, nil)
	e.setTier("alice", "premium")
	e.saveKey("alice", "openai", openAIKey(t))
	g := &queryGate{next: http.DefaultTransport.(*http.Transport).Clone()}
	cfg := awstest.Config(t)
	cfg.HTTPClient = &http.Client{Transport: g}
	e.startWith(app.NewClients(cfg))
	return e, g
}

// docs/performance.md, row 9: the user row (account and keys) is read while the
// request body is still arriving, so the storage round trip overlaps the
// body read and parse instead of following it: for a body of unknown
// length (chunked) and for one declared at 4 KiB or more.
func TestUserReadOverlapsBodyRead(t *testing.T) {
	e, g := gatedEnv(t)
	for name, body := range map[string][]byte{
		"chunked":        chatBody("gpt-4o-mini", 5, "hello"),
		"Content-Length": chatBody("gpt-4o-mini", 5, strings.Repeat("hello ", 1000)),
	} {
		g.started.Store(0)
		pr, pw := io.Pipe()
		defer pw.Close() // a failure below must not leave the handler reading
		req, err := http.NewRequest("POST", e.srv.URL+"/v1/chat/completions", pr)
		if err != nil {
			t.Fatal(err)
		}
		if name == "Content-Length" {
			req.ContentLength = int64(len(body))
		}
		req.Header.Set("Authorization", "Bearer "+e.token("alice", ""))
		req.Header.Set("Content-Type", "application/json")
		type result struct {
			resp *http.Response
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := http.DefaultClient.Do(req)
			done <- result{resp, err}
		}()
		if _, err := pw.Write(body[:10]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, name+": the user-row read to start while the body is still arriving", func() bool { return g.started.Load() > 0 })
		if _, err := pw.Write(body[10:]); err != nil {
			t.Fatal(err)
		}
		pw.Close()
		res := <-done
		if res.err != nil {
			t.Fatal(res.err)
		}
		b, _ := io.ReadAll(res.resp.Body)
		res.resp.Body.Close()
		if res.resp.StatusCode != 200 || res.resp.Header.Get("X-Byok-Route") != "byok" {
			t.Fatalf("%s: %d route %q %s", name, res.resp.StatusCode, res.resp.Header.Get("X-Byok-Route"), b)
		}
		if n := g.started.Load(); n != 1 {
			t.Fatalf("%s: %d user-row reads for one request, want 1", name, n)
		}
	}
}

// A bad body is refused at once even while the storage read started for
// it is still waiting, and that read is abandoned (its call cancelled, no
// goroutine left waiting on storage); nothing reaches the provider.
func TestBadBodyDoesNotWaitForStorage(t *testing.T) {
	e, g := gatedEnv(t)
	g.hold()
	defer g.release()
	tok := e.token("alice", "")
	calls := e.fake.TotalCalls()
	for name, body := range map[string]string{
		"bad JSON":       `{"model":`,
		"duplicate key":  `{"model":"gpt-4o-mini","model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`,
		"unknown model":  `{"model":"llama-3","messages":[{"role":"user","content":"x"}]}`,
		"wrong type":     `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"n":"2"}`,
		"empty messages": `{"model":"gpt-4o-mini","messages":[]}`,
	} {
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/chat/completions", bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		// Far longer than the answer takes; the held read would never end.
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s: no answer while storage is held (the handler waited for it?): %v", name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 4 || resp.Header.Get("X-Byok-Route") != "none" {
			t.Fatalf("%s: %d route %q %s", name, resp.StatusCode, resp.Header.Get("X-Byok-Route"), b)
		}
	}
	waitFor(t, "the abandoned user-row reads to end while storage is still held", func() bool { return g.inFlight.Load() == 0 })
	if got := g.canceled.Load(); got != g.started.Load() {
		t.Fatalf("%d of %d held reads were cancelled", got, g.started.Load())
	}
	if n := e.fake.TotalCalls() - calls; n != 0 {
		t.Fatalf("%d upstream calls for refused requests", n)
	}
}
