package fakeprovider_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/fakeprovider"
)

const (
	oaKey  = "sk-test-openai-0000000001"
	antKey = "sk-ant-test-anthropic-0000001"
)

func get(t *testing.T, ctx context.Context, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func openAIHdr(key string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + key}
}
func anthHdr(key string) map[string]string {
	return map[string]string{"x-api-key": key, "anthropic-version": "2023-06-01"}
}

func TestModelsShapes(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	s.SetKey(oaKey, fakeprovider.OK())
	s.SetKey(antKey, fakeprovider.OK())
	if s.OpenAIBaseURL() != s.URL()+"/v1" || s.AnthropicBaseURL() != s.URL() {
		t.Fatal("base URLs")
	}

	resp, b := get(t, context.Background(), s.OpenAIBaseURL()+"/models", openAIHdr(oaKey))
	var oa struct {
		Object string           `json:"object"`
		Data   []map[string]any `json:"data"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &oa) != nil || oa.Object != "list" || len(oa.Data) == 0 {
		t.Fatalf("openai models: %d %s", resp.StatusCode, b)
	}
	if resp.Header.Get("x-request-id") == "" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("openai headers: %v", resp.Header)
	}
	m0 := oa.Data[0]
	for _, f := range []string{"id", "object", "created", "owned_by"} {
		if _, ok := m0[f]; !ok {
			t.Errorf("openai model lacks %q: %v", f, m0)
		}
	}

	resp, b = get(t, context.Background(), s.AnthropicBaseURL()+"/v1/models", anthHdr(antKey))
	var an struct {
		Data []struct {
			Type        string `json:"type"`
			ID          string `json:"id"`
			DisplayName string `json:"display_name"`
			CreatedAt   string `json:"created_at"`
		} `json:"data"`
		HasMore *bool  `json:"has_more"`
		FirstID string `json:"first_id"`
		LastID  string `json:"last_id"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &an) != nil || len(an.Data) == 0 || an.HasMore == nil {
		t.Fatalf("anthropic models: %d %s", resp.StatusCode, b)
	}
	if d := an.Data[0]; d.Type != "model" || d.ID == "" || d.DisplayName == "" || d.CreatedAt == "" ||
		an.FirstID != d.ID || an.LastID != an.Data[len(an.Data)-1].ID {
		t.Fatalf("anthropic model shape: %s", b)
	}
	if resp.Header.Get("request-id") == "" {
		t.Fatalf("anthropic headers: %v", resp.Header)
	}

	if s.Calls(oaKey) != 1 || s.Calls(antKey) != 1 || s.TotalCalls() != 2 {
		t.Fatalf("calls %d %d %d", s.Calls(oaKey), s.Calls(antKey), s.TotalCalls())
	}
	lr := s.LastRequest()
	if lr.Key != antKey || lr.Protocol != fakeprovider.ProtocolAnthropic || lr.Path != "/v1/models" ||
		lr.Header.Get("anthropic-version") != "2023-06-01" {
		t.Fatalf("last request: %+v", lr)
	}
	lr.Header.Set("x-api-key", "mutated")
	if s.LastRequest().Header.Get("x-api-key") != antKey {
		t.Fatal("LastRequest returned a shared header")
	}
}

type oaErr struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

type antErr struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestErrorShapes(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()

	// Unknown keys: 401 in each provider's shape.
	resp, b := get(t, context.Background(), s.OpenAIBaseURL()+"/models", openAIHdr("sk-nobody-nobody-nobody"))
	var oe oaErr
	if resp.StatusCode != 401 || json.Unmarshal(b, &oe) != nil || oe.Error.Type != "invalid_request_error" ||
		oe.Error.Code == nil || *oe.Error.Code != "invalid_api_key" {
		t.Fatalf("openai 401: %d %s", resp.StatusCode, b)
	}
	if !strings.Contains(string(b), `"param":null`) {
		t.Fatalf("openai error lacks param: %s", b)
	}
	resp, b = get(t, context.Background(), s.AnthropicBaseURL()+"/v1/models", anthHdr("sk-ant-nobody"))
	var ae antErr
	if resp.StatusCode != 401 || json.Unmarshal(b, &ae) != nil || ae.Type != "error" || ae.Error.Type != "authentication_error" {
		t.Fatalf("anthropic 401: %d %s", resp.StatusCode, b)
	}
	// No key at all is counted under "".
	resp, _ = get(t, context.Background(), s.OpenAIBaseURL()+"/models", nil)
	if resp.StatusCode != 401 || s.Calls("") != 1 {
		t.Fatalf("no key: %d, calls %d", resp.StatusCode, s.Calls(""))
	}

	s.SetKey(oaKey, fakeprovider.RateLimited())
	resp, b = get(t, context.Background(), s.OpenAIBaseURL()+"/models", openAIHdr(oaKey))
	oe = oaErr{}
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || json.Unmarshal(b, &oe) != nil ||
		*oe.Error.Code != "rate_limit_exceeded" {
		t.Fatalf("openai 429: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	s.SetKey(oaKey, fakeprovider.InsufficientQuota())
	resp, b = get(t, context.Background(), s.OpenAIBaseURL()+"/models", openAIHdr(oaKey))
	oe = oaErr{}
	if resp.StatusCode != 429 || json.Unmarshal(b, &oe) != nil || oe.Error.Type != "insufficient_quota" || *oe.Error.Code != "insufficient_quota" {
		t.Fatalf("openai quota: %d %s", resp.StatusCode, b)
	}

	for _, c := range []struct {
		b      fakeprovider.Behavior
		status int
		typ    string
	}{
		{fakeprovider.Forbidden(), 403, "permission_error"},
		{fakeprovider.PaymentRequired(), 402, "billing_error"},
		{fakeprovider.RateLimited(), 429, "rate_limit_error"},
		{fakeprovider.ServerError(), 500, "api_error"},
		{fakeprovider.Overloaded(), 529, "overloaded_error"},
		{fakeprovider.AnthropicNoBilling(), 400, "invalid_request_error"},
	} {
		s.SetKey(antKey, c.b)
		resp, b = get(t, context.Background(), s.AnthropicBaseURL()+"/v1/models", anthHdr(antKey))
		ae = antErr{}
		if resp.StatusCode != c.status || json.Unmarshal(b, &ae) != nil || ae.Type != "error" || ae.Error.Type != c.typ {
			t.Errorf("anthropic %d: %d %s", c.status, resp.StatusCode, b)
		}
	}
	if !strings.Contains(ae.Error.Message, "credit balance is too low") {
		t.Errorf("no-billing message: %q", ae.Error.Message)
	}

	// Unknown routes: provider-shaped 404; /v1/messages without Anthropic headers is an OpenAI route.
	s.SetKey(oaKey, fakeprovider.OK())
	resp, b = get(t, context.Background(), s.OpenAIBaseURL()+"/nope", openAIHdr(oaKey))
	oe = oaErr{}
	if resp.StatusCode != 404 || json.Unmarshal(b, &oe) != nil || oe.Error.Type != "invalid_request_error" {
		t.Fatalf("openai 404: %d %s", resp.StatusCode, b)
	}
	resp, b = get(t, context.Background(), s.URL()+"/v1/nope", anthHdr(antKey))
	ae = antErr{}
	if resp.StatusCode != 404 || json.Unmarshal(b, &ae) != nil || ae.Error.Type != "not_found_error" {
		t.Fatalf("anthropic 404: %d %s", resp.StatusCode, b)
	}
	if strings.Contains(string(b), antKey) {
		t.Fatal("error body echoes the key")
	}
}

func TestFaults(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()

	s.SetKey(oaKey, fakeprovider.Behavior{Delay: 80 * time.Millisecond, Status: 200})
	start := time.Now()
	resp, _ := get(t, context.Background(), s.OpenAIBaseURL()+"/models", openAIHdr(oaKey))
	if resp.StatusCode != 200 || time.Since(start) < 80*time.Millisecond {
		t.Fatalf("delay: %d after %v", resp.StatusCode, time.Since(start))
	}

	s.SetKey(oaKey, fakeprovider.Behavior{Status: 200, Body: `{"custom":true}`})
	if _, b := get(t, context.Background(), s.OpenAIBaseURL()+"/models", openAIHdr(oaKey)); string(b) != `{"custom":true}` {
		t.Fatalf("body override: %s", b)
	}

	s.SetKey(oaKey, fakeprovider.Behavior{DropConn: true})
	req, _ := http.NewRequest(http.MethodGet, s.OpenAIBaseURL()+"/models", nil)
	req.Header.Set("Authorization", "Bearer "+oaKey)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropconn: got status %d", resp.StatusCode)
	}

	s.SetKey(oaKey, fakeprovider.Behavior{Stall: true})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, s.OpenAIBaseURL()+"/models", nil)
	req.Header.Set("Authorization", "Bearer "+oaKey)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("stall answered")
	}
}

func TestCloseReleasesStalledRequests(t *testing.T) {
	s := fakeprovider.New()
	s.SetDefault(fakeprovider.Behavior{Stall: true})
	errc := make(chan error, 1)
	go func() {
		resp, err := http.Get(s.OpenAIBaseURL() + "/models") // no client timeout
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	for s.TotalCalls() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked on a stalled request")
	}
	<-errc
	s.Close() // idempotent
}

func TestConcurrentUse(t *testing.T) {
	s := fakeprovider.New()
	defer s.Close()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := oaKey + string(rune('a'+i))
			s.SetKey(key, fakeprovider.OK())
			resp, err := http.Get(s.OpenAIBaseURL() + "/models")
			if err == nil {
				resp.Body.Close()
			}
			_ = s.Calls(key)
			_ = s.LastRequest()
		}()
	}
	wg.Wait()
	if s.TotalCalls() != 20 {
		t.Fatalf("total %d", s.TotalCalls())
	}
}
