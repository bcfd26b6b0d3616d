package webhooks

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Queues are the events queue and its dead-letter queue.
type Queues struct{ URL, DLQURL string }

// MaxReceives is the redrive policy's maxReceiveCount: a message that
// failed this many times (one we cannot even parse, or storage down for
// long) moves to the dead-letter queue.
const MaxReceives = 5

// EnsureQueues creates the events queue (name) and its dead-letter queue
// (name-dlq) with the redrive policy, and subscribes the queue to the topic
// with raw message delivery. For development and tests (DEV_BOOTSTRAP=1);
// in AWS template.yaml declares the same.
func EnsureQueues(ctx context.Context, sqsc *sqs.Client, snsc *sns.Client, topicARN, name string) (Queues, error) {
	dlq, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq"),
		Attributes: map[string]string{"MessageRetentionPeriod": "1209600"}})
	if err != nil {
		return Queues{}, fmt.Errorf("create dead-letter queue: %w", err)
	}
	dlqARN, err := queueARN(ctx, sqsc, aws.ToString(dlq.QueueUrl))
	if err != nil {
		return Queues{}, err
	}
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: map[string]string{
		"VisibilityTimeout": "120",
		"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`, dlqARN, MaxReceives),
	}})
	if err != nil {
		return Queues{}, fmt.Errorf("create events queue: %w", err)
	}
	qARN, err := queueARN(ctx, sqsc, aws.ToString(q.QueueUrl))
	if err != nil {
		return Queues{}, err
	}
	if _, err := snsc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: aws.String(topicARN), Protocol: aws.String("sqs"),
		Endpoint: aws.String(qARN), Attributes: map[string]string{"RawMessageDelivery": "true"}}); err != nil {
		return Queues{}, fmt.Errorf("subscribe events queue: %w", err)
	}
	return Queues{URL: aws.ToString(q.QueueUrl), DLQURL: aws.ToString(dlq.QueueUrl)}, nil
}

func queueARN(ctx context.Context, sqsc *sqs.Client, url string) (string, error) {
	a, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return "", fmt.Errorf("queue attributes: %w", err)
	}
	return a.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], nil
}
