// Package store is byok's DynamoDB storage for accounts, provider keys and
// settings (SPEC §5). Every DynamoDB failure is returned as an apperr
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

// Item types (SPEC §5 names), stored in the "entity" attribute.
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
	skAccount   = "ACCOUNT"
	skKeyPrefix = "KEY#"
	pkSettings  = "SETTINGS"
	skSettings  = "GLOBAL"
)

// DynamoDB is the subset of *dynamodb.Client the store uses.
type DynamoDB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
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

// KeyRecord is a stored provider key: only the envelope ciphertext, never
// the plaintext.
type KeyRecord struct {
	UserID      string    `dynamodbav:"user_id"`
	Provider    string    `dynamodbav:"provider"`
	KeyID       string    `dynamodbav:"key_id"`
	Ciphertext  []byte    `dynamodbav:"ciphertext"`
	WrapperID   string    `dynamodbav:"wrapper_id"`
	Hint        string    `dynamodbav:"hint"`
	Status      string    `dynamodbav:"status"`
	Reason      string    `dynamodbav:"reason"`
	ValidatedAt time.Time `dynamodbav:"validated_at"`
	CreatedAt   time.Time `dynamodbav:"created_at"`
	UpdatedAt   time.Time `dynamodbav:"updated_at"`
}

// User is everything one Query of a user's partition returns.
type User struct {
	Account *Account // nil when the user has no account row
	Keys    map[string]KeyRecord
}

type itemKeys struct {
	PK     string `dynamodbav:"pk"`
	SK     string `dynamodbav:"sk"`
	Entity string `dynamodbav:"entity"`
}

type accountItem struct {
	itemKeys
	Account
}

type keyItem struct {
	itemKeys
	KeyRecord
}

func userPK(userID string) string { return UserPK(userID) }

func keyOf(pk, sk string) map[string]types.AttributeValue { return Key(pk, sk) }

// unavailable wraps a DynamoDB failure so the request fails closed with 503.
func unavailable(op string, err error) error { return Unavailable("storage", op, err) }

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// GetUser reads the account and every key of userID with one Query.
func (s *Store) GetUser(ctx context.Context, userID string) (User, error) {
	u := User{Keys: map[string]KeyRecord{}}
	var start map[string]types.AttributeValue
	for {
		out, err := s.db.Query(ctx, &dynamodb.QueryInput{
			TableName:              aws.String(s.table),
			KeyConditionExpression: aws.String("pk = :pk"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": &types.AttributeValueMemberS{Value: userPK(userID)},
			},
			ConsistentRead:    aws.Bool(true),
			ExclusiveStartKey: start,
		})
		if err != nil {
			return User{}, unavailable("query user", err)
		}
		for _, it := range out.Items {
			sk, _ := it[AttrSK].(*types.AttributeValueMemberS)
			if sk == nil {
				continue
			}
			switch {
			case sk.Value == skAccount:
				var a accountItem
				if err := attributevalue.UnmarshalMap(it, &a); err != nil {
					return User{}, fmt.Errorf("decode account: %w", err)
				}
				acc := a.Account
				u.Account = &acc
			case strings.HasPrefix(sk.Value, skKeyPrefix):
				var k keyItem
				if err := attributevalue.UnmarshalMap(it, &k); err != nil {
					return User{}, fmt.Errorf("decode key: %w", err)
				}
				u.Keys[k.Provider] = k.KeyRecord
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return u, nil
		}
		start = out.LastEvaluatedKey
	}
}

// PutKey stores k, replacing the provider's previous key. It returns the
// replaced record, if any.
func (s *Store) PutKey(ctx context.Context, k KeyRecord) (*KeyRecord, error) {
	item, err := attributevalue.MarshalMap(keyItem{
		itemKeys:  itemKeys{PK: userPK(k.UserID), SK: skKeyPrefix + k.Provider, Entity: EntityProviderKey},
		KeyRecord: k,
	})
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:    aws.String(s.table),
		Item:         item,
		ReturnValues: types.ReturnValueAllOld,
	})
	if err != nil {
		return nil, unavailable("put key", err)
	}
	if len(out.Attributes) == 0 {
		return nil, nil
	}
	var old keyItem
	if err := attributevalue.UnmarshalMap(out.Attributes, &old); err != nil {
		return nil, fmt.Errorf("decode replaced key: %w", err)
	}
	return &old.KeyRecord, nil
}

// StatusUpdate is a new validation outcome for one stored key.
type StatusUpdate struct {
	UserID, Provider, KeyID string
	Status, Reason          string
	ValidatedAt             time.Time
}

// UpdateKeyStatus records a validation outcome, only if the row still holds
// the same key id (a replaced or deleted key is never touched: ErrConflict).
// It returns the status and reason the row had before.
func (s *Store) UpdateKeyStatus(ctx context.Context, u StatusUpdate) (prevStatus, prevReason string, err error) {
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(s.table),
		Key:                 keyOf(userPK(u.UserID), skKeyPrefix+u.Provider),
		UpdateExpression:    aws.String("SET #st = :st, reason = :r, validated_at = :va"),
		ConditionExpression: aws.String("key_id = :kid"),
		ExpressionAttributeNames: map[string]string{
			"#st": "status",
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":st":  &types.AttributeValueMemberS{Value: u.Status},
			":r":   &types.AttributeValueMemberS{Value: u.Reason},
			":va":  &types.AttributeValueMemberS{Value: u.ValidatedAt.UTC().Format(time.RFC3339Nano)},
			":kid": &types.AttributeValueMemberS{Value: u.KeyID},
		},
		ReturnValues: types.ReturnValueAllOld, // moto omits unchanged attributes from UPDATED_OLD
	})
	if err != nil {
		if isConditionFailed(err) {
			return "", "", ErrConflict
		}
		return "", "", unavailable("update key status", err)
	}
	var old struct {
		Status string `dynamodbav:"status"`
		Reason string `dynamodbav:"reason"`
	}
	if err := attributevalue.UnmarshalMap(out.Attributes, &old); err != nil {
		return "", "", fmt.Errorf("decode old status: %w", err)
	}
	return old.Status, old.Reason, nil
}

// DeleteKey hard-deletes the provider's key of userID. It returns the deleted
// record, or nil when there was none.
func (s *Store) DeleteKey(ctx context.Context, userID, provider string) (*KeyRecord, error) {
	out, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:    aws.String(s.table),
		Key:          keyOf(userPK(userID), skKeyPrefix+provider),
		ReturnValues: types.ReturnValueAllOld,
	})
	if err != nil {
		return nil, unavailable("delete key", err)
	}
	if len(out.Attributes) == 0 {
		return nil, nil
	}
	var old keyItem
	if err := attributevalue.UnmarshalMap(out.Attributes, &old); err != nil {
		return nil, fmt.Errorf("decode deleted key: %w", err)
	}
	return &old.KeyRecord, nil
}

// ReplaceCiphertext swaps a key's envelope (after a rewrap) only if the row
// still holds exactly oldCiphertext; otherwise ErrConflict.
func (s *Store) ReplaceCiphertext(ctx context.Context, userID, provider string, oldCiphertext, newCiphertext []byte, wrapperID string) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(s.table),
		Key:                 keyOf(userPK(userID), skKeyPrefix+provider),
		UpdateExpression:    aws.String("SET ciphertext = :new, wrapper_id = :w"),
		ConditionExpression: aws.String("ciphertext = :old"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":new": &types.AttributeValueMemberB{Value: newCiphertext},
			":old": &types.AttributeValueMemberB{Value: oldCiphertext},
			":w":   &types.AttributeValueMemberS{Value: wrapperID},
		},
	})
	if err != nil {
		if isConditionFailed(err) {
			return ErrConflict
		}
		return unavailable("replace ciphertext", err)
	}
	return nil
}

// ScanKeys calls fn for every stored provider key, page by page. Segment and
// total allow a parallel scan (total 0 or 1 = one sequential scan).
func (s *Store) ScanKeys(ctx context.Context, segment, total int32, fn func(KeyRecord) error) error {
	var start map[string]types.AttributeValue
	for {
		in := &dynamodb.ScanInput{
			TableName:        aws.String(s.table),
			FilterExpression: aws.String("entity = :e"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":e": &types.AttributeValueMemberS{Value: EntityProviderKey},
			},
			ExclusiveStartKey: start,
		}
		if total > 1 {
			in.Segment, in.TotalSegments = aws.Int32(segment), aws.Int32(total)
		}
		out, err := s.db.Scan(ctx, in)
		if err != nil {
			return unavailable("scan keys", err)
		}
		for _, it := range out.Items {
			var k keyItem
			if err := attributevalue.UnmarshalMap(it, &k); err != nil {
				return fmt.Errorf("decode key: %w", err)
			}
			if err := fn(k.KeyRecord); err != nil {
				return err
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		start = out.LastEvaluatedKey
	}
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
