package app_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/awstest"
)

// countingTransport counts AWS API calls by their X-Amz-Target operation.
type countingTransport struct {
	mu   sync.Mutex
	ops  map[string]int
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	op := r.Header.Get("X-Amz-Target")
	if op == "" {
		op = r.URL.Host + r.URL.Path
	}
	c.mu.Lock()
	c.ops[op]++
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

func (c *countingTransport) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.ops
	c.ops = map[string]int{}
	return out
}

// docs/api.md §14: a warm BYOK request makes at most one storage read (account and
// key in one Query) and one write (the usage row), and no KMS call.
func TestWarmBYOKRequestIO(t *testing.T) {
	kc := kms.NewFromConfig(awstest.Config(t))
	kout, err := kc.CreateKey(t.Context(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(v map[string]string) {
		v["KMS_KEY_ID"], v["ENCRYPTION_KEY"] = aws.ToString(kout.KeyMetadata.KeyId), ""
		v["SETTINGS_CACHE_TTL"] = "10m"
	})
	e.setTier("alice", "premium")
	e.saveKey("alice", "openai", openAIKey(t))
	ct := &countingTransport{ops: map[string]int{}, next: http.DefaultTransport.(*http.Transport).Clone()}
	cfg := awstest.Config(t)
	cfg.HTTPClient = &http.Client{Transport: ct}
	e.startWith(app.NewClients(cfg))
	tok := e.token("alice", "")
	body := string(chatBody("gpt-4o-mini", 10, "hi"))
	for i := range 3 {
		ct.take()
		r := e.do("POST", "/v1/chat/completions", tok, body)
		if r.Status != 200 || r.Header.Get("X-Byok-Route") != "byok" {
			t.Fatalf("request %d: %d %s", i, r.Status, r.Body)
		}
		ops := ct.take()
		// The usage write follows the answer (the client has it first).
		waitFor(t, "the usage write", func() bool {
			for op, n := range ct.take() {
				ops[op] += n
			}
			// the first use of the key also writes its last_used_at (one
			// TransactWriteItems instead of the PutItem)
			return ops["DynamoDB_20120810.PutItem"]+ops["DynamoDB_20120810.TransactWriteItems"] >= 1
		})
		if i == 0 {
			// cold: settings read and one KMS Decrypt of the data key
			if ops["TrentService.Decrypt"] != 1 {
				t.Fatalf("cold request KMS calls: %v", ops)
			}
			continue
		}
		reads, writes, kmsCalls := 0, 0, 0
		for op, n := range ops {
			switch {
			case strings.HasPrefix(op, "TrentService."):
				kmsCalls += n
			case strings.HasSuffix(op, ".Query"), strings.HasSuffix(op, ".GetItem"), strings.HasSuffix(op, ".Scan"), strings.HasSuffix(op, ".BatchGetItem"):
				reads += n
			default:
				writes += n
			}
		}
		if reads != 1 || writes != 1 || kmsCalls != 0 || ops["DynamoDB_20120810.Query"] != 1 || ops["DynamoDB_20120810.PutItem"] != 1 {
			t.Fatalf("warm request %d: %v (reads %d, writes %d, KMS %d)", i, ops, reads, writes, kmsCalls)
		}
	}
}
