package store

import "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

// ItemKey returns the primary key of k's row (whatever its scope or slot),
// for a write made outside this package alongside another one.
func (k KeyRecord) ItemKey() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrPK: S(k.Owner().pk()), AttrSK: S(k.sk())}
}
