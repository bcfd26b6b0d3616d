// Package scripts tests the developer scripts (make run) as a newcomer uses
// them.
package scripts

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// cleanEnv is the environment with no provider, key, emulator or byok
// setting: a newcomer's shell.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "AWS_"), strings.HasSuffix(k, "_BASE_URL"), strings.HasPrefix(k, "INTERNAL_"),
			k == "PORT", k == "MOTO_PORT", k == "FAKE_PROVIDER_PORT", k == "TABLE_PREFIX", k == "AUTH_JWT_SECRET",
			k == "ENCRYPTION_KEY", k == "KMS_KEY_ID", k == "DEV_DIR", k == "AUDIO_BUCKET", k == "SNS_TOPIC_ARN":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestMakeRunChatsOffline runs make run's script in a temporary directory on
// free ports with no provider configured, chats through the bundled fake,
// then checks that a second start on the busy port fails naming it.
func TestMakeRunChatsOffline(t *testing.T) {
	if _, err := exec.LookPath("moto_server"); err != nil {
		t.Fatal("moto_server not found (pip install 'moto[server]'); make run needs it")
	}
	root := repoRoot(t)
	dev := t.TempDir()
	port, moto := freePort(t), freePort(t)
	env := cleanEnv("DEV_DIR="+dev, "PORT="+strconv.Itoa(port), "MOTO_PORT="+strconv.Itoa(moto))

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "infra/scripts/run.sh"))
	cmd.Dir = t.TempDir() // the script finds the repository itself
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	defer stop()

	// Wait for the banner (the first run compiles three commands).
	var token string
	deadline := time.After(7 * time.Minute)
	for token == "" {
		select {
		case <-exited:
			t.Fatalf("make run exited early (%v):\n%s", waitErr, out.String())
		case <-deadline:
			t.Fatalf("no banner after 7 minutes:\n%s", out.String())
		case <-time.After(200 * time.Millisecond):
		}
		sc := bufio.NewScanner(strings.NewReader(out.String()))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "dev token for alice (premium):"); ok {
				token = strings.TrimSpace(v)
			}
		}
	}
	banner := out.String()
	for _, want := range []string{"moto's memory", "openai: bundled fake provider", "anthropic: bundled fake provider",
		"google: bundled fake provider", "mistral: bundled fake provider", "cohere: bundled fake provider", "platform key: fake"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}

	base := "http://127.0.0.1:" + strconv.Itoa(port)
	post := func(path, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// No key stored: the credits route, through the fake with the fake platform key.
	status, body := post("/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}`)
	var got struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if status != 200 || json.Unmarshal(body, &got) != nil || len(got.Choices) == 0 || got.Choices[0].Message.Content == "" {
		t.Fatalf("chat: %d %s\n%s", status, body, out.String())
	}
	status, body = post("/v1/messages", `{"model":"claude-3-5-haiku-latest","max_tokens":64,"messages":[{"role":"user","content":"hello"}]}`)
	if status != 200 || !strings.Contains(string(body), `"text"`) {
		t.Errorf("anthropic messages: %d %s", status, body)
	}
	// The other providers' native protocols go to the same fake.
	for _, model := range []string{"gemini-2.5-flash", "mistral-small-latest", "command-r"} {
		status, body = post("/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"hello"}]}`)
		got.Choices = nil
		if status != 200 || json.Unmarshal(body, &got) != nil || len(got.Choices) == 0 || got.Choices[0].Message.Content == "" {
			t.Errorf("chat with %s: %d %s", model, status, body)
		}
	}

	// A second start while the first runs: a clear failure naming the port,
	// before the banner or any token.
	second := exec.CommandContext(ctx, "bash", filepath.Join(root, "infra/scripts/run.sh"))
	second.Env = env
	msg, err := second.CombinedOutput()
	if err == nil {
		t.Fatalf("second make run on a busy port succeeded:\n%s", msg)
	}
	if !strings.Contains(string(msg), "port "+strconv.Itoa(port)) || !strings.Contains(string(msg), "already in use") {
		t.Errorf("second make run: want a message naming port %d, got:\n%s", port, msg)
	}
	if strings.Contains(string(msg), "dev token") {
		t.Errorf("second make run printed tokens:\n%s", msg)
	}
}
