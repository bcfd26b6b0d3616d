// Package usage records request metadata (docs/api.md §10): never prompt or
// response content, only who, when, which route/provider/model, token
// counts, estimated cost, status, error class, latency and time to first
// token. BYOK rows go to the api_key_usage table with a TTL.
package usage

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/store"
)

// DefaultTTL is how long usage rows are kept.
const DefaultTTL = 400 * 24 * time.Hour

// Record is one request's metadata.
type Record struct {
	RequestID       string    `dynamodbav:"request_id" json:"request_id"`
	UserID          string    `dynamodbav:"user_id" json:"user_id"`
	At              time.Time `dynamodbav:"at" json:"at"`
	Route           string    `dynamodbav:"route" json:"route"`
	Endpoint        string    `dynamodbav:"endpoint" json:"endpoint"`
	Provider        string    `dynamodbav:"provider" json:"provider"`
	Model           string    `dynamodbav:"model" json:"model"`
	Stream          bool      `dynamodbav:"stream" json:"stream"`
	InputTokens     int64     `dynamodbav:"input_tokens" json:"input_tokens"`
	OutputTokens    int64     `dynamodbav:"output_tokens" json:"output_tokens"`
	CacheReadTokens int64     `dynamodbav:"cache_read_tokens,omitempty" json:"cache_read_tokens,omitempty"`
	CostUSD         float64   `dynamodbav:"cost_usd" json:"cost_usd"`
	Credits         int64     `dynamodbav:"credits,omitempty" json:"credits,omitempty"`
	Status          int       `dynamodbav:"status" json:"status"`
	ErrorClass      string    `dynamodbav:"error_class,omitempty" json:"error_class,omitempty"`
	LatencyMS       float64   `dynamodbav:"latency_ms" json:"latency_ms"`
	TTFTMS          float64   `dynamodbav:"ttft_ms,omitempty" json:"ttft_ms,omitempty"`
	FallbackReason  string    `dynamodbav:"fallback_reason,omitempty" json:"fallback_reason,omitempty"`
	Cut             bool      `dynamodbav:"cut,omitempty" json:"cut,omitempty"`
	// The key a BYOK try used (docs/teams.md): its owner's org and project
	// (empty for a personal key), scope (user, org, project) and id.
	Org      string `dynamodbav:"org,omitempty" json:"org,omitempty"`
	Project  string `dynamodbav:"project,omitempty" json:"project,omitempty"`
	KeyScope string `dynamodbav:"key_scope,omitempty" json:"key_scope,omitempty"`
	KeyID    string `dynamodbav:"key_id,omitempty" json:"key_id,omitempty"`
	// ForProject is the project the caller's token named, on tries with an
	// org or project key: what an org's chargeback groups by, since an org
	// key serves every project (docs/teams.md).
	ForProject string `dynamodbav:"for_project,omitempty" json:"for_project,omitempty"`
	// Try is the 0-based position of this try among the request's keys:
	// each try is its own row.
	Try int `dynamodbav:"try,omitempty" json:"try,omitempty"`
}

// Meta returns r as a map for a credit ledger row.
func (r Record) Meta() map[string]any {
	m := map[string]any{
		"route": r.Route, "endpoint": r.Endpoint, "provider": r.Provider, "model": r.Model, "stream": r.Stream,
		"input_tokens": r.InputTokens, "output_tokens": r.OutputTokens, "cost_usd": r.CostUSD,
		"status": r.Status, "latency_ms": r.LatencyMS,
	}
	if r.CacheReadTokens > 0 {
		m["cache_read_tokens"] = r.CacheReadTokens
	}
	if r.ErrorClass != "" {
		m["error_class"] = r.ErrorClass
	}
	if r.TTFTMS > 0 {
		m["ttft_ms"] = r.TTFTMS
	}
	if r.FallbackReason != "" {
		m["fallback_reason"] = r.FallbackReason
	}
	if r.Cut {
		m["cut"] = true
	}
	return m
}

// DynamoDB is the subset of the client the writer uses.
type DynamoDB interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Writer writes BYOK usage rows.
type Writer struct {
	db    DynamoDB
	table string
	main  string // the keys' table, for last_used_at (PutTouching)
	ttl   time.Duration
}

// NewWriter returns a writer to the api_key_usage table of prefix.
func NewWriter(db DynamoDB, prefix string, ttl time.Duration) *Writer {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Writer{db: db, table: store.UsageTable.Name(prefix), main: store.MainTable.Name(prefix), ttl: ttl}
}

type item struct {
	PK     string `dynamodbav:"pk"`
	SK     string `dynamodbav:"sk"`
	Entity string `dynamodbav:"entity"`
	TTL    int64  `dynamodbav:"ttl"`
	// OrgPK and OrgSK put a try with an org or project key into the sparse
	// org_usage index (docs/teams.md); other rows leave them out.
	OrgPK string `dynamodbav:"org_pk,omitempty"`
	OrgSK string `dynamodbav:"org_sk,omitempty"`
	Record
}

// OrgPK is the org_usage index partition of org.
func OrgPK(org string) string { return "ORG#" + org }

// itemOf is the stored row of r: in the caller's partition, and in the org's
// index partition when an org's or project's key served the try.
func (w *Writer) itemOf(r Record) (map[string]types.AttributeValue, error) {
	it := item{PK: "USER#" + r.UserID, SK: trySortKey(r), Entity: store.EntityUsage, TTL: r.At.Add(w.ttl).Unix(), Record: r}
	if r.Org != "" && (r.KeyScope == store.ScopeOrg || r.KeyScope == store.ScopeProject) {
		it.OrgPK, it.OrgSK = OrgPK(r.Org), it.SK
	}
	m, err := attributevalue.MarshalMap(it)
	if err != nil {
		return nil, fmt.Errorf("encode usage: %w", err)
	}
	return m, nil
}

// SortKey is the row's sort key: time first so a range query by date works.
func SortKey(at time.Time, requestID string) string {
	return at.UTC().Format("2006-01-02T15:04:05.000000000Z") + "#" + requestID
}

// trySortKey keeps the first try's key as it always was and gives each
// later try of the same request its own row.
func trySortKey(r Record) string {
	sk := SortKey(r.At, r.RequestID)
	if r.Try > 0 {
		sk += "#" + strconv.Itoa(r.Try)
	}
	return sk
}

// Put writes one row (idempotent per time and request id).
func (w *Writer) Put(ctx context.Context, r Record) error {
	it, err := w.itemOf(r)
	if err != nil {
		return err
	}
	if _, err := w.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(w.table), Item: it}); err != nil {
		return apperr.Wrap(err, apperr.ServiceUnavailable, "usage storage is unavailable")
	}
	return nil
}
