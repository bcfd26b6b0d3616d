package app_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/chat"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/usage"
)

// flakyUsage fails the first writes as storage would in a blip, then
// passes them to the real (emulator) writer.
type flakyUsage struct {
	chat.UsageWriter
	mu     sync.Mutex
	fails  int
	tries  int
	stored chan struct{}
}

func (f *flakyUsage) Put(ctx context.Context, r usage.Record) error {
	f.mu.Lock()
	f.tries++
	fail := f.tries <= f.fails
	f.mu.Unlock()
	if fail {
		return apperr.New(apperr.ServiceUnavailable, "usage storage is unavailable")
	}
	err := f.UsageWriter.Put(ctx, r)
	if err == nil {
		close(f.stored)
	}
	return err
}

// A usage write that fails is retried within the request (after the
// answer), so a storage blip loses no usage row.
func TestUsageWriteRetried(t *testing.T) {
	e := newEnv(t, nil)
	f := &flakyUsage{UsageWriter: e.app.Chat.Usage, fails: 2, stored: make(chan struct{})}
	e.app.Chat.Usage = f
	e.setTier("alice", "premium")
	e.saveKey("alice", "openai", openAIKey(t))
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/chat/completions", bytes.NewReader(chatBody("gpt-4o-mini", 5, "x")))
	req.Header.Set("Authorization", "Bearer "+e.token("alice", ""))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	select { // the write follows the answer
	case <-f.stored:
	case <-time.After(30 * time.Second):
		f.mu.Lock()
		defer f.mu.Unlock()
		t.Fatalf("the usage row was never stored (%d tries)", f.tries)
	}
	rid := resp.Header.Get("X-Request-Id")
	out, err := e.db.Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(store.UsageTable.Name(e.vars["TABLE_PREFIX"]))})
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, it := range out.Items {
		if sk, ok := it["sk"].(*types.AttributeValueMemberS); ok && rid != "" && strings.HasSuffix(sk.Value, "#"+rid) {
			rows++
		}
	}
	if rows != 1 {
		t.Fatalf("%d usage rows for request %q in the usage table, want 1", rows, rid)
	}
}
