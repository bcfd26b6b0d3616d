// Package store is byok's DynamoDB storage for accounts, provider keys and
// settings (docs/api.md §5). Every DynamoDB failure is returned as an apperr
// ServiceUnavailable so callers fail closed.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Item types (docs/api.md §5 names), stored in the "entity" attribute.
const (
	EntityAccount     = "accounts"
	EntityProviderKey = "provider_keys"
	EntitySettings    = "settings"
	EntityRateLimit   = "rate_limits"
	// EntityCreditTransaction rows live in CreditTransactionsTable.
	EntityCreditTransaction = "credit_transactions"
	// EntityUsage rows live in UsageTable.
	EntityUsage = "api_key_usage"
)

const (
	skAccount  = "ACCOUNT"
	pkSettings = "SETTINGS"
	skSettings = "GLOBAL"
)

// DynamoDB is the subset of *dynamodb.Client the store uses.
type DynamoDB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Store reads and writes byok's main table.
type Store struct {
	db    DynamoDB
	table string
}

// New returns a Store over the main table named with prefix.
func New(db DynamoDB, prefix string) *Store {
	return &Store{db: db, table: MainTable.Name(prefix)}
}

// Table returns the physical main table name.
func (s *Store) Table() string { return s.table }

// ErrConflict is returned when a conditional write lost a race (for example
// the key row was replaced or deleted meanwhile).
var ErrConflict = errors.New("store: conditional write failed")

// Account is a user's account row.
type Account struct {
	UserID        string    `dynamodbav:"user_id"`
	Tier          string    `dynamodbav:"tier"`
	Email         string    `dynamodbav:"email"`
	CreditBalance int64     `dynamodbav:"credit_balance"`
	LastGrant     int64     `dynamodbav:"last_grant"`
	CreatedAt     time.Time `dynamodbav:"created_at"`
	UpdatedAt     time.Time `dynamodbav:"updated_at"`
}

// GetAccount returns userID's account row, or nil when none exists.
func (s *Store) GetAccount(ctx context.Context, userID string) (*Account, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(s.table),
		Key:            keyOf(userPK(userID), skAccount),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, unavailable("get account", err)
	}
	if len(out.Item) == 0 {
		return nil, nil
	}
	var a accountItem
	if err := attributevalue.UnmarshalMap(out.Item, &a); err != nil {
		return nil, fmt.Errorf("decode account: %w", err)
	}
	return &a.Account, nil
}

// AccountPatch holds the admin-editable account fields; nil means unchanged.
type AccountPatch struct {
	Tier  *string
	Email *string
}

// UpsertAccount creates or updates userID's account with patch, leaving the
// credit balance untouched, and returns the account after the write.
func (s *Store) UpsertAccount(ctx context.Context, userID string, patch AccountPatch, now time.Time) (*Account, error) {
	ts := now.UTC().Format(time.RFC3339Nano)
	set := []string{"entity = :e", "user_id = :u", "updated_at = :now", "created_at = if_not_exists(created_at, :now)",
		"credit_balance = if_not_exists(credit_balance, :zero)", "tier = if_not_exists(tier, :free)", "email = if_not_exists(email, :empty)"}
	vals := map[string]types.AttributeValue{
		":e":     &types.AttributeValueMemberS{Value: EntityAccount},
		":u":     &types.AttributeValueMemberS{Value: userID},
		":now":   &types.AttributeValueMemberS{Value: ts},
		":zero":  &types.AttributeValueMemberN{Value: "0"},
		":free":  &types.AttributeValueMemberS{Value: "free"},
		":empty": &types.AttributeValueMemberS{Value: ""},
	}
	if patch.Tier != nil {
		set[5] = "tier = :tier"
		vals[":tier"] = &types.AttributeValueMemberS{Value: *patch.Tier}
		delete(vals, ":free")
	}
	if patch.Email != nil {
		set[6] = "email = :email"
		vals[":email"] = &types.AttributeValueMemberS{Value: *patch.Email}
		delete(vals, ":empty")
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       keyOf(userPK(userID), skAccount),
		UpdateExpression:          aws.String("SET " + strings.Join(set, ", ")),
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if err != nil {
		return nil, unavailable("upsert account", err)
	}
	var a accountItem
	if err := attributevalue.UnmarshalMap(out.Attributes, &a); err != nil {
		return nil, fmt.Errorf("decode account: %w", err)
	}
	return &a.Account, nil
}

// Once reports whether the event named key may happen now: true at most once
// per window across every instance (a conditional write of a marker row
// with a TTL). Used to throttle notifications such as byok.fallback.
func (s *Store) Once(ctx context.Context, key string, window time.Duration, now time.Time) (bool, error) {
	_, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(s.table),
		Item: map[string]types.AttributeValue{
			AttrPK:     &types.AttributeValueMemberS{Value: "ONCE#" + key},
			AttrSK:     &types.AttributeValueMemberS{Value: "ONCE"},
			AttrEntity: &types.AttributeValueMemberS{Value: "event_marks"},
			"at":       &types.AttributeValueMemberN{Value: fmt.Sprint(now.Unix())},
			AttrTTL:    &types.AttributeValueMemberN{Value: fmt.Sprint(now.Add(window).Unix())},
		},
		ConditionExpression:      aws.String("attribute_not_exists(pk) OR #at <= :cutoff"),
		ExpressionAttributeNames: map[string]string{"#at": "at"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":cutoff": &types.AttributeValueMemberN{Value: fmt.Sprint(now.Add(-window).Unix())},
		},
	})
	if err != nil {
		if isConditionFailed(err) {
			return false, nil
		}
		return false, unavailable("once", err)
	}
	return true, nil
}
