package usage

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/store"
)

// TouchEvery is how often a key's last_used_at is written at most
// (docs/teams.md).
const TouchEvery = time.Hour

type transacter interface {
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// NeedsTouch reports whether a try with k at now should also write k's
// last_used_at: when the value this request read is older than TouchEvery.
func NeedsTouch(k store.KeyRecord, now time.Time) bool {
	return now.Sub(k.LastUsedAt) >= TouchEvery
}

// PutTouching writes r and, in the same TransactWriteItems call (one write
// request, as the usage row alone would be), sets k's last_used_at to r.At —
// conditioned on the key row still existing and its last_used_at being older
// than TouchEvery, so concurrent requests on other instances write it at
// most once an hour. When that condition fails (another request touched it,
// or the key was deleted) the usage row is written alone.
func (w *Writer) PutTouching(ctx context.Context, r Record, k store.KeyRecord) error {
	tx, ok := w.db.(transacter)
	if !ok || w.main == "" {
		return w.Put(ctx, r)
	}
	it, err := w.itemOf(r)
	if err != nil {
		return err
	}
	at := r.At.UTC()
	_, err = tx.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: aws.String(w.table), Item: it}},
		{Update: &types.Update{
			TableName:           aws.String(w.main),
			Key:                 k.ItemKey(),
			UpdateExpression:    aws.String("SET last_used_at = :now"),
			ConditionExpression: aws.String("attribute_exists(pk) AND (attribute_not_exists(last_used_at) OR last_used_at < :cut)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":now": &types.AttributeValueMemberS{Value: at.Format(time.RFC3339Nano)},
				":cut": &types.AttributeValueMemberS{Value: at.Add(-TouchEvery).Format(time.RFC3339Nano)},
			},
		}},
	}})
	var canceled *types.TransactionCanceledException
	if errors.As(err, &canceled) {
		return w.Put(ctx, r) // touched meanwhile or deleted: the row alone
	}
	if err != nil {
		return apperr.Wrap(err, apperr.ServiceUnavailable, "usage storage is unavailable")
	}
	return nil
}
