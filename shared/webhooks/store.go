package webhooks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/store"
)

// Item types in the main table (docs/webhooks.md).
const (
	EntityWebhook  = "webhooks"
	EntityDelivery = "webhook_deliveries"
	entityDone     = "webhook_delivered"
)

// Row layout. An owner's endpoints share a partition with its counter, so
// the consumer finds them with one Query and the limit is one condition.
const (
	pkOwnerPrefix = "WEBHOOKS#"
	skEndpoint    = "EP#"
	skCount       = "COUNT"
	pkLogPrefix   = "WHLOG#"
	pkDonePrefix  = "WHDONE#"
)

// Endpoint statuses.
const (
	StatusActive   = "active"
	StatusDisabled = "disabled"
)

// Endpoint is a stored webhook endpoint; the signing secret only sealed.
type Endpoint struct {
	Owner        string     `dynamodbav:"owner"`
	ID           string     `dynamodbav:"webhook_id"`
	URL          string     `dynamodbav:"url"`
	Events       []string   `dynamodbav:"events"`
	Ciphertext   []byte     `dynamodbav:"ciphertext"`
	Hint         string     `dynamodbav:"hint"`
	Status       string     `dynamodbav:"status"`
	CreatedAt    time.Time  `dynamodbav:"created_at"`
	FailingSince *time.Time `dynamodbav:"failing_since,omitempty"`
	DisabledAt   *time.Time `dynamodbav:"disabled_at,omitempty"`
}

// Subscribed reports whether e wants events of type typ.
func (e Endpoint) Subscribed(typ string) bool {
	for _, t := range e.Events {
		if t == AllEvents || t == typ {
			return true
		}
	}
	return false
}

// Attempt is one delivery attempt, as the deliveries log shows it.
type Attempt struct {
	At          time.Time  `dynamodbav:"at" json:"at"`
	WebhookID   string     `dynamodbav:"webhook_id" json:"webhook_id"`
	EventID     string     `dynamodbav:"event_id" json:"event_id"`
	EventType   string     `dynamodbav:"event_type" json:"event_type"`
	Attempt     int        `dynamodbav:"attempt" json:"attempt"`
	Result      string     `dynamodbav:"result" json:"result"`
	HTTPStatus  int        `dynamodbav:"http_status" json:"http_status"`
	Error       string     `dynamodbav:"error,omitempty" json:"error,omitempty"`
	LatencyMS   int64      `dynamodbav:"latency_ms" json:"latency_ms"`
	NextAttempt *time.Time `dynamodbav:"next_attempt_at,omitempty" json:"next_attempt_at,omitempty"`
}

// Attempt results.
const (
	ResultDelivered = "delivered"
	ResultFailed    = "failed"
)

// DB is the subset of *dynamodb.Client the store uses.
type DB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
}

// Store keeps endpoints, the attempt log and delivered markers in the main
// table.
type Store struct {
	DB    DB
	Table string
	// LogTTL is how long attempts are kept (30 days); DoneTTL how long a
	// delivered marker guards against a repeat (7 days, beyond the ~27 h
	// retry schedule and the queue's retention).
	LogTTL, DoneTTL time.Duration
}

// NewStore returns a Store over the main table named with prefix.
func NewStore(db DB, prefix string) *Store {
	return &Store{DB: db, Table: store.MainTable.Name(prefix), LogTTL: 30 * 24 * time.Hour, DoneTTL: 7 * 24 * time.Hour}
}

type endpointItem struct {
	PK     string `dynamodbav:"pk"`
	SK     string `dynamodbav:"sk"`
	Entity string `dynamodbav:"entity"`
	Endpoint
}

func unavailable(op string, err error) error { return store.Unavailable("webhook storage", op, err) }

func ownerPK(owner string) string { return pkOwnerPrefix + owner }

// Create stores e if the owner has fewer than limit endpoints (one
// transaction: the owner's counter and the new row).
func (s *Store) Create(ctx context.Context, e Endpoint, limit int) error {
	item, err := attributevalue.MarshalMap(endpointItem{PK: ownerPK(e.Owner), SK: skEndpoint + e.ID, Entity: EntityWebhook, Endpoint: e})
	if err != nil {
		return fmt.Errorf("encode webhook: %w", err)
	}
	_, err = s.DB.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Update: &types.Update{
			TableName:                aws.String(s.Table),
			Key:                      store.Key(ownerPK(e.Owner), skCount),
			UpdateExpression:         aws.String("SET #n = if_not_exists(#n, :zero) + :one, #e = :entity"),
			ConditionExpression:      aws.String("attribute_not_exists(#n) OR #n < :limit"),
			ExpressionAttributeNames: map[string]string{"#n": "n", "#e": store.AttrEntity},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":zero": store.N(0), ":one": store.N(1), ":limit": store.N(int64(limit)), ":entity": store.S(EntityWebhook),
			},
		}},
		{Put: &types.Put{TableName: aws.String(s.Table), Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
	}})
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		if len(tce.CancellationReasons) > 0 && aws.ToString(tce.CancellationReasons[0].Code) == "ConditionalCheckFailed" {
			route := "/v1/webhooks/{id}"
			if org, ok := strings.CutPrefix(e.Owner, "org:"); ok {
				route = "/v1/orgs/" + org + "/webhooks/{id}"
			}
			return apperr.New(apperr.InvalidRequest, "at most %d webhooks per owner; delete one first (DELETE %s)", limit, route)
		}
		return apperr.Wrap(err, apperr.Conflict, "another change to your webhooks happened at the same time; try again")
	}
	if err != nil {
		return unavailable("create webhook", err)
	}
	return nil
}

// Delete removes the owner's endpoint id; apperr NotFound when it has none.
func (s *Store) Delete(ctx context.Context, owner, id string) error {
	_, err := s.DB.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Delete: &types.Delete{TableName: aws.String(s.Table), Key: store.Key(ownerPK(owner), skEndpoint+id),
			ConditionExpression: aws.String("attribute_exists(pk)")}},
		{Update: &types.Update{TableName: aws.String(s.Table), Key: store.Key(ownerPK(owner), skCount),
			UpdateExpression:          aws.String("SET #n = #n - :one"),
			ConditionExpression:       aws.String("#n > :zero"),
			ExpressionAttributeNames:  map[string]string{"#n": "n"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":one": store.N(1), ":zero": store.N(0)}}},
	}})
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		if len(tce.CancellationReasons) > 0 && aws.ToString(tce.CancellationReasons[0].Code) == "ConditionalCheckFailed" {
			return notFound(id)
		}
		return apperr.Wrap(err, apperr.Conflict, "another change to your webhooks happened at the same time; try again")
	}
	if err != nil {
		return unavailable("delete webhook", err)
	}
	return nil
}

func notFound(id string) error {
	return apperr.New(apperr.NotFound, "no webhook %s here; GET the same .../webhooks route lists the ones you can manage", id)
}

// Change is an update of an endpoint; nil fields stay as they are.
type Change struct {
	Enabled *bool
	URL     *string
	Events  []string
}

// Update applies ch to the owner's endpoint id in one conditional write and
// returns the endpoint as stored; apperr NotFound when the owner has none.
// Enabling, or pointing the endpoint at a new URL, restarts the failure
// clock (failing_since is removed): the 3 days before it is switched off
// count from its next failure (docs/webhooks.md).
func (s *Store) Update(ctx context.Context, owner, id string, ch Change, now time.Time) (Endpoint, error) {
	var set, remove []string
	names := map[string]string{}
	vals := map[string]types.AttributeValue{}
	if ch.Enabled != nil {
		names["#s"] = "status"
		if *ch.Enabled {
			set, remove = append(set, "#s = :active"), append(remove, "disabled_at", "failing_since")
			vals[":active"] = store.S(StatusActive)
		} else {
			// A pause by the owner keeps the first disable time when it was
			// already off, so disabled_at says since when.
			set = append(set, "#s = :disabled", "disabled_at = if_not_exists(disabled_at, :now)")
			remove = append(remove, "failing_since")
			vals[":disabled"], vals[":now"] = store.S(StatusDisabled), store.S(now.UTC().Format(time.RFC3339Nano))
		}
	}
	if ch.URL != nil {
		names["#u"] = "url"
		set, vals[":url"] = append(set, "#u = :url"), store.S(*ch.URL)
		if !slices.Contains(remove, "failing_since") {
			remove = append(remove, "failing_since")
		}
	}
	if ch.Events != nil {
		ev, err := attributevalue.Marshal(ch.Events)
		if err != nil {
			return Endpoint{}, fmt.Errorf("encode events: %w", err)
		}
		names["#e"] = "events"
		set, vals[":events"] = append(set, "#e = :events"), ev
	}
	expr := "SET " + strings.Join(set, ", ")
	if len(remove) > 0 {
		expr += " REMOVE " + strings.Join(remove, ", ")
	}
	out, err := s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.Table),
		Key:                       store.Key(ownerPK(owner), skEndpoint+id),
		UpdateExpression:          aws.String(expr),
		ConditionExpression:       aws.String("attribute_exists(pk)"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if isConditionFailed(err) {
		return Endpoint{}, notFound(id)
	}
	if err != nil {
		return Endpoint{}, unavailable("update webhook", err)
	}
	var it endpointItem
	if err := attributevalue.UnmarshalMap(out.Attributes, &it); err != nil {
		return Endpoint{}, fmt.Errorf("decode webhook: %w", err)
	}
	return it.Endpoint, nil
}

// Get returns the owner's endpoint id; apperr NotFound when it has none.
func (s *Store) Get(ctx context.Context, owner, id string) (Endpoint, error) {
	out, err := s.DB.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.Table), Key: store.Key(ownerPK(owner), skEndpoint+id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return Endpoint{}, unavailable("get webhook", err)
	}
	if len(out.Item) == 0 {
		return Endpoint{}, notFound(id)
	}
	var it endpointItem
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return Endpoint{}, fmt.Errorf("decode webhook: %w", err)
	}
	return it.Endpoint, nil
}

// List returns the owner's endpoints, oldest first (at most the limit, so
// one page). The read is strongly consistent: the consumer reads this list
// per event, and a delete that has returned must not be missed.
func (s *Store) List(ctx context.Context, owner string) ([]Endpoint, error) {
	var out []Endpoint
	var start map[string]types.AttributeValue
	for {
		q, err := s.DB.Query(ctx, &dynamodb.QueryInput{
			TableName:                 aws.String(s.Table),
			KeyConditionExpression:    aws.String("pk = :pk AND begins_with(sk, :ep)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": store.S(ownerPK(owner)), ":ep": store.S(skEndpoint)},
			ExclusiveStartKey:         start,
			ConsistentRead:            aws.Bool(true),
		})
		if err != nil {
			return nil, unavailable("list webhooks", err)
		}
		for _, item := range q.Items {
			var it endpointItem
			if err := attributevalue.UnmarshalMap(item, &it); err != nil {
				return nil, fmt.Errorf("decode webhook: %w", err)
			}
			out = append(out, it.Endpoint)
		}
		if len(q.LastEvaluatedKey) == 0 {
			break
		}
		start = q.LastEvaluatedKey
	}
	sortByCreated(out)
	return out, nil
}

func (s *Store) attemptItem(a Attempt) (map[string]types.AttributeValue, error) {
	item, err := attributevalue.MarshalMap(a)
	if err != nil {
		return nil, fmt.Errorf("encode attempt: %w", err)
	}
	item[store.AttrPK] = store.S(pkLogPrefix + a.WebhookID)
	item[store.AttrSK] = store.S(fmt.Sprintf("%020d#%s#%02d", a.At.UnixNano(), a.EventID, a.Attempt))
	item[store.AttrEntity] = store.S(EntityDelivery)
	item[store.AttrTTL] = store.N(a.At.Add(s.LogTTL).Unix())
	return item, nil
}

// RecordAttempt appends a to the endpoint's attempt log.
func (s *Store) RecordAttempt(ctx context.Context, a Attempt) error {
	item, err := s.attemptItem(a)
	if err != nil {
		return err
	}
	if _, err := s.DB.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.Table), Item: item}); err != nil {
		return unavailable("record attempt", err)
	}
	return nil
}

// RecordDelivered writes the delivered marker and the successful attempt
// in one batch (one round trip on the hot path).
func (s *Store) RecordDelivered(ctx context.Context, a Attempt) error {
	item, err := s.attemptItem(a)
	if err != nil {
		return err
	}
	done := doneKey(a.WebhookID, a.EventID)
	done[store.AttrEntity] = store.S(entityDone)
	done[store.AttrTTL] = store.N(a.At.Add(s.DoneTTL).Unix())
	reqs := map[string][]types.WriteRequest{s.Table: {
		{PutRequest: &types.PutRequest{Item: done}}, {PutRequest: &types.PutRequest{Item: item}},
	}}
	for try := 0; len(reqs) > 0; try++ {
		if try == 5 {
			return unavailable("record delivery", errors.New("unprocessed items after 5 tries"))
		}
		if try > 0 {
			time.Sleep(time.Duration(try*try) * 20 * time.Millisecond)
		}
		out, err := s.DB.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: reqs})
		if err != nil {
			return unavailable("record delivery", err)
		}
		reqs = out.UnprocessedItems
	}
	return nil
}

// Attempts returns the endpoint's newest attempts first, at most limit.
func (s *Store) Attempts(ctx context.Context, webhookID string, limit int) ([]Attempt, error) {
	q, err := s.DB.Query(ctx, &dynamodb.QueryInput{
		TableName:                 aws.String(s.Table),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": store.S(pkLogPrefix + webhookID)},
		ScanIndexForward:          aws.Bool(false),
		Limit:                     aws.Int32(int32(limit)),
	})
	if err != nil {
		return nil, unavailable("list deliveries", err)
	}
	out := make([]Attempt, 0, len(q.Items))
	for _, item := range q.Items {
		var a Attempt
		if err := attributevalue.UnmarshalMap(item, &a); err != nil {
			return nil, fmt.Errorf("decode attempt: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

func doneKey(webhookID, msgID string) map[string]types.AttributeValue {
	return store.Key(pkDonePrefix+webhookID+"#"+msgID, "DONE")
}

// Delivered reports whether msgID already reached the endpoint.
func (s *Store) Delivered(ctx context.Context, webhookID, msgID string) (bool, error) {
	out, err := s.DB.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(s.Table), Key: doneKey(webhookID, msgID), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return false, unavailable("read delivered marker", err)
	}
	return len(out.Item) > 0, nil
}

// MarkFailing notes a failed attempt and returns since when the endpoint
// has been failing (now, if it was healthy).
func (s *Store) MarkFailing(ctx context.Context, owner, id string, now time.Time) (time.Time, error) {
	out, err := s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.Table),
		Key:                       store.Key(ownerPK(owner), skEndpoint+id),
		UpdateExpression:          aws.String("SET failing_since = if_not_exists(failing_since, :now)"),
		ConditionExpression:       aws.String("attribute_exists(pk)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":now": store.S(now.UTC().Format(time.RFC3339Nano))},
		ReturnValues:              types.ReturnValueAllNew,
	})
	if isConditionFailed(err) {
		return now, nil // deleted meanwhile
	}
	if err != nil {
		return time.Time{}, unavailable("mark failing", err)
	}
	var v struct {
		FailingSince time.Time `dynamodbav:"failing_since"`
	}
	if err := attributevalue.UnmarshalMap(out.Attributes, &v); err != nil || v.FailingSince.IsZero() {
		return now, nil
	}
	return v.FailingSince, nil
}

// MarkHealthy clears the failing mark after a success.
func (s *Store) MarkHealthy(ctx context.Context, owner, id string) error {
	_, err := s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(s.Table),
		Key:                 store.Key(ownerPK(owner), skEndpoint+id),
		UpdateExpression:    aws.String("REMOVE failing_since"),
		ConditionExpression: aws.String("attribute_exists(pk)"),
	})
	if err != nil && !isConditionFailed(err) {
		return unavailable("mark healthy", err)
	}
	return nil
}

// Disable switches an active endpoint off; false when it was not active
// (already disabled or deleted), so only one caller announces it.
//
// since is the failure clock the caller read (MarkFailing): the write holds
// only while the endpoint is active and that clock unchanged, so an owner's
// re-enable or new URL in between (which clears it) wins.
func (s *Store) Disable(ctx context.Context, owner, id string, since, now time.Time) (bool, error) {
	_, err := s.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                aws.String(s.Table),
		Key:                      store.Key(ownerPK(owner), skEndpoint+id),
		UpdateExpression:         aws.String("SET #s = :disabled, disabled_at = :now"),
		ConditionExpression:      aws.String("#s = :active AND failing_since = :since"),
		ExpressionAttributeNames: map[string]string{"#s": "status"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":disabled": store.S(StatusDisabled), ":active": store.S(StatusActive),
			":now": store.S(now.UTC().Format(time.RFC3339Nano)), ":since": store.S(since.UTC().Format(time.RFC3339Nano))},
	})
	if isConditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, unavailable("disable webhook", err)
	}
	return true, nil
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

func sortByCreated(es []Endpoint) {
	slices.SortStableFunc(es, func(a, b Endpoint) int { return a.CreatedAt.Compare(b.CreatedAt) })
}
