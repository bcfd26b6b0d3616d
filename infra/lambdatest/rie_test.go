//go:build linux

package lambdatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

// maxBootstrapBytes is docs/api.md §14's size limit for one function binary.
const maxBootstrapBytes = 15_000_000

// findRIE locates aws-lambda-rie on PATH or in <repo>/bin/tools.
func findRIE(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p
	}
	p := filepath.Join(repoRoot(t), "bin", "tools", "aws-lambda-rie")
	if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return p
	}
	t.Fatal("aws-lambda-rie not found: run `make tools`")
	return ""
}

// buildBootstrap builds ./functions/<name> for this machine's architecture
// with the Lambda build flags and returns the path of its `bootstrap`.
func buildBootstrap(t *testing.T, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal("go not found on PATH")
	}
	build := func(arch string) (string, int64) {
		out := filepath.Join(t.TempDir(), "bootstrap")
		cmd := exec.Command(goBin, "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w -buildid=",
			"-o", out, "./functions/"+name)
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build ./functions/%s for linux/%s: %v\n%s", name, arch, err, b)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("bootstrap of %s (linux/%s): %d bytes (%.1f MB)", name, arch, st.Size(), float64(st.Size())/1e6)
		return out, st.Size()
	}
	// This machine runs the host's build; the size limit is the deployed
	// artifact's, linux/arm64 (template.yaml Architectures).
	out, size := build(runtime.GOARCH)
	if runtime.GOARCH != "arm64" {
		_, size = build("arm64")
	}
	if size > maxBootstrapBytes {
		t.Errorf("linux/arm64 bootstrap of %s is %d bytes; docs/api.md §14 allows at most %d", name, size, maxBootstrapBytes)
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects RIE's output (its own log, the REPORT lines and the
// function's stdout/stderr) for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rie is one running aws-lambda-rie serving one bootstrap.
type rie struct {
	url  string
	out  *lockedBuffer
	pid  int
	done chan struct{}
}

// startRIE runs `aws-lambda-rie --runtime-interface-emulator-address
// 127.0.0.1:<port> --runtime-api-address 127.0.0.1:<port2> <bootstrap>` in
// its own process group with exactly env, and stops it (and the bootstrap it
// spawned) when the test ends, whether it passed or not.
func startRIE(t *testing.T, rieBin, bootstrap string, env []string) *rie {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	// The Runtime API defaults to 127.0.0.1:9001; a port of our own lets
	// several emulators (other packages, a developer's) run side by side.
	apiAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(rieBin, "--runtime-interface-emulator-address", addr, "--runtime-api-address", apiAddr, bootstrap)
	cmd.Dir = filepath.Dir(bootstrap)
	cmd.Env = env
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start aws-lambda-rie: %v", err)
	}
	r := &rie{url: "http://" + addr + "/2015-03-31/functions/function/invocations", out: out, pid: cmd.Process.Pid,
		done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("aws-lambda-rie output:\n%s", out.String())
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return r
		}
		select {
		case <-r.done:
			t.Fatalf("aws-lambda-rie exited at start-up:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("aws-lambda-rie did not listen on %s within 10s:\n%s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// descendants returns the pids of every live descendant of pid (from /proc).
func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && !bytes.HasPrefix(bytes.TrimSpace(stat[i+1:]), []byte("Z"))
}

// stop asks RIE to shut down (it then stops and reaps the runtime), then
// SIGKILLs RIE's process group and the bootstrap's (RIE starts the runtime in
// a process group of its own) whatever happened, and checks nothing survived.
func (r *rie) stop(t *testing.T) {
	kids := descendants(r.pid)
	_ = syscall.Kill(r.pid, syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(2 * time.Second):
	}
	_ = syscall.Kill(-r.pid, syscall.SIGKILL)
	for _, k := range kids {
		_ = syscall.Kill(-k, syscall.SIGKILL) // its group, if it leads one
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Errorf("aws-lambda-rie (pid %d) did not exit after SIGKILL", r.pid)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, k := range kids {
		for alive(k) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(k) {
			t.Errorf("process %d started by aws-lambda-rie is still running", k)
		}
	}
}

// request is one HTTP call, sent as an API Gateway HTTP API (payload 2.0)
// event, or as a Lambda Function URL event to a lambdaurl function.
type request struct {
	method, path, route string
	query               string // raw query string, without "?"
	pathParams          map[string]string
	token               string
	body                string // JSON
}

func (q request) headers() map[string]string {
	headers := map[string]string{
		"accept":     "application/json",
		"host":       "api.example.test",
		"user-agent": "byok-rie-smoke",
	}
	if q.token != "" {
		headers["authorization"] = "Bearer " + q.token
	}
	if q.body != "" {
		headers["content-type"] = "application/json"
	}
	return headers
}

// urlEvent is q as a Function URL delivers it (routes are matched in code,
// so there is no route key or path parameters).
func (q request) urlEvent() events.LambdaFunctionURLRequest {
	now := time.Now()
	return events.LambdaFunctionURLRequest{
		Version:        "2.0",
		RawPath:        q.path,
		RawQueryString: q.query,
		Headers:        q.headers(),
		Body:           q.body,
		RequestContext: events.LambdaFunctionURLRequestContext{
			AccountID:    "anonymous",
			RequestID:    fmt.Sprintf("rie-%d", now.UnixNano()),
			APIID:        "smokeurl",
			DomainName:   "smokeurl.lambda-url.us-east-1.on.aws",
			DomainPrefix: "smokeurl",
			Time:         now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:    now.UnixMilli(),
			HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{
				Method: q.method, Path: q.path, Protocol: "HTTP/1.1", SourceIP: "127.0.0.1", UserAgent: "byok-rie-smoke",
			},
		},
	}
}

func (q request) event() events.APIGatewayV2HTTPRequest {
	now := time.Now()
	return events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RouteKey:       q.method + " " + q.route,
		RawPath:        q.path,
		RawQueryString: q.query,
		Headers:        q.headers(),
		Body:           q.body,
		PathParameters: q.pathParams,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			AccountID:    "123456789012",
			APIID:        "smoke",
			DomainName:   "api.example.test",
			DomainPrefix: "api",
			RequestID:    fmt.Sprintf("rie-%d", now.UnixNano()),
			RouteKey:     q.method + " " + q.route,
			Stage:        "$default",
			Time:         now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:    now.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method: q.method, Path: q.path, Protocol: "HTTP/1.1", SourceIP: "127.0.0.1", UserAgent: "byok-rie-smoke",
			},
		},
	}
}

// invoke sends one event through RIE and decodes the function's answer.
// With url, the event is a Function URL request and the answer lambdaurl's
// streamed integration response (see decodeStreamed), returned in the same
// shape as an HTTP API answer.
func (r *rie) invoke(t *testing.T, q request, url bool) (events.APIGatewayV2HTTPResponse, []byte) {
	t.Helper()
	var ev any = q.event()
	if url {
		ev = q.urlEvent()
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	raw := r.invokeRaw(t, q.method+" "+q.path, payload)
	if url {
		return decodeStreamed(t, q, raw)
	}
	var out events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(raw, &out); err != nil || out.StatusCode == 0 {
		t.Fatalf("%s %s: not an APIGatewayV2HTTPResponse (%v): %s", q.method, q.path, err, raw)
	}
	body := []byte(out.Body)
	if out.IsBase64Encoded {
		if body, err = base64.StdEncoding.DecodeString(out.Body); err != nil {
			t.Fatalf("%s %s: body: %v", q.method, q.path, err)
		}
	}
	return out, body
}

// invokeRaw sends one event payload through RIE and returns the function's
// answer as RIE gives it, failing the test when the function failed. what
// names the invocation in failure messages.
func (r *rie) invokeRaw(t *testing.T, what string, payload []byte) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: invoke: %v", what, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: RIE answered HTTP %d: %s", what, resp.StatusCode, raw)
	}
	var fnErr struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}
	if json.Unmarshal(raw, &fnErr) == nil && fnErr.ErrorType != "" {
		t.Fatalf("%s: function failed: %s: %s", what, fnErr.ErrorType, fnErr.ErrorMessage)
	}
	return raw
}

// streamDelimiter ends the JSON prelude (status, headers, cookies) of a
// streamed Function URL response; the body follows it as written
// (events.LambdaFunctionURLStreamingResponse, content type
// application/vnd.awslambda.http-integration-response).
var streamDelimiter = []byte{0, 0, 0, 0, 0, 0, 0, 0}

// decodeStreamed splits what RIE returns for a lambdaurl function (the
// runtime's whole streamed response, buffered) into the prelude and body.
func decodeStreamed(t *testing.T, q request, raw []byte) (events.APIGatewayV2HTTPResponse, []byte) {
	t.Helper()
	prelude, body, ok := bytes.Cut(raw, streamDelimiter)
	if !ok {
		t.Fatalf("%s %s: no streamed integration response (prelude + 8 NUL bytes + body): %q", q.method, q.path, raw)
	}
	var p struct {
		StatusCode int               `json:"statusCode"`
		Headers    map[string]string `json:"headers"`
		Cookies    []string          `json:"cookies"`
	}
	if err := json.Unmarshal(prelude, &p); err != nil || p.StatusCode == 0 {
		t.Fatalf("%s %s: bad prelude (%v): %q", q.method, q.path, err, prelude)
	}
	return events.APIGatewayV2HTTPResponse{StatusCode: p.StatusCode, Headers: p.Headers, Cookies: p.Cookies, Body: string(body)}, body
}

func header(resp events.APIGatewayV2HTTPResponse, name string) string {
	for k, v := range resp.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	for k, v := range resp.MultiValueHeaders {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// wantError checks status and the JSON error envelope {"error": {"code", ...}}.
func wantError(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("%s %s: status %d, want %d: %s", q.method, q.path, resp.StatusCode, status, body)
		return
	}
	var env struct {
		Error *struct {
			Type      string `json:"type"`
			Code      string `json:"code"`
			Message   string `json:"message"`
			RequestID string `json:"request_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.Error == nil {
		t.Errorf("%s %s: body is not the error envelope: %s", q.method, q.path, body)
		return
	}
	if env.Error.Code != code || env.Error.Message == "" || env.Error.Type == "" {
		t.Errorf("%s %s: error = %+v, want code %q with a type and message", q.method, q.path, *env.Error, code)
	}
	if ct := header(resp, "Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q, want application/json", q.method, q.path, ct)
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// rieEnv is the whole environment of a bootstrap under RIE: the emulator,
// the tables of prefix, an HS256 secret and a local wrapping key, and
// provider URLs nothing answers (a test that needs a provider overrides them:
// exec keeps the last value of a repeated variable).
func rieEnv(t *testing.T, prefix, jwtSecret, encryptionKey string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(), // no developer ~/.aws profile leaks in
		"AWS_ENDPOINT_URL=" + os.Getenv("AWS_ENDPOINT_URL"),
		"AWS_REGION=" + os.Getenv("AWS_REGION"),
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_EC2_METADATA_DISABLED=true",
		"TABLE_PREFIX=" + prefix,
		"AUTH_JWT_SECRET=" + jwtSecret,
		"ENCRYPTION_KEY=" + encryptionKey, // empty: none (KMS_KEY_ID then)
		"DEFAULT_ROUTING_MODE=byok_first",
		// Nothing here may reach a real provider.
		"OPENAI_BASE_URL=http://127.0.0.1:1/v1",
		"ANTHROPIC_BASE_URL=http://127.0.0.1:1",
	}
}

// lambdaEnv is what Lambda sets for the function as deployed: its name,
// and its memory and timeout from template.yaml (after Globals).
func lambdaEnv(t *testing.T, fn string) []string {
	t.Helper()
	tmpl := loadTemplate(t)
	f, ok := tmpl.GetAllServerlessFunctionResources()[logicalID(fn)]
	if !ok {
		t.Fatalf("template.yaml has no %s", logicalID(fn))
	}
	e := effectiveFunction(t, tmpl, f)
	return []string{"AWS_LAMBDA_FUNCTION_NAME=byok-" + fn,
		fmt.Sprintf("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d", e.MemorySize), fmt.Sprintf("AWS_LAMBDA_FUNCTION_TIMEOUT=%d", e.Timeout)}
}

// TestBootstrapsUnderRIE builds every HTTP function's bootstrap and runs it
// under aws-lambda-rie against the emulator, one invocation at a time: HTTP
// API events for the httpadapter functions, Function URL events for chat.
func TestBootstrapsUnderRIE(t *testing.T) {
	rieBin := findRIE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	prefix := awstest.Prefix(t)
	if err := store.EnsureTables(ctx, dynamodb.NewFromConfig(awstest.Config(t)), prefix); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	// Chat reads the internal provider keys from this secret at start-up, as
	// in AWS (template InternalProviderKeysSecret, INTERNAL_KEYS_SECRET_ARN).
	sec, err := secretsmanager.NewFromConfig(awstest.Config(t)).CreateSecret(ctx, &secretsmanager.CreateSecretInput{
		Name:         aws.String(prefix + "internal-provider-keys"),
		SecretString: aws.String(`{"openai":"sk-rie-internal-not-a-key","anthropic":""}`),
	})
	if err != nil {
		t.Fatalf("create internal keys secret: %v", err)
	}
	fnEnv := map[string][]string{app.FnChat: {"INTERNAL_KEYS_SECRET_ARN=" + aws.ToString(sec.ARN)}}

	secret := randomHex(t, 24) // 48 characters
	mint := func(sub, role string) string {
		tok, err := auth.Mint([]byte(secret), sub, role, time.Hour, "", "")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	userTok, adminTok := mint("rie-user", ""), mint("rie-admin", "admin")

	env := rieEnv(t, prefix, secret, randomHex(t, 32))

	type check struct {
		req   request
		check func(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte)
	}
	cases := []struct {
		fn     string
		checks []check
	}{
		{app.FnKeys, []check{
			{request{method: "GET", path: "/v1/keys", route: "/v1/keys", token: userTok}, func(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte) {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
				}
				var got struct {
					Keys []struct {
						Provider   string `json:"provider"`
						Configured bool   `json:"configured"`
					} `json:"keys"`
					Routing map[string]any `json:"routing"`
				}
				if err := json.Unmarshal(body, &got); err != nil || got.Keys == nil {
					t.Fatalf("want {\"keys\": [...]}: %v: %s", err, body)
				}
				if len(got.Keys) < 2 || got.Routing == nil {
					t.Errorf("want one entry per provider and a routing banner: %s", body)
				}
				for _, k := range got.Keys {
					if k.Provider == "" || k.Configured {
						t.Errorf("fresh user: want unconfigured providers, got %+v", k)
					}
				}
			}},
			{request{method: "GET", path: "/v1/keys", route: "/v1/keys"}, func(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte) {
				wantError(t, q, resp, body, http.StatusUnauthorized, "unauthorized")
				if h := header(resp, "WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want Bearer", h)
				}
			}},
		}},
		{app.FnValidate, []check{
			{request{method: "POST", path: "/v1/keys/openai/test", route: "/v1/keys/{provider}/test",
				pathParams: map[string]string{"provider": "openai"}, token: userTok},
				func(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte) {
					wantError(t, q, resp, body, http.StatusNotFound, "not_found")
				}},
		}},
		{app.FnAdmin, []check{
			{request{method: "GET", path: "/v1/admin/settings", route: "/v1/admin/settings", token: adminTok}, func(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte) {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
				}
				var got map[string]any
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("%v: %s", err, body)
				}
				for _, k := range []string{"routing_mode", "byok_enabled", "tier_limits"} {
					if _, ok := got[k]; !ok {
						t.Errorf("settings lack %q: %s", k, body)
					}
				}
			}},
			{request{method: "GET", path: "/v1/admin/settings", route: "/v1/admin/settings", token: userTok}, func(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte) {
				wantError(t, q, resp, body, http.StatusForbidden, "forbidden")
			}},
		}},
		{app.FnUsage, []check{
			{request{method: "GET", path: "/v1/credits", route: "/v1/credits", token: userTok}, func(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte) {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
				}
				var got struct {
					Balance      *int64          `json:"balance"`
					Transactions json.RawMessage `json:"transactions"`
				}
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("%v: %s", err, body)
				}
				if got.Balance == nil || *got.Balance != 0 || string(got.Transactions) != "[]" {
					t.Errorf("fresh user: want balance 0 and transactions [], got %s", body)
				}
			}},
			{request{method: "GET", path: "/v1/usage", query: "days=7", route: "/v1/usage", token: userTok}, func(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte) {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
				}
				type totals struct {
					Requests     *int64   `json:"requests"`
					InputTokens  *int64   `json:"input_tokens"`
					OutputTokens *int64   `json:"output_tokens"`
					CostUSD      *float64 `json:"cost_usd"`
				}
				var got struct {
					Days       int                        `json:"days"`
					BYOK       *totals                    `json:"byok"`
					Credits    *totals                    `json:"credits"`
					ByProvider map[string]json.RawMessage `json:"by_provider"`
					ByModel    map[string]json.RawMessage `json:"by_model"`
					ByDay      []struct {
						Date string  `json:"date"`
						BYOK *totals `json:"byok"`
					} `json:"by_day"`
				}
				if err := json.Unmarshal(body, &got); err != nil {
					t.Fatalf("%v: %s", err, body)
				}
				zero := func(x *totals) bool {
					return x != nil && x.Requests != nil && *x.Requests == 0 && x.InputTokens != nil && *x.InputTokens == 0 &&
						x.OutputTokens != nil && *x.OutputTokens == 0 && x.CostUSD != nil && *x.CostUSD == 0
				}
				if got.Days != 7 || !zero(got.BYOK) || !zero(got.Credits) || got.ByProvider == nil || got.ByModel == nil {
					t.Errorf("fresh user, days=7: want days 7, zero byok and credits totals, by_provider and by_model: %s", body)
				}
				if len(got.ByDay) != 7 || got.ByDay[0].Date == "" || !zero(got.ByDay[0].BYOK) {
					t.Errorf("want 7 idle days in by_day: %s", body)
				}
			}},
		}},
		// The export streams from its own Function URL (a fresh user: the CSV
		// header line only), and answers only its route.
		{app.FnExport, []check{
			{request{method: "GET", path: "/v1/usage/export", query: "format=csv", token: userTok},
				func(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte) {
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
					}
					if ct := header(resp, "Content-Type"); !strings.HasPrefix(ct, "text/csv") {
						t.Errorf("Content-Type = %q, want text/csv", ct)
					}
					if lines := strings.Split(strings.TrimSpace(string(body)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], ",") {
						t.Errorf("fresh user: want only the CSV header line, got %q", body)
					}
				}},
			{request{method: "GET", path: "/v1/usage", token: userTok},
				func(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte) {
					wantError(t, q, resp, body, http.StatusNotFound, "not_found")
				}},
		}},
		{app.FnChat, []check{
			// A free user with no credits and no key: byok_first has no BYOK route
			// and an empty balance, so 402 before any upstream call (docs/api.md §8).
			{request{method: "POST", path: "/v1/chat/completions", token: userTok,
				body: `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`},
				func(t *testing.T, q request, resp events.APIGatewayV2HTTPResponse, body []byte) {
					wantError(t, q, resp, body, http.StatusPaymentRequired, "payment_required")
					if h := header(resp, "X-Byok-Route"); h != "credits" {
						t.Errorf("X-Byok-Route = %q, want credits (headers %v)", h, resp.Headers)
					}
				}},
		}},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.fn] = true
	}
	covered[fnRevalidator] = true // TestRevalidatorUnderRIE
	for _, fn := range slices.Concat(app.Functions(), eventFunctions) {
		if !covered[fn] {
			t.Errorf("no RIE smoke check for function %s", fn)
		}
	}
	for _, c := range cases {
		t.Run(c.fn, func(t *testing.T) {
			url := trigger(t, c.fn) == "FunctionUrl"
			bootstrap := buildBootstrap(t, c.fn)
			r := startRIE(t, rieBin, bootstrap, slices.Concat(env, fnEnv[c.fn], lambdaEnv(t, c.fn)))
			for _, ch := range c.checks { // one invocation at a time
				resp, body := r.invoke(t, ch.req, url)
				ch.check(t, ch.req, resp, body)
			}
		})
	}
}

// scheduledEvent is what an EventBridge rule with a schedule expression
// (template Schedule event) delivers to the function.
func scheduledEvent(t *testing.T) []byte {
	t.Helper()
	now := time.Now().UTC()
	b, err := json.Marshal(events.CloudWatchEvent{
		Version:    "0",
		ID:         fmt.Sprintf("rie-%d", now.UnixNano()),
		DetailType: "Scheduled Event",
		Source:     "aws.events",
		AccountID:  "123456789012",
		Time:       now.Truncate(time.Second),
		Region:     "us-east-1",
		Resources:  []string{"arn:aws:events:us-east-1:123456789012:rule/byok-RevalidatorFunctionDaily"},
		Detail:     json.RawMessage(`{}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// summary is the revalidator's answer (revalidate.Summary); pointers so a
// missing field is told apart from 0.
type summary struct {
	Checked    *int   `json:"checked"`
	Valid      *int   `json:"valid"`
	Invalid    *int   `json:"invalid"`
	Unchecked  *int   `json:"unchecked"`
	Errors     *int   `json:"errors"`
	DurationMS *int64 `json:"duration_ms"`
}

func (s summary) String() string {
	n := func(p *int) string {
		if p == nil {
			return "missing"
		}
		return strconv.Itoa(*p)
	}
	return fmt.Sprintf("checked %s, valid %s, invalid %s, unchecked %s, errors %s", n(s.Checked), n(s.Valid),
		n(s.Invalid), n(s.Unchecked), n(s.Errors))
}

// TestRevalidatorUnderRIE runs the revalidator's bootstrap under RIE with
// the environment the template gives it (KMS_KEY_ID, no ENCRYPTION_KEY,
// REVALIDATE_CONCURRENCY, SNS_TOPIC_ARN), invoked like its EventBridge
// schedule invokes it: once over empty tables (checked 0), then with one
// stored key, seeded invalid, that the fake provider accepts: the pass
// checks it (valid 1), records it valid and publishes byok.key_valid.
func TestRevalidatorUnderRIE(t *testing.T) {
	rieBin := findRIE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := awstest.Config(t)
	prefix := awstest.Prefix(t)
	db := dynamodb.NewFromConfig(cfg)
	if err := store.EnsureTables(ctx, db, prefix); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	kmsc := kms.NewFromConfig(cfg)
	key, err := kmsc.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(prefix + "revalidator")})
	if err != nil {
		t.Fatalf("create KMS key: %v", err)
	}
	keyARN := aws.ToString(key.KeyMetadata.Arn)

	// The events topic, with a queue subscribed to see what is published.
	snsc, sqsc := sns.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	top, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(prefix + "events")})
	if err != nil {
		t.Fatal(err)
	}
	qu, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(prefix + "events")})
	if err != nil {
		t.Fatal(err)
	}
	qattrs, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: qu.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snsc.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: top.TopicArn, Protocol: aws.String("sqs"),
		Endpoint:   aws.String(qattrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]),
		Attributes: map[string]string{"RawMessageDelivery": "true"},
	}); err != nil {
		t.Fatal(err)
	}

	fake := fakeprovider.New()
	t.Cleanup(fake.Close)

	tmpl := loadTemplate(t)
	f, ok := tmpl.GetAllServerlessFunctionResources()[logicalID(fnRevalidator)]
	if !ok {
		t.Fatalf("template.yaml has no %s", logicalID(fnRevalidator))
	}
	deployed := effectiveFunction(t, tmpl, f).Env
	env := slices.Concat(rieEnv(t, prefix, randomHex(t, 24), ""), []string{
		"KMS_KEY_ID=" + keyARN,
		"SNS_TOPIC_ARN=" + aws.ToString(top.TopicArn),
		"REVALIDATE_CONCURRENCY=" + deployed["REVALIDATE_CONCURRENCY"],
		"OPENAI_BASE_URL=" + fake.OpenAIBaseURL(),
		"ANTHROPIC_BASE_URL=" + fake.AnthropicBaseURL(),
	}, lambdaEnv(t, fnRevalidator))
	r := startRIE(t, rieBin, buildBootstrap(t, fnRevalidator), env)

	pass := func(t *testing.T, want string) {
		t.Helper()
		raw := r.invokeRaw(t, "scheduled revalidation", scheduledEvent(t))
		var got summary
		if err := json.Unmarshal(raw, &got); err != nil || got.DurationMS == nil {
			t.Fatalf("want the summary JSON (checked, valid, invalid, unchecked, errors, duration_ms): %v: %s", err, raw)
		}
		if got.String() != want {
			t.Errorf("summary: %s, want %s (%s)", got, want, raw)
		}
	}

	t.Run("empty", func(t *testing.T) {
		pass(t, "checked 0, valid 0, invalid 0, unchecked 0, errors 0")
	})

	t.Run("one key", func(t *testing.T) {
		// Sealed under the same KMS key, bound to its row, as keys.Service.Put
		// stores it; marked invalid a day ago.
		v, err := vault.FromEnv(func(k string) string {
			if k == "KMS_KEY_ID" {
				return keyARN
			}
			return ""
		}, kmsc)
		if err != nil {
			t.Fatal(err)
		}
		st := store.New(db, prefix)
		user, apiKey, keyID := "rie-revalidate", "sk-rie-"+randomHex(t, 16), "k-"+randomHex(t, 8)
		tier, email := "premium", "rie-revalidate@example.com"
		if _, err := st.UpsertAccount(ctx, user, store.AccountPatch{Tier: &tier, Email: &email}, time.Now()); err != nil {
			t.Fatal(err)
		}
		blob, err := v.Seal(ctx, vault.Context{UserID: user, Provider: "openai", KeyID: keyID}, []byte(apiKey))
		if err != nil {
			t.Fatal(err)
		}
		wid, err := v.WrapperID(blob)
		if err != nil {
			t.Fatal(err)
		}
		then := time.Now().UTC().Add(-25 * time.Hour)
		if _, err := st.PutKey(ctx, store.KeyRecord{UserID: user, Provider: "openai", KeyID: keyID, Ciphertext: blob,
			WrapperID: wid, Hint: provider.Hint(apiKey), Status: "invalid", Reason: "unauthorized",
			ValidatedAt: then, CreatedAt: then, UpdatedAt: then}); err != nil {
			t.Fatal(err)
		}
		fake.SetKey(apiKey, fakeprovider.OK())

		pass(t, "checked 1, valid 1, invalid 0, unchecked 0, errors 0")
		if n := fake.Calls(apiKey); n != 1 {
			t.Errorf("the provider saw the key %d times, want 1", n)
		}
		u, err := st.GetUser(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		if k := u.Keys["openai"]; k.Status != "valid" || k.Reason != "" || !k.ValidatedAt.After(then) {
			t.Errorf("stored key after the pass: status %q, reason %q, validated_at %s; want valid, no reason, now",
				k.Status, k.Reason, k.ValidatedAt)
		}

		// Exactly one byok.key_valid, detected by the schedule.
		var got []string
		for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
			out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: qu.QueueUrl, MaxNumberOfMessages: 10,
				MessageAttributeNames: []string{"All"}, WaitTimeSeconds: 1})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range out.Messages {
				var body struct {
					UserID     string `json:"user_id"`
					Email      string `json:"email"`
					Provider   string `json:"provider"`
					DetectedBy string `json:"detected_by"`
				}
				_ = json.Unmarshal([]byte(aws.ToString(m.Body)), &body)
				typ := ""
				if a, ok := m.MessageAttributes["event_type"]; ok {
					typ = aws.ToString(a.StringValue)
				}
				got = append(got, fmt.Sprintf("%s %s %s %s %s", typ, body.UserID, body.Email, body.Provider, body.DetectedBy))
			}
		}
		if want := []string{"byok.key_valid rie-revalidate rie-revalidate@example.com openai schedule"}; !slices.Equal(got, want) {
			t.Errorf("events = %q, want %q", got, want)
		}
	})
}
