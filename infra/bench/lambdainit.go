package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func numCPU() int { return runtime.NumCPU() }

// lambdaFlags are the Makefile's LAMBDA_FLAGS.
var lambdaFlags = []string{"-tags", "lambda.norpc", "-trimpath", "-ldflags=-s -w -buildid="}

const maxBootstrapBytes = 15_000_000 // docs/api.md §14: 15 MB per binary

// kmsFunctions get KMS_KEY_ID in template.yaml.
var kmsFunctions = map[string]bool{"keys": true, "validate": true, "chat": true}

func (b *Bench) initRuns() int {
	if b.quick {
		return 3
	}
	return 10
}

// functionNames lists functions/* that hold a main package.
func (b *Bench) functionNames() []string {
	entries, _ := os.ReadDir(filepath.Join(b.root, "functions"))
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(b.root, "functions", e.Name(), "main.go")); err == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

// buildFunctions builds every function for linux/goarch with the Lambda
// flags into dir/<name>/bootstrap.
func (b *Bench) buildFunctions(names []string, goarch, dir string) error {
	tmp := filepath.Join(dir, "out")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	args := append([]string{"build"}, lambdaFlags...)
	args = append(args, "-o", tmp+string(filepath.Separator))
	for _, n := range names {
		args = append(args, "./functions/"+n)
	}
	out, err := b.runGo(8*time.Minute, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + goarch}, args...)
	if err != nil {
		return fmt.Errorf("go build (linux/%s): %v\n%s", goarch, err, tail(out, 20))
	}
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(dir, n), 0o755); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(tmp, n), filepath.Join(dir, n, "bootstrap")); err != nil {
			return err
		}
	}
	return nil
}

// runtimeAPI is a fake Lambda Runtime API that records when the first
// request arrives and then holds every `next` poll open.
type runtimeAPI struct {
	srv   *httptest.Server
	first chan time.Time
	once  sync.Once
	paths []string
	mu    sync.Mutex
	stop  chan struct{}
}

func newRuntimeAPI() *runtimeAPI {
	api := &runtimeAPI{first: make(chan time.Time, 1), stop: make(chan struct{})}
	api.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		api.mu.Lock()
		api.paths = append(api.paths, r.Method+" "+r.URL.Path)
		api.mu.Unlock()
		if r.Method == "GET" && r.URL.Path == "/2018-06-01/runtime/invocation/next" {
			api.once.Do(func() { api.first <- now })
			select { // hold the poll: no invocation
			case <-r.Context().Done():
			case <-api.stop:
			}
			return
		}
		// e.g. POST /2018-06-01/runtime/init/error: the function failed init.
		w.WriteHeader(http.StatusAccepted)
	}))
	return api
}

func (a *runtimeAPI) close() {
	close(a.stop)
	a.srv.Close()
}

func (a *runtimeAPI) hostPort() string { return strings.TrimPrefix(a.srv.URL, "http://") }

// awsCounter stands in for AWS_ENDPOINT_URL during init: any request to it
// means start-up made an AWS call.
type awsCounter struct {
	srv *httptest.Server
	n   atomic.Int64
	mu  sync.Mutex
	ops map[string]int
}

func newAWSCounter() *awsCounter {
	c := &awsCounter{ops: map[string]int{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		op := r.Header.Get("X-Amz-Target")
		if op == "" {
			op = r.Method + " " + r.URL.Path
		}
		c.mu.Lock()
		c.ops[op]++
		c.mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
	}))
	return c
}

// initOnce execs bootstrap with env and returns the time from just before
// exec to the first Runtime API request.
func initOnce(bootstrap string, env []string) (time.Duration, []string, string, error) {
	api := newRuntimeAPI()
	defer api.close()
	cmd := exec.Command(bootstrap)
	cmd.Dir = filepath.Dir(bootstrap)
	cmd.Env = append(slices.Clone(env), "AWS_LAMBDA_RUNTIME_API="+api.hostPort())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	exited := make(chan error, 1)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, nil, "", err
	}
	go func() { exited <- cmd.Wait() }()
	var d time.Duration
	var err error
	select {
	case t := <-api.first:
		d = t.Sub(start)
	case werr := <-exited:
		return 0, nil, out.String(), fmt.Errorf("exited before polling: %v", werr)
	case <-time.After(10 * time.Second):
		err = fmt.Errorf("no Runtime API poll within 10s")
	}
	_ = cmd.Process.Kill()
	<-exited
	api.mu.Lock()
	paths := slices.Clone(api.paths)
	api.mu.Unlock()
	return d, paths, out.String(), err
}

func (b *Bench) rowLambdaInit() {
	const what = "Lambda init (exec of `bootstrap` to its first Runtime API poll)"
	const target = "≤ 15 ms; each binary ≤ 15 MB"
	names := b.functionNames()
	if len(names) == 0 {
		b.skip("6", what, target, "no functions/* found")
		return
	}
	work, err := os.MkdirTemp("", "bench-lambda-*")
	if err != nil {
		b.skip("6", what, target, err.Error())
		return
	}
	defer os.RemoveAll(work)

	// Sizes: the deployed architecture (template.yaml: arm64).
	sizes := map[string]int64{}
	armDir := filepath.Join(work, "arm64")
	sizeErr := b.buildFunctions(names, "arm64", armDir)
	if sizeErr == nil {
		for _, n := range names {
			if st, err := os.Stat(filepath.Join(armDir, n, "bootstrap")); err == nil {
				sizes[n] = st.Size()
			}
		}
	}

	// Init: this machine's architecture, so the binary can be exec'd here.
	host := runtime.GOARCH
	hostDir := armDir
	var initErr error
	if runtime.GOOS != "linux" {
		initErr = fmt.Errorf("this machine is %s; the linux bootstrap cannot be exec'd here", runtime.GOOS)
	} else if host != "arm64" || sizeErr != nil {
		hostDir = filepath.Join(work, host)
		initErr = b.buildFunctions(names, host, hostDir)
	}

	counter := newAWSCounter()
	defer counter.srv.Close()
	home := filepath.Join(work, "home")
	_ = os.MkdirAll(home, 0o755)
	jwt, encKey := randomHex(16), randomHex(32)
	baseEnv := []string{
		"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "TZ=:UTC", "LANG=en_US.UTF-8",
		"AWS_REGION=us-east-1", "AWS_DEFAULT_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_SESSION_TOKEN=test",
		"AWS_ENDPOINT_URL=" + counter.srv.URL,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256", "AWS_LAMBDA_LOG_FORMAT=Text",
		"_HANDLER=bootstrap",
		"TABLE_PREFIX=byok-", "SNS_TOPIC_ARN=arn:aws:sns:us-east-1:000000000000:byok-events",
		"AUTH_JWT_SECRET=" + jwt, "ENCRYPTION_KEY=" + encKey,
		"OPENAI_BASE_URL=https://api.openai.com/v1", "ANTHROPIC_BASE_URL=https://api.anthropic.com",
		// The webhooks function refuses to start without its queues (!Ref in the template).
		"WEBHOOK_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/000000000000/byok-webhooks",
		"WEBHOOK_DLQ_URL=https://sqs.us-east-1.amazonaws.com/000000000000/byok-webhooks-dlq",
	}
	runs := b.initRuns()
	type fnResult struct {
		name   string
		runs   []time.Duration
		median time.Duration
		err    string
	}
	var results []fnResult
	if initErr == nil {
		for _, n := range names {
			env := append(slices.Clone(baseEnv), "AWS_LAMBDA_FUNCTION_NAME=byok-"+n, "LAMBDA_TASK_ROOT="+filepath.Join(hostDir, n))
			if kmsFunctions[n] {
				env = append(env, "KMS_KEY_ID=arn:aws:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000000")
			}
			bin := filepath.Join(hostDir, n, "bootstrap")
			r := fnResult{name: n}
			for i := range runs + 1 { // the first run warms the page cache
				d, paths, out, err := initOnce(bin, env)
				if err != nil {
					r.err = fmt.Sprintf("%v; requests %v; output: %s", err, paths, strings.TrimSpace(tail(out, 5)))
					break
				}
				if i > 0 {
					r.runs = append(r.runs, d)
				}
			}
			if r.err == "" {
				r.median = median(r.runs)
			}
			results = append(results, r)
		}
	}

	// Verdict and report.
	var worst time.Duration
	var worstFn string
	initOK, anyInit := initErr == nil, false
	for _, r := range results {
		if r.err != "" {
			initOK = false
			continue
		}
		anyInit = true
		if r.median > worst {
			worst, worstFn = r.median, r.name
		}
	}
	var biggest int64
	var biggestFn string
	for n, s := range sizes {
		if s > biggest {
			biggest, biggestFn = s, n
		}
	}
	sizeOK := sizeErr == nil && len(sizes) == len(names) && biggest <= maxBootstrapBytes
	awsCalls := counter.n.Load()

	var m []string
	if anyInit {
		m = append(m, fmt.Sprintf("slowest median %s (%s, linux/%s)", msStr(worst), worstFn, host))
	} else if initErr != nil {
		m = append(m, "init not measured: "+initErr.Error())
	}
	for _, r := range results {
		if r.err != "" {
			m = append(m, r.name+" failed to reach its first poll")
		}
	}
	if sizeErr == nil {
		m = append(m, fmt.Sprintf("largest arm64 binary %.1f MB (%s)", float64(biggest)/1e6, biggestFn))
	} else {
		m = append(m, "arm64 sizes not measured: build failed")
	}
	if awsCalls > 0 {
		m = append(m, fmt.Sprintf("%d AWS calls during init", awsCalls))
	}
	v := verdict(initOK && anyInit && worst <= 15*time.Millisecond && sizeOK)
	if !anyInit && sizeErr != nil {
		v = notMeasured
	}
	b.add(Row{"6", what, target, strings.Join(m, "; "), v})

	var sb strings.Builder
	fmt.Fprintf(&sb, "### Row 6 — Lambda init and binary sizes\n\n"+
		"Each `functions/*` built with the Makefile's Lambda flags (`CGO_ENABLED=0 GOOS=linux GOARCH=<arch> go build %s`) "+
		"for linux/%s (to exec here) and linux/arm64 (the deployed architecture, for sizes). Init = from just before exec of "+
		"`bootstrap` to the arrival of its first `GET /2018-06-01/runtime/invocation/next` at a fake Runtime API "+
		"(an httptest server holding the poll open; AWS_LAMBDA_RUNTIME_API points at it); %d runs per function after one "+
		"page-cache warm-up run; the process is killed after its first poll.\n\n"+
		"Environment: the template's variables (TABLE_PREFIX, SNS_TOPIC_ARN, AUTH_JWT_SECRET, provider base URLs, "+
		"WEBHOOK_QUEUE_URL and WEBHOOK_DLQ_URL as queue URLs), "+
		"KMS_KEY_ID on keys/validate/chat as in template.yaml, ENCRYPTION_KEY (64 hex) on all, dummy credentials, "+
		"INTERNAL_KEYS_SECRET_ARN unset (in AWS the chat function reads that secret at start-up, one Secrets Manager call "+
		"not included here), and AWS_ENDPOINT_URL pointing at a local server that counts requests: "+
		"**%d AWS calls were made during init** across all runs.\n\n",
		strings.Join(lambdaFlags, " "), host, runs, awsCalls)
	if awsCalls > 0 {
		counter.mu.Lock()
		fmt.Fprintf(&sb, "AWS calls seen: %v\n\n", counter.ops)
		counter.mu.Unlock()
	}
	sb.WriteString("| function | init median | init min | init max | arm64 size |\n| --- | --- | --- | --- | --- |\n")
	for _, n := range names {
		var r *fnResult
		for i := range results {
			if results[i].name == n {
				r = &results[i]
			}
		}
		size := "—"
		if s, ok := sizes[n]; ok {
			size = fmt.Sprintf("%.2f MB (%d bytes)", float64(s)/1e6, s)
		}
		switch {
		case r == nil:
			fmt.Fprintf(&sb, "| %s | not measured | | | %s |\n", n, size)
		case r.err != "":
			fmt.Fprintf(&sb, "| %s | failed: %s | | | %s |\n", n, strings.ReplaceAll(r.err, "|", "\\|"), size)
		default:
			fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s |\n", n, msStr(r.median), msStr(slices.Min(r.runs)), msStr(slices.Max(r.runs)), size)
		}
	}
	if initErr != nil {
		fmt.Fprintf(&sb, "\nInit not measured: %v\n", initErr)
	}
	if sizeErr != nil {
		fmt.Fprintf(&sb, "\narm64 build failed: %v\n", sizeErr)
	}
	b.detail("%s", sb.String())
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
