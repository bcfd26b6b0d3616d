package app_test

import (
	"bufio"
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/fakeprovider"
)

// A credits stream marks its reservation delivered once its first byte is
// out, so a Lambda that dies mid-stream leaves the daily sweep a reservation
// to charge, not to refund: the platform never delivers for free.
func TestCreditsStreamMarksDelivery(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("dora", "free")
	before := e.grant("dora", 1_000_000)
	e.fake.SetKey(internalOpenAIKey, fakeprovider.Behavior{ChunkDelay: 400 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := e.streamReq(ctx, e.token("dora", ""), map[string]any{
		"model": "gpt-4o-mini", "stream": true, "max_tokens": 100,
		"messages": []map[string]any{{"role": "user", "content": "hello"}},
	})
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Byok-Route") != "credits" {
		t.Fatalf("stream: %d route %q", resp.StatusCode, resp.Header.Get("X-Byok-Route"))
	}
	firstContent(t, bufio.NewReader(resp.Body))
	table := e.vars["TABLE_PREFIX"] + "credit_transactions"
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := e.db.Scan(context.Background(), &dynamodb.ScanInput{
			TableName:                 aws.String(table),
			FilterExpression:          aws.String("#d = :t AND #st = :r"),
			ExpressionAttributeNames:  map[string]string{"#d": "delivered", "#st": "state"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":t": &types.AttributeValueMemberBOOL{Value: true}, ":r": &types.AttributeValueMemberS{Value: "reserved"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Items) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream's reservation was not marked delivered while its answer streamed (%d items)", len(out.Items))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The Lambda "dies" now: the sweep finds the reservation and charges it.
	if _, err := e.app.Ledger.ReleaseStale(context.Background(), -time.Minute); err != nil {
		t.Fatal(err)
	}
	if bal := e.balance("dora"); bal >= before {
		t.Fatalf("a delivered stream was refunded by the sweep: balance %d, before %d", bal, before)
	}
}
