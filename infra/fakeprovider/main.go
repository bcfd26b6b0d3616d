// Command fakeprovider serves the bundled fake upstream of every provider
// (shared/fakeprovider, the same fake the tests use, speaking each
// provider's wire protocol) on a local port, so `make run` can chat with no
// network and no real key. Every key is valid and every chat gets a canned
// reply (streamed when asked). State is in memory only.
//
//	go run ./infra/fakeprovider [-port N] [-port-file PATH]
//
// -port (or FAKE_PROVIDER_PORT) picks the port; 0, the default, a free one.
// -port-file receives the chosen port once it is listening. The base URLs
// to point byok at are printed: OPENAI_BASE_URL=http://127.0.0.1:N/v1,
// ANTHROPIC_BASE_URL=http://127.0.0.1:N, GOOGLE_BASE_URL=.../google,
// MISTRAL_BASE_URL=.../mistral/v1 and COHERE_BASE_URL=.../cohere.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/synthstack/byok/shared/fakeprovider"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	def := 0
	if s := os.Getenv("FAKE_PROVIDER_PORT"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 65535 {
			fmt.Fprintf(os.Stderr, "fakeprovider: FAKE_PROVIDER_PORT=%q is not a port number\n", s)
			os.Exit(2)
		}
		def = n
	}
	port := flag.Int("port", def, "port to listen on (0: a free one)")
	portFile := flag.String("port-file", "", "write the chosen port to this file once listening")
	flag.Parse()

	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintf(os.Stderr, "fakeprovider: cannot listen on 127.0.0.1:%d (%v); is another fake provider running? set FAKE_PROVIDER_PORT to a free port\n", *port, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, closeFake := handler()
	defer closeFake()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	addr := ln.Addr().(*net.TCPAddr)
	if *portFile != "" {
		if err := os.WriteFile(*portFile, []byte(strconv.Itoa(addr.Port)+"\n"), 0o600); err != nil {
			fmt.Fprintf(os.Stderr, "fakeprovider: write %s: %v\n", *portFile, err)
			os.Exit(1)
		}
	}
	u := "http://127.0.0.1:" + strconv.Itoa(addr.Port)
	fmt.Printf("fake provider on %s: OPENAI_BASE_URL=%s/v1 ANTHROPIC_BASE_URL=%s GOOGLE_BASE_URL=%s/google MISTRAL_BASE_URL=%s/mistral/v1 COHERE_BASE_URL=%s/cohere (any key is valid; canned replies)\n",
		u, u, u, u, u, u)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("fake provider stopped", "err", err.Error())
		os.Exit(1)
	}
}

// handler starts the fake with every key valid and returns a handler
// relaying to it. The fake listens on a port of its own choosing
// (httptest); the relay gives it the port asked for. FlushInterval -1
// passes each SSE event on at once.
func handler() (http.Handler, func()) {
	fake := fakeprovider.New()
	fake.SetDefault(fakeprovider.OK())
	target, err := url.Parse(fake.URL())
	if err != nil {
		panic(err) // the fake's own URL
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	rp.Transport = fake.Client().Transport
	return rp, fake.Close
}
