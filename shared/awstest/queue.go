package awstest

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Queue is an SQS queue on the emulator subscribed to an SNS topic with raw
// delivery: each published message arrives as its body, with its message
// attributes.
type Queue struct {
	TopicARN string
	sqs      *sqs.Client
	url      string
}

// Message is one delivered message.
type Message struct {
	Type string // the event_type message attribute
	Body string
}

// SubscribeQueue creates the topic name (or finds it: CreateTopic is
// idempotent) and a queue of the same name subscribed to it.
func SubscribeQueue(t testing.TB, name string) *Queue {
	t.Helper()
	cfg := Config(t)
	ctx := context.Background()
	snsc, sqsc := sns.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	top, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	qu, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: qu.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snsc.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn: top.TopicArn, Protocol: aws.String("sqs"),
		Endpoint:   aws.String(attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]),
		Attributes: map[string]string{"RawMessageDelivery": "true"},
	}); err != nil {
		t.Fatal(err)
	}
	return &Queue{TopicARN: aws.ToString(top.TopicArn), sqs: sqsc, url: aws.ToString(qu.QueueUrl)}
}

// Drain reads and deletes every message until the queue stays empty for
// three polls in a row (about a second: SNS → SQS delivery may lag on
// LocalStack or AWS).
func (q *Queue) Drain(t testing.TB) []Message {
	t.Helper()
	ctx := context.Background()
	var out []Message
	for empty := 0; empty < 3; {
		r, err := q.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(q.url), MaxNumberOfMessages: 10, MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Messages) == 0 {
			empty++
			time.Sleep(300 * time.Millisecond)
			continue
		}
		empty = 0
		for _, m := range r.Messages {
			msg := Message{Body: aws.ToString(m.Body)}
			if a, ok := m.MessageAttributes["event_type"]; ok {
				msg.Type = aws.ToString(a.StringValue)
			}
			out = append(out, msg)
			if _, err := q.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(q.url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}
