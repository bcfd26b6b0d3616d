package webhooks

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// FromLambda converts a Lambda SQS event into messages.
func FromLambda(ev lambdaevents.SQSEvent) []Message {
	out := make([]Message, 0, len(ev.Records))
	for _, r := range ev.Records {
		m := Message{ID: r.MessageId, Body: r.Body}
		m.Receives, _ = strconv.Atoi(r.Attributes["ApproximateReceiveCount"])
		if a, ok := r.MessageAttributes[KindAttribute]; ok && a.StringValue != nil {
			m.Kind = *a.StringValue
		}
		out = append(out, m)
	}
	return out
}

// LambdaHandler is the webhooks function: a partial batch response, so only
// the messages that failed come back (ReportBatchItemFailures).
func (c *Consumer) LambdaHandler(ctx context.Context, ev lambdaevents.SQSEvent) (lambdaevents.SQSEventResponse, error) {
	var resp lambdaevents.SQSEventResponse
	for _, id := range c.Handle(ctx, FromLambda(ev)) {
		resp.BatchItemFailures = append(resp.BatchItemFailures, lambdaevents.SQSBatchItemFailure{ItemIdentifier: id})
	}
	return resp, nil
}

// PollAPI is what the poller needs from SQS (*sqs.Client satisfies it).
type PollAPI interface {
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// Poller feeds the consumer from a queue outside Lambda (the dev server,
// tests, benchmarks), deleting only the messages it finished, as Lambda's
// event source mapping does with a partial batch response.
type Poller struct {
	SQS      PollAPI
	QueueURL string
	Consumer *Consumer
	// Wait is the long-poll wait (seconds); Visibility the visibility
	// timeout of received messages (0: the queue's).
	Wait, Visibility int32
	Log              *slog.Logger
}

// PollOnce receives up to 10 messages, handles them and deletes the ones
// done. It returns how many it received.
func (p *Poller) PollOnce(ctx context.Context) (int, error) {
	out, err := p.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(p.QueueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: p.Wait,
		VisibilityTimeout: p.Visibility, MessageAttributeNames: []string{"All"},
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
	})
	if err != nil {
		return 0, err
	}
	if len(out.Messages) == 0 {
		return 0, nil
	}
	msgs := make([]Message, 0, len(out.Messages))
	receipts := map[string]string{}
	for _, m := range out.Messages {
		msg := Message{ID: aws.ToString(m.MessageId), Body: aws.ToString(m.Body)}
		msg.Receives, _ = strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
		if a, ok := m.MessageAttributes[KindAttribute]; ok {
			msg.Kind = aws.ToString(a.StringValue)
		}
		msgs = append(msgs, msg)
		receipts[msg.ID] = aws.ToString(m.ReceiptHandle)
	}
	failed := p.Consumer.Handle(ctx, msgs)
	if ctx.Err() != nil {
		return len(msgs), ctx.Err() // stopped: leave the batch to be redelivered
	}
	for _, id := range failed {
		delete(receipts, id)
	}
	var entries []sqstypes.DeleteMessageBatchRequestEntry
	i := 0
	for _, rh := range receipts {
		entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(rh)})
		i++
	}
	if len(entries) > 0 {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := p.SQS.DeleteMessageBatch(dctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(p.QueueURL), Entries: entries}); err != nil {
			return len(msgs), err
		}
	}
	return len(msgs), nil
}

// Run polls until ctx ends, pausing briefly after an error.
func (p *Poller) Run(ctx context.Context) {
	for ctx.Err() == nil {
		if _, err := p.PollOnce(ctx); err != nil && ctx.Err() == nil {
			p.Log.Error("webhook queue poll failed", "err", err.Error())
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}
