// Package awstest gives tests a real AWS protocol endpoint: the one in
// AWS_ENDPOINT_URL (moto_server started by `make test`, LocalStack, or AWS),
// or, when that is unset, a moto_server this package starts on a free port.
// It never fakes DynamoDB, KMS or SNS.
package awstest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/synthstack/byok/shared/awsclient"
)

// Emulator is a running AWS endpoint.
type Emulator struct {
	URL string
	cmd *exec.Cmd
}

// Start returns the endpoint of AWS_ENDPOINT_URL, or starts moto_server.
// It fails with a clear message naming the missing tool.
func Start() (*Emulator, error) {
	if u := os.Getenv("AWS_ENDPOINT_URL"); u != "" {
		return &Emulator{URL: u}, nil
	}
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, fmt.Errorf("moto_server not found on PATH: install it with `pip install 'moto[server]'` or set AWS_ENDPOINT_URL to a running emulator")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	e := &Emulator{URL: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(e.URL + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			return e, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.Stop()
	return nil, fmt.Errorf("moto_server did not answer on %s within 30s", e.URL)
}

// Stop ends an emulator this package started.
func (e *Emulator) Stop() {
	if e != nil && e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Kill()
		_ = e.cmd.Wait()
	}
}

var (
	mu     sync.Mutex
	shared *Emulator
)

// Main is for TestMain: it makes sure an endpoint is running, points
// AWS_ENDPOINT_URL at it for the package's tests, runs them and stops it.
func Main(m *testing.M) int {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "awstest:", err)
		return 1
	}
	mu.Lock()
	shared = e
	mu.Unlock()
	os.Setenv("AWS_ENDPOINT_URL", e.URL)
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		os.Setenv("AWS_ACCESS_KEY_ID", "test")
		os.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	}
	if os.Getenv("AWS_REGION") == "" {
		os.Setenv("AWS_REGION", "us-east-1")
	}
	code := m.Run()
	e.Stop()
	return code
}

// Config returns an SDK config for the endpoint set up by Main.
func Config(t testing.TB) aws.Config {
	t.Helper()
	if os.Getenv("AWS_ENDPOINT_URL") == "" {
		t.Fatal("awstest: AWS_ENDPOINT_URL unset; call awstest.Main from TestMain")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := awsclient.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Prefix returns a table-name prefix unique to this test, so tests sharing
// one emulator never see each other's data.
func Prefix(t testing.TB) string {
	t.Helper()
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	return fmt.Sprintf("t%d-%s-", time.Now().UnixNano()%1e9, name)
}
