package app

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/synthstack/byok/shared/store"
)

// TopicName is the SNS topic the dev bootstrap creates.
const TopicName = "byok-events"

// Bootstrap creates missing tables and the events topic (DEV_BOOTSTRAP=1,
// development and tests only; in AWS the SAM template owns them). It returns
// the topic ARN.
func Bootstrap(ctx context.Context, c Clients, tablePrefix string) (string, error) {
	if err := store.EnsureTables(ctx, c.DynamoDB, tablePrefix); err != nil {
		return "", err
	}
	out, err := c.SNS.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(tablePrefix + TopicName)})
	if err != nil {
		return "", fmt.Errorf("create topic: %w", err)
	}
	return aws.ToString(out.TopicArn), nil
}
