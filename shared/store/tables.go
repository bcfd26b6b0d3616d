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
var UsageTable = TableDef{
	Logical:      "UsageTable",
	Suffix:       "api_key_usage",
	PartitionKey: AttrPK,
	SortKey:      AttrSK,
	TTLAttribute: AttrTTL,
	Entities:     []string{EntityUsage},
}

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
		_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:   aws.String(name),
			BillingMode: types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{
				{AttributeName: aws.String(d.PartitionKey), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: aws.String(d.SortKey), AttributeType: types.ScalarAttributeTypeS},
			},
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(d.PartitionKey), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(d.SortKey), KeyType: types.KeyTypeRange},
			},
		})
		var inUse *types.ResourceInUseException
		if err != nil && !errors.As(err, &inUse) {
			return fmt.Errorf("create table %s: %w", name, err)
		}
		w := dynamodb.NewTableExistsWaiter(db)
		if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 30*time.Second); err != nil {
			return fmt.Errorf("wait for table %s: %w", name, err)
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

func isTTLAlreadyEnabled(err error) bool {
	var ve interface{ ErrorCode() string }
	return errors.As(err, &ve) && ve.ErrorCode() == "ValidationException"
}
