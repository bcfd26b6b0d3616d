package store_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/store"
)

// A dev server's api_key_usage created before the org_usage index existed
// gets the index when the bootstrap runs again (docs/teams.md), keeping
// its rows; a fresh table has it from the start.
func TestEnsureTablesAddsOrgUsageIndex(t *testing.T) {
	ctx := context.Background()
	db := dynamodb.NewFromConfig(awstest.Config(t))
	prefix := awstest.Prefix(t)
	name := store.UsageTable.Name(prefix)
	if _, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{ // the old shape: no index
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
	}); err != nil {
		t.Fatal(err)
	}
	old := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "USER#u"}, "sk": &types.AttributeValueMemberS{Value: "2026"}}
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(name), Item: old}); err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureTables(ctx, db, prefix); err != nil {
		t.Fatal(err)
	}
	out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range out.Table.GlobalSecondaryIndexes {
		got = append(got, aws.ToString(g.IndexName))
	}
	if len(got) != 1 || got[0] != store.OrgUsageIndex.Name {
		t.Fatalf("indexes after the bootstrap: %v, want [%s]", got, store.OrgUsageIndex.Name)
	}
	if it, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(name), Key: old}); err != nil || len(it.Item) == 0 {
		t.Fatalf("the old row is gone: %v", err)
	}
	// Idempotent: a second run changes nothing and does not fail.
	if err := store.EnsureTables(ctx, db, prefix); err != nil {
		t.Fatal(err)
	}
}
