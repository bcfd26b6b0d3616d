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
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/store"
)

// maxBootstrapBytes is SPEC §14's size limit for one function binary.
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
	out := filepath.Join(t.TempDir(), "bootstrap")
	cmd := exec.Command(goBin, "build", "-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w -buildid=",
		"-o", out, "./functions/"+name)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build ./functions/%s: %v\n%s", name, err, b)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bootstrap of %s (linux/%s): %d bytes (%.1f MB)", name, runtime.GOARCH, st.Size(), float64(st.Size())/1e6)
	if st.Size() > maxBootstrapBytes {
		t.Errorf("bootstrap of %s is %d bytes; SPEC §14 allows at most %d", name, st.Size(), maxBootstrapBytes)
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
		Version: "2.0",
		RawPath: q.path,
		Headers: q.headers(),
		Body:    q.body,
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: invoke: %v", q.method, q.path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: RIE answered HTTP %d: %s", q.method, q.path, resp.StatusCode, raw)
	}
	var fnErr struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}
	if json.Unmarshal(raw, &fnErr) == nil && fnErr.ErrorType != "" {
		t.Fatalf("%s %s: function failed: %s: %s", q.method, q.path, fnErr.ErrorType, fnErr.ErrorMessage)
	}
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

	home := t.TempDir()
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home, // no developer ~/.aws profile leaks in
		"AWS_ENDPOINT_URL=" + os.Getenv("AWS_ENDPOINT_URL"),
		"AWS_REGION=" + os.Getenv("AWS_REGION"),
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_EC2_METADATA_DISABLED=true",
		"TABLE_PREFIX=" + prefix,
		"AUTH_JWT_SECRET=" + secret,
		"ENCRYPTION_KEY=" + randomHex(t, 32),
		"DEFAULT_ROUTING_MODE=byok_first",
		// Nothing here may reach a real provider.
		"OPENAI_BASE_URL=http://127.0.0.1:1/v1",
		"ANTHROPIC_BASE_URL=http://127.0.0.1:1",
	}

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
		}},
		{app.FnChat, []check{
			// A free user with no credits and no key: byok_first has no BYOK route
			// and an empty balance, so 402 before any upstream call (SPEC §8).
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
	for _, fn := range app.Functions() {
		if !covered[fn] {
			t.Errorf("no RIE smoke check for function %s", fn)
		}
	}
	tmpl := loadTemplate(t)
	fns := tmpl.GetAllServerlessFunctionResources()

	for _, c := range cases {
		t.Run(c.fn, func(t *testing.T) {
			url := trigger(t, c.fn) == "FunctionUrl"
			f, ok := fns[logicalID(c.fn)]
			if !ok {
				t.Fatalf("template.yaml has no %s", logicalID(c.fn))
			}
			e := effectiveFunction(t, tmpl, f) // memory and timeout as deployed
			mem, timeout := e.MemorySize, e.Timeout
			bootstrap := buildBootstrap(t, c.fn)
			r := startRIE(t, rieBin, bootstrap, slices.Concat(env, fnEnv[c.fn], []string{"AWS_LAMBDA_FUNCTION_NAME=byok-" + c.fn,
				fmt.Sprintf("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%d", mem), fmt.Sprintf("AWS_LAMBDA_FUNCTION_TIMEOUT=%d", timeout)}))
			for _, ch := range c.checks { // one invocation at a time
				resp, body := r.invoke(t, ch.req, url)
				ch.check(t, ch.req, resp, body)
			}
		})
	}
}
