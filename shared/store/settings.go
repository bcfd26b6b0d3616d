package store

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/routing"
)

type settingsItem struct {
	itemKeys
	routing.Settings
	Version   int64     `dynamodbav:"version"`
	UpdatedAt time.Time `dynamodbav:"updated_at"`
}

// GetSettings returns the stored settings normalised with defaults, and
// whether a row exists.
func (s *Store) GetSettings(ctx context.Context, defaultMode routing.Mode) (routing.Settings, int64, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            keyOf(pkSettings, skSettings),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return routing.Settings{}, 0, unavailable("get settings", err)
	}
	if len(out.Item) == 0 {
		return routing.DefaultSettings(defaultMode), 0, nil
	}
	var it settingsItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return routing.Settings{}, 0, fmt.Errorf("decode settings: %w", err)
	}
	return it.Settings.Normalize(defaultMode), it.Version, nil
}

// PutSettings writes settings if the stored version is still version
// (optimistic concurrency: two admins' patches never overwrite each other
// silently); ErrConflict otherwise.
func (s *Store) PutSettings(ctx context.Context, set routing.Settings, version int64, now time.Time) error {
	item, err := attributevalue.MarshalMap(settingsItem{
		itemKeys:  itemKeys{PK: pkSettings, SK: skSettings, Entity: EntitySettings},
		Settings:  set,
		Version:   version + 1,
		UpdatedAt: now.UTC(),
	})
	if err != nil {
		return fmt.Errorf("encode settings: %w", err)
	}
	cond := "attribute_not_exists(pk)"
	vals := map[string]types.AttributeValue(nil)
	if version > 0 {
		cond = "version = :v"
		vals = map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: fmt.Sprint(version)}}
	}
	_, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                 aws.String(s.table),
		Item:                      item,
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeValues: vals,
	})
	if err != nil {
		if isConditionFailed(err) {
			return ErrConflict
		}
		return unavailable("put settings", err)
	}
	return nil
}
