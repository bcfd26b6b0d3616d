package app

import (
	"context"
	"fmt"

	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
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

// DevAudioBucket is the audio bucket the dev bootstrap creates when
// AUDIO_BUCKET is unset (the prefix keeps parallel runs apart).
func DevAudioBucket(tablePrefix string) string { return strings.ToLower(tablePrefix) + "byok-audio" }

// BootstrapAudio creates the large-audio bucket if it is missing
// (DEV_BOOTSTRAP=1; in AWS the template owns it, with its one-day expiry).
func BootstrapAudio(ctx context.Context, c Clients, bucket string) error {
	_, err := c.S3.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create audio bucket %s: %w", bucket, err)
	}
	return nil
}
