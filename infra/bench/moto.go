package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Moto is the AWS emulator the suite uses: a moto_server this program
// started on a free port, or the one AWS_ENDPOINT_URL already points at.
type Moto struct {
	URL  string
	Kind string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startMoto starts moto_server on a free loopback port (docs/api.md §15), unless
// AWS_ENDPOINT_URL is set, in which case that emulator is used.
func startMoto() (*Moto, error) {
	if u := strings.TrimSpace(os.Getenv("AWS_ENDPOINT_URL")); u != "" {
		return &Moto{URL: u, Kind: "AWS_ENDPOINT_URL from the environment"}, nil
	}
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		return nil, errors.New("moto_server not found on PATH (pip install 'moto[server]', or set AWS_ENDPOINT_URL to LocalStack)")
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.CreateTemp("", "bench-moto-*.log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	logf.Close()
	m := &Moto{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Kind: "moto_server started by the bench", cmd: cmd,
		log: logf.Name(), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(m.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(m.URL + "/moto-api/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return m, nil
			}
		}
		select {
		case <-m.done:
			out, _ := os.ReadFile(m.log)
			return nil, fmt.Errorf("moto_server exited: %s", strings.TrimSpace(string(out)))
		default:
		}
		if time.Now().After(deadline) {
			m.Stop()
			return nil, fmt.Errorf("moto_server did not answer on %s within 30s", m.URL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Env is the AWS environment for subprocesses that use the emulator.
func (m *Moto) Env() []string {
	env := []string{"AWS_ENDPOINT_URL=" + m.URL}
	for k, def := range map[string]string{"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"} {
		if v := os.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		} else {
			env = append(env, k+"="+def)
		}
	}
	return env
}

// Stop ends the moto_server this program started (only that process).
func (m *Moto) Stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	_ = os.Remove(filepath.Clean(m.log))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
