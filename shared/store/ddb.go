package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/apperr"
)

// UserPK is the partition key of a user's account, keys, ledger and usage.
func UserPK(userID string) string { return "USER#" + userID }

// Key returns a pk/sk primary key.
func Key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: pk},
		AttrSK: &types.AttributeValueMemberS{Value: sk},
	}
}

// S is a string attribute value.
func S(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// N is a number attribute value.
func N(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// Unavailable wraps a DynamoDB failure of op so the request fails closed
// with 503 (what names the storage in the client message, e.g. "credit
// storage"). A cancelled context is returned as it is.
func Unavailable(what, op string, err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return apperr.Wrap(fmt.Errorf("%s: %w", op, err), apperr.ServiceUnavailable, "%s is unavailable; try again shortly", what)
}
