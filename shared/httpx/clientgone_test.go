package httpx

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"log/slog"

	"github.com/synthstack/byok/shared/apperr"
)

type syncBuf struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.String()
}

// A client that disconnects while the handler waits on storage is logged
// as 499 (client went away), never as a 500 internal or a 503, whatever
// error the handler then writes.
func TestClientGoneLogged499(t *testing.T) {
	for name, handlerErr := range map[string]func(ctx context.Context) error{
		"plain context error": func(ctx context.Context) error { return ctx.Err() },
		"wrapped as 503": func(ctx context.Context) error {
			return apperr.Wrap(ctx.Err(), apperr.ServiceUnavailable, "storage is unavailable")
		},
		"nothing written": nil,
	} {
		t.Run(name, func(t *testing.T) {
			logs := &syncBuf{}
			log := slog.New(slog.NewJSONHandler(logs, nil))
			started, done := make(chan struct{}), make(chan struct{})
			srv := httptest.NewServer(Middleware(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				defer close(done)
				close(started)
				<-r.Context().Done() // a storage call that outlives the client
				if handlerErr != nil {
					WriteError(w, r, handlerErr(r.Context()))
				}
			})))
			defer srv.Close()
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/keys", nil)
			go func() { <-started; cancel() }()
			if _, err := http.DefaultClient.Do(req); err == nil {
				t.Fatal("request succeeded")
			}
			<-done
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(logs.String(), `"msg":"request"`) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			var access map[string]any
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) != nil {
					t.Fatalf("log line %q", line)
				}
				if m["level"] == "ERROR" {
					t.Errorf("client gone logged as an error: %s", line)
				}
				if m["msg"] == "request" {
					access = m
				}
			}
			if access == nil || access["status"] != float64(499) {
				t.Fatalf("access line %v, want status 499; logs:\n%s", access, logs)
			}
		})
	}
}
