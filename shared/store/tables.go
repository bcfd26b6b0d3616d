package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// TableDef describes one DynamoDB table. Tables() is the single source of
// truth for table definitions: the dev bootstrap creates tables from it and a
// test proves template.yaml declares the same keys and TTL attribute.
type TableDef struct {
	// Logical is the table's role and its CloudFormation logical id suffix.
	Logical string
	// Suffix is appended to TABLE_PREFIX to form the physical name.
	Suffix       string
	PartitionKey string
	SortKey      string
	TTLAttribute string
	// Entities lists the item types (docs/api.md §5 names) the table holds.
	Entities []string
	// Indexes are the table's global secondary indexes (projection ALL).
	Indexes []IndexDef
}

// IndexDef describes one global secondary index, both keys of type S.
type IndexDef struct {
	Name         string
	PartitionKey string
	SortKey      string
}

// Attribute names shared by every table.
const (
	AttrPK     = "pk"
	AttrSK     = "sk"
	AttrTTL    = "ttl"
	AttrEntity = "entity"
)

// MainTable holds accounts, provider keys, settings and rate-limit counters.
// Accounts and keys share a partition (USER#<id>) so a warm request reads the
// account and all its keys with one Query.
var MainTable = TableDef{
	Logical:      "MainTable",
	Suffix:       "byok",
	PartitionKey: AttrPK,
	SortKey:      AttrSK,
	TTLAttribute: AttrTTL,
	Entities:     []string{EntityAccount, EntityProviderKey, EntitySettings, EntityRateLimit},
}

// CreditTransactionsTable is the credit ledger (docs/api.md §9): one row per credit
// movement (grant, reserve, settle, release) with the request id, plus
// idempotency markers. pk USER#<id>.
var CreditTransactionsTable = TableDef{
	Logical:      "CreditTransactionsTable",
	Suffix:       "credit_transactions",
	PartitionKey: AttrPK,
	SortKey:      AttrSK,
	TTLAttribute: AttrTTL,
	Entities:     []string{EntityCreditTransaction},
}

// UsageTable holds BYOK usage rows (docs/api.md §10 api_key_usage), metadata only,
// with a TTL (default 400 days). pk USER#<id>, sk <time>#<request id>.
// Rows of tries with an org or project key also carry org_pk and org_sk,
// so the sparse OrgUsageIndex serves an org's usage (docs/teams.md)
// without a second row on the request's path.
var UsageTable = TableDef{
	Logical:      "UsageTable",
	Suffix:       "api_key_usage",
	PartitionKey: AttrPK,
	SortKey:      AttrSK,
	TTLAttribute: AttrTTL,
	Entities:     []string{EntityUsage},
	Indexes:      []IndexDef{OrgUsageIndex},
}

// Attributes of the org usage index.
const (
	AttrOrgPK = "org_pk" // ORG#<org>
	AttrOrgSK = "org_sk" // the row's sk: <time>#<request id>[#<try>]
)

// OrgUsageIndex is the sparse index of the usage rows that used an org's
// or its projects' keys, by org and time.
var OrgUsageIndex = IndexDef{Name: "org_usage", PartitionKey: AttrOrgPK, SortKey: AttrOrgSK}

// Tables returns every table byok uses.
func Tables() []TableDef { return []TableDef{MainTable, CreditTransactionsTable, UsageTable} }

// Name returns the physical table name for prefix.
func (d TableDef) Name(prefix string) string { return prefix + d.Suffix }

// EnsureTables creates any missing table of Tables() (on-demand billing) and
// enables TTL. It is for development and tests (DEV_BOOTSTRAP=1); in AWS the
// SAM template owns the tables.
func EnsureTables(ctx context.Context, db *dynamodb.Client, prefix string) error {
	for _, d := range Tables() {
		name := d.Name(prefix)
		in := &dynamodb.CreateTableInput{
			TableName:            aws.String(name),
			BillingMode:          types.BillingModePayPerRequest,
			AttributeDefinitions: d.attributes(),
			KeySchema:            keySchema(d.PartitionKey, d.SortKey),
		}
		for _, ix := range d.Indexes {
			in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, ix.create())
		}
		_, err := db.CreateTable(ctx, in)
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return fmt.Errorf("create table %s: %w", name, err)
		}
		w := dynamodb.NewTableExistsWaiter(db)
		if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 30*time.Second); err != nil {
			return fmt.Errorf("wait for table %s: %w", name, err)
		}
		if err := addMissingIndexes(ctx, db, name, d); err != nil {
			return err
		}
		if d.TTLAttribute != "" {
			_, err := db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
				TableName: aws.String(name),
				TimeToLiveSpecification: &types.TimeToLiveSpecification{
					AttributeName: aws.String(d.TTLAttribute), Enabled: aws.Bool(true),
				},
			})
			if err != nil && !isTTLAlreadyEnabled(err) {
				return fmt.Errorf("enable TTL on %s: %w", name, err)
			}
		}
	}
	return nil
}

// attributes defines the table's and its indexes' key attributes (type S).
func (d TableDef) attributes() []types.AttributeDefinition {
	var out []types.AttributeDefinition
	seen := map[string]bool{}
	for _, a := range d.KeyAttributes() {
		if !seen[a] {
			seen[a] = true
			out = append(out, types.AttributeDefinition{AttributeName: aws.String(a), AttributeType: types.ScalarAttributeTypeS})
		}
	}
	return out
}

// KeyAttributes lists the table's key attributes, then its indexes'.
func (d TableDef) KeyAttributes() []string {
	out := []string{d.PartitionKey, d.SortKey}
	for _, ix := range d.Indexes {
		out = append(out, ix.PartitionKey, ix.SortKey)
	}
	return out
}

func keySchema(hash, rng string) []types.KeySchemaElement {
	return []types.KeySchemaElement{
		{AttributeName: aws.String(hash), KeyType: types.KeyTypeHash},
		{AttributeName: aws.String(rng), KeyType: types.KeyTypeRange},
	}
}

func (ix IndexDef) create() types.GlobalSecondaryIndex {
	return types.GlobalSecondaryIndex{
		IndexName:  aws.String(ix.Name),
		KeySchema:  keySchema(ix.PartitionKey, ix.SortKey),
		Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
	}
}

// addMissingIndexes adds the indexes a table created by an older version
// lacks (a dev server's tables), so bootstrapping again brings it up to date.
func addMissingIndexes(ctx context.Context, db *dynamodb.Client, name string, d TableDef) error {
	if len(d.Indexes) == 0 {
		return nil
	}
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		return fmt.Errorf("describe table %s: %w", name, err)
	}
	have := map[string]bool{}
	for _, g := range out.Table.GlobalSecondaryIndexes {
		have[aws.ToString(g.IndexName)] = true
	}
	for _, ix := range d.Indexes {
		if have[ix.Name] {
			continue
		}
		c := ix.create()
		_, err := db.UpdateTable(ctx, &dynamodb.UpdateTableInput{
			TableName:            aws.String(name),
			AttributeDefinitions: d.attributes(),
			GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{{Create: &types.CreateGlobalSecondaryIndexAction{
				IndexName: c.IndexName, KeySchema: c.KeySchema, Projection: c.Projection,
			}}},
		})
		if err != nil {
			return fmt.Errorf("add index %s to %s: %w", ix.Name, name, err)
		}
	}
	return nil
}

func isTTLAlreadyEnabled(err error) bool {
	var ve interface{ ErrorCode() string }
	return errors.As(err, &ve) && ve.ErrorCode() == "ValidationException"
}
