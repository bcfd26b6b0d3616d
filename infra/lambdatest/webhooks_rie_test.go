package lambdatest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/synthstack/byok/shared/awstest"
	byokevents "github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
	"github.com/synthstack/byok/shared/webhooks"
)

// TestWebhooksUnderRIE runs the webhooks function's bootstrap under
// aws-lambda-rie with an SQS event of two messages: an event for a user with
// one endpoint (delivered, signed) and a message that is no event (reported
// back as the one batch item failure).
func TestWebhooksUnderRIE(t *testing.T) {
	rieBin := findRIE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := awstest.Config(t)
	prefix := awstest.Prefix(t)
	db := dynamodb.NewFromConfig(cfg)
	if err := store.EnsureTables(ctx, db, prefix); err != nil {
		t.Fatal(err)
	}
	kmsc := kms.NewFromConfig(cfg)
	key, err := kmsc.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String(prefix + "webhooks")})
	if err != nil {
		t.Fatal(err)
	}
	keyARN := aws.ToString(key.KeyMetadata.Arn)
	snsc, sqsc := sns.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	top, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(prefix + "events")})
	if err != nil {
		t.Fatal(err)
	}
	qs, err := webhooks.EnsureQueues(ctx, sqsc, snsc, aws.ToString(top.TopicArn), prefix+"webhooks")
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var secret string
	var got []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		wh, _ := standardwebhooks.NewWebhook(secret)
		if wh.Verify(body, r.Header) != nil {
			w.WriteHeader(401)
			return
		}
		got = append(got, r.Header.Get("webhook-id"))
	}))
	defer recv.Close()

	// Registered as the keys function would: sealed under the same KMS key.
	v, err := vault.FromEnv(func(k string) string {
		if k == "KMS_KEY_ID" {
			return keyARN
		}
		return ""
	}, kmsc)
	if err != nil {
		t.Fatal(err)
	}
	g := &webhooks.Guard{AllowHosts: []string{"127.0.0.1"}}
	svc := &webhooks.Service{Store: webhooks.NewStore(db, prefix), Sealer: v, Guard: g, Sender: webhooks.NewSender(g)}
	cr, err := svc.Create(ctx, webhooks.UserOwner("rita"), recv.URL+"/hook", []string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	secret = cr.Secret
	mu.Unlock()

	env := slices.Concat(rieEnv(t, prefix, randomHex(t, 24), ""), []string{
		"KMS_KEY_ID=" + keyARN,
		"SNS_TOPIC_ARN=" + aws.ToString(top.TopicArn),
		"WEBHOOK_QUEUE_URL=" + qs.URL,
		"WEBHOOK_DLQ_URL=" + qs.DLQURL,
		"WEBHOOK_ALLOW_HOSTS=127.0.0.1",
	}, lambdaEnv(t, fnWebhooks))
	r := startRIE(t, rieBin, buildBootstrap(t, fnWebhooks), env)

	ev, _ := json.Marshal(byokevents.Event{ID: "evt_rie", Type: byokevents.KeyInvalid, UserID: "rita", Provider: "openai",
		Hint: "sk-...abcdefg", Reason: "unauthorized", DetectedBy: byokevents.BySchedule, At: time.Now().UTC()})
	payload, _ := json.Marshal(events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "good", Body: string(ev), Attributes: map[string]string{"ApproximateReceiveCount": "1"}, EventSource: "aws:sqs"},
		{MessageId: "bad", Body: "not an event", Attributes: map[string]string{"ApproximateReceiveCount": "1"}, EventSource: "aws:sqs"},
	}})
	raw := r.invokeRaw(t, "sqs batch", payload)
	var resp events.SQSEventResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		t.Fatalf("want a partial batch response: %v: %s", err, raw)
	}
	if len(resp.BatchItemFailures) != 1 || resp.BatchItemFailures[0].ItemIdentifier != "bad" {
		t.Fatalf("batchItemFailures = %+v, want only \"bad\" (%s)", resp.BatchItemFailures, raw)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "evt_rie" {
		t.Fatalf("receiver got %v, want one verified delivery of evt_rie", got)
	}
}
