package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Key scopes: whose key a row holds (docs/teams.md).
const (
	ScopeUser    = "user"
	ScopeOrg     = "org"
	ScopeProject = "project"
)

// MaxKeysPerProvider bounds the keys one owner stores for one provider.
const MaxKeysPerProvider = 10

// Row layout of keys (main table).
//
//	user key     pk USER#<user>  sk KEY#<provider>            the primary slot (every row stored before
//	                                                           several keys existed sits here)
//	             pk USER#<user>  sk KEY#<provider>#<key_id>   every further key
//	org key      pk ORG#<org>    sk KEY#<provider>[#<key_id>]
//	project key  pk ORG#<org>    sk PROJECT#<project>#KEY#<provider>[#<key_id>]
//	key set      the same partitions, sk [PROJECT#<p>#]KEYSET#<provider>: a version number bumped by every
//	             add and replace, so two concurrent adds cannot both pass the 10-key limit
//	org settings pk ORG#<org>    sk ORGSETTINGS
//
// Project keys share the org's partition so a request naming an org and a
// project reads both with one Query (plus the user's partition: two reads).
// Org and project ids never contain '#' (auth refuses such claims, the
// handlers such paths), so the layout is unambiguous.
const (
	skKeyPrefix     = "KEY#"
	skKeySetPrefix  = "KEYSET#"
	skProjectPrefix = "PROJECT#"
	skOrgSettings   = "ORGSETTINGS"
	orgPKPrefix     = "ORG#"
	entityKeySet    = "key_sets"
	// EntityOrgSettings is an organisation's settings row.
	EntityOrgSettings = "org_settings"
)

// OrgPK is the partition key of an organisation's settings, keys and its
// projects' keys.
func OrgPK(org string) string { return orgPKPrefix + org }

// Owner names the holder of a set of keys: a user, an org, or one project of
// an org.
type Owner struct {
	Scope   string
	UserID  string
	Org     string
	Project string
}

// UserOwner, OrgOwner and ProjectOwner build the three kinds of Owner.
func UserOwner(userID string) Owner { return Owner{Scope: ScopeUser, UserID: userID} }

// OrgOwner is the owner of an organisation's own keys.
func OrgOwner(org string) Owner { return Owner{Scope: ScopeOrg, Org: org} }

// ProjectOwner is the owner of one project's keys.
func ProjectOwner(org, project string) Owner {
	return Owner{Scope: ScopeProject, Org: org, Project: project}
}

func (o Owner) pk() string {
	if o.Scope == ScopeOrg || o.Scope == ScopeProject {
		return OrgPK(o.Org)
	}
	return UserPK(o.UserID)
}

func (o Owner) skPrefix() string {
	if o.Scope == ScopeProject {
		return skProjectPrefix + o.Project + "#"
	}
	return ""
}

func (o Owner) setSK(provider string) string { return o.skPrefix() + skKeySetPrefix + provider }

// KeyRecord is a stored provider key: only the envelope ciphertext, never
// the plaintext. Scope, Org and Project say whose key it is (a user's rows
// stored before scopes existed have none of them: Scope() is then user).
type KeyRecord struct {
	UserID      string    `dynamodbav:"user_id,omitempty"`
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

	KeyScope string   `dynamodbav:"scope,omitempty"`
	Org      string   `dynamodbav:"org,omitempty"`
	Project  string   `dynamodbav:"project,omitempty"`
	Label    string   `dynamodbav:"label,omitempty"`
	Priority int      `dynamodbav:"priority"`
	Models   []string `dynamodbav:"models,omitempty"`
	// LastUsedAt is when a request last used the key (zero: never).
	LastUsedAt time.Time `dynamodbav:"last_used_at,omitempty"`
	// Detail is the provider's explanation of the last verdict, or the
	// network cause of an unreachable provider (never the key).
	Detail string `dynamodbav:"detail,omitempty"`

	// Azure OpenAI's configuration: plain attributes, not secrets. The
	// endpoint is also bound into the ciphertext (keys.VaultContext), so an
	// edited endpoint makes the key fail to decrypt.
	Endpoint    string            `dynamodbav:"endpoint,omitempty"`
	APIVersion  string            `dynamodbav:"api_version,omitempty"`
	Deployments map[string]string `dynamodbav:"deployments,omitempty"`

	// Primary is true for the row at the provider's primary slot (sk
	// KEY#<provider>), where PUT stores its key and where every key stored
	// before several keys existed sits. Set on read, never stored.
	Primary bool `dynamodbav:"-"`
}

// Scope returns the key's scope (user when the row names none).
func (k KeyRecord) Scope() string {
	if k.KeyScope == "" {
		return ScopeUser
	}
	return k.KeyScope
}

// Owner returns who holds k.
func (k KeyRecord) Owner() Owner {
	return Owner{Scope: k.Scope(), UserID: k.UserID, Org: k.Org, Project: k.Project}
}

// SetOwner records o as k's owner.
func (k *KeyRecord) SetOwner(o Owner) {
	k.KeyScope, k.UserID, k.Org, k.Project = o.Scope, "", "", ""
	switch o.Scope {
	case ScopeOrg:
		k.Org = o.Org
	case ScopeProject:
		k.Org, k.Project = o.Org, o.Project
	default:
		k.KeyScope, k.UserID = "", o.UserID // user rows keep the original shape
	}
}

func (k KeyRecord) sk() string {
	base := k.Owner().skPrefix() + skKeyPrefix + k.Provider
	if k.Primary {
		return base
	}
	return base + "#" + k.KeyID
}

func (k KeyRecord) key() map[string]types.AttributeValue { return keyOf(k.Owner().pk(), k.sk()) }

// SortKeys orders keys as they are tried: ascending priority, then oldest.
func SortKeys(ks []KeyRecord) {
	slices.SortStableFunc(ks, func(a, b KeyRecord) int {
		if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
			return c
		}
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.KeyID, b.KeyID)
	})
}

// KeySet is every key of one owner, per provider, in the order they are tried.
type KeySet struct {
	Keys     map[string][]KeyRecord
	versions map[string]int64
}

// Version is the provider's key-set version (0 before the first add or
// replace); AddKey and ReplaceKeys succeed only against the version read.
func (ks KeySet) Version(provider string) int64 { return ks.versions[provider] }

// Find returns the provider's key with keyID.
func (ks KeySet) Find(provider, keyID string) (KeyRecord, bool) {
	for _, k := range ks.Keys[provider] {
		if k.KeyID == keyID {
			return k, true
		}
	}
	return KeyRecord{}, false
}

func (ks *KeySet) add(k KeyRecord) {
	if ks.Keys == nil {
		ks.Keys = map[string][]KeyRecord{}
	}
	ks.Keys[k.Provider] = append(ks.Keys[k.Provider], k)
}

func (ks *KeySet) setVersion(provider string, v int64) {
	if ks.versions == nil {
		ks.versions = map[string]int64{}
	}
	ks.versions[provider] = v
}

func (ks *KeySet) sort() {
	for _, l := range ks.Keys {
		SortKeys(l)
	}
}

// NewKeySet builds a KeySet from keys (for tests and in-memory stores).
func NewKeySet(keys ...KeyRecord) KeySet {
	var ks KeySet
	for _, k := range keys {
		ks.add(k)
	}
	ks.sort()
	return ks
}

// FirstUsable returns the first key that is not invalid, else the first key.
func FirstUsable(ks []KeyRecord) (KeyRecord, bool) {
	for _, k := range ks {
		if k.Status != "invalid" {
			return k, true
		}
	}
	if len(ks) > 0 {
		return ks[0], true
	}
	return KeyRecord{}, false
}

// User is everything one Query of a user's partition returns.
type User struct {
	Account *Account // nil when the user has no account row
	// Keys holds, per provider, the first key that is not invalid (else the
	// first key) in the order keys are tried: what a single-key reader needs.
	Keys map[string]KeyRecord
	// Set is every key of the user, per provider, in the order they are tried.
	Set KeySet
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
	if errors.As(err, &ccf) {
		return true
	}
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		for _, r := range tce.CancellationReasons {
			if c := aws.ToString(r.Code); c == "ConditionalCheckFailed" || c == "TransactionConflict" {
				return true
			}
		}
	}
	return false
}

// decodeKey reads a key row. Its owner comes from where the row sits (pk and
// sk), not from its attributes, so a row copied into another partition
// names that partition's owner (and then fails to decrypt).
func decodeKey(item map[string]types.AttributeValue) (KeyRecord, bool, error) {
	pk, _ := item[AttrPK].(*types.AttributeValueMemberS)
	sk, _ := item[AttrSK].(*types.AttributeValueMemberS)
	if pk == nil || sk == nil {
		return KeyRecord{}, false, nil
	}
	var o Owner
	rest := sk.Value
	switch {
	case strings.HasPrefix(pk.Value, "USER#"):
		o = UserOwner(strings.TrimPrefix(pk.Value, "USER#"))
	case strings.HasPrefix(pk.Value, orgPKPrefix):
		org := strings.TrimPrefix(pk.Value, orgPKPrefix)
		o = OrgOwner(org)
		if strings.HasPrefix(rest, skProjectPrefix) {
			p, r, ok := strings.Cut(strings.TrimPrefix(rest, skProjectPrefix), "#")
			if !ok {
				return KeyRecord{}, false, nil
			}
			o, rest = ProjectOwner(org, p), r
		}
	default:
		return KeyRecord{}, false, nil
	}
	if !strings.HasPrefix(rest, skKeyPrefix) {
		return KeyRecord{}, false, nil
	}
	var k keyItem
	if err := attributevalue.UnmarshalMap(item, &k); err != nil {
		return KeyRecord{}, false, fmt.Errorf("decode key: %w", err)
	}
	r := k.KeyRecord
	r.SetOwner(o)
	r.Primary = rest == skKeyPrefix+r.Provider
	return r, true, nil
}

func decodeVersion(item map[string]types.AttributeValue) int64 {
	n, _ := item["ver"].(*types.AttributeValueMemberN)
	if n == nil {
		return 0
	}
	v, _ := strconv.ParseInt(n.Value, 10, 64)
	return v
}

// query reads a whole partition (page by page) and calls fn for each item.
func (s *Store) query(ctx context.Context, op string, in *dynamodb.QueryInput, fn func(map[string]types.AttributeValue) error) error {
	in.TableName = aws.String(s.table)
	in.ConsistentRead = aws.Bool(true)
	for {
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return unavailable(op, err)
		}
		for _, it := range out.Items {
			if err := fn(it); err != nil {
				return err
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// GetUser reads the account and every key of userID with one Query.
func (s *Store) GetUser(ctx context.Context, userID string) (User, error) {
	u := User{Keys: map[string]KeyRecord{}}
	err := s.query(ctx, "query user", &dynamodb.QueryInput{
		KeyConditionExpression: aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: userPK(userID)},
		},
	}, func(it map[string]types.AttributeValue) error {
		sk, _ := it[AttrSK].(*types.AttributeValueMemberS)
		if sk == nil {
			return nil
		}
		switch {
		case sk.Value == skAccount:
			var a accountItem
			if err := attributevalue.UnmarshalMap(it, &a); err != nil {
				return fmt.Errorf("decode account: %w", err)
			}
			acc := a.Account
			u.Account = &acc
		case strings.HasPrefix(sk.Value, skKeySetPrefix):
			u.Set.setVersion(strings.TrimPrefix(sk.Value, skKeySetPrefix), decodeVersion(it))
		case strings.HasPrefix(sk.Value, skKeyPrefix):
			k, ok, err := decodeKey(it)
			if err != nil {
				return err
			}
			if ok {
				u.Set.add(k)
			}
		}
		return nil
	})
	if err != nil {
		return User{}, err
	}
	u.Set.sort()
	for p, l := range u.Set.Keys {
		u.Keys[p], _ = FirstUsable(l)
	}
	return u, nil
}

// OrgSettings is an organisation's settings row.
type OrgSettings struct {
	Org string `dynamodbav:"org"`
	// PersonalKeys: members may use their own keys after the org's (true
	// unless the org says otherwise).
	PersonalKeys bool      `dynamodbav:"personal_keys"`
	Email        string    `dynamodbav:"email"`
	UpdatedAt    time.Time `dynamodbav:"updated_at"`
}

// Org is what one Query of an org's partition returns: its settings, its own
// keys and (when a project was named) that project's keys.
type Org struct {
	Settings OrgSettings
	Keys     KeySet // the org's own keys
	Project  KeySet // the named project's keys (empty when none was named)
}

// GetOrg reads org's settings, its keys and project's keys (project may be
// empty) with one Query; other projects' rows are filtered out by DynamoDB.
func (s *Store) GetOrg(ctx context.Context, org, project string) (Org, error) {
	o := Org{Settings: OrgSettings{Org: org, PersonalKeys: true}}
	filter := "NOT begins_with(sk, :proj)"
	vals := map[string]types.AttributeValue{":pk": S(OrgPK(org)), ":proj": S(skProjectPrefix)}
	mine := ""
	if project != "" {
		mine = skProjectPrefix + project + "#"
		filter += " OR begins_with(sk, :mine)"
		vals[":mine"] = S(mine)
	}
	err := s.query(ctx, "query org", &dynamodb.QueryInput{
		KeyConditionExpression:    aws.String("pk = :pk"),
		FilterExpression:          aws.String(filter),
		ExpressionAttributeValues: vals,
	}, func(it map[string]types.AttributeValue) error {
		sk, _ := it[AttrSK].(*types.AttributeValueMemberS)
		if sk == nil {
			return nil
		}
		rest, set := sk.Value, &o.Keys
		if mine != "" && strings.HasPrefix(rest, mine) {
			rest, set = strings.TrimPrefix(rest, mine), &o.Project
		} else if strings.HasPrefix(rest, skProjectPrefix) {
			return nil
		}
		switch {
		case rest == skOrgSettings:
			var st OrgSettings
			if err := attributevalue.UnmarshalMap(it, &st); err != nil {
				return fmt.Errorf("decode org settings: %w", err)
			}
			st.Org = org
			o.Settings = st
		case strings.HasPrefix(rest, skKeySetPrefix):
			set.setVersion(strings.TrimPrefix(rest, skKeySetPrefix), decodeVersion(it))
		case strings.HasPrefix(rest, skKeyPrefix):
			k, ok, err := decodeKey(it)
			if err != nil {
				return err
			}
			if ok {
				set.add(k)
			}
		}
		return nil
	})
	if err != nil {
		return Org{}, err
	}
	o.Keys.sort()
	o.Project.sort()
	return o, nil
}

// GetKeySet reads every key of owner (one Query).
func (s *Store) GetKeySet(ctx context.Context, owner Owner) (KeySet, error) {
	switch owner.Scope {
	case ScopeOrg:
		o, err := s.GetOrg(ctx, owner.Org, "")
		return o.Keys, err
	case ScopeProject:
		o, err := s.GetOrg(ctx, owner.Org, owner.Project)
		return o.Project, err
	default:
		u, err := s.GetUser(ctx, owner.UserID)
		return u.Set, err
	}
}

// OrgSettingsPatch holds the editable org settings; nil means unchanged.
type OrgSettingsPatch struct {
	PersonalKeys *bool
	Email        *string
}

// PutOrgSettings creates or updates org's settings with patch.
func (s *Store) PutOrgSettings(ctx context.Context, org string, patch OrgSettingsPatch, now time.Time) (OrgSettings, error) {
	set := []string{"entity = :e", "org = :org", "updated_at = :now"}
	vals := map[string]types.AttributeValue{
		":e": S(EntityOrgSettings), ":org": S(org), ":now": S(now.UTC().Format(time.RFC3339Nano)),
	}
	if patch.PersonalKeys != nil {
		set = append(set, "personal_keys = :pk")
		vals[":pk"] = &types.AttributeValueMemberBOOL{Value: *patch.PersonalKeys}
	} else {
		set = append(set, "personal_keys = if_not_exists(personal_keys, :pk)")
		vals[":pk"] = &types.AttributeValueMemberBOOL{Value: true}
	}
	if patch.Email != nil {
		set = append(set, "email = :email")
		vals[":email"] = S(*patch.Email)
	} else {
		set = append(set, "email = if_not_exists(email, :email)")
		vals[":email"] = S("")
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       keyOf(OrgPK(org), skOrgSettings),
		UpdateExpression:          aws.String("SET " + strings.Join(set, ", ")),
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if err != nil {
		return OrgSettings{}, unavailable("put org settings", err)
	}
	var st OrgSettings
	if err := attributevalue.UnmarshalMap(out.Attributes, &st); err != nil {
		return OrgSettings{}, fmt.Errorf("decode org settings: %w", err)
	}
	return st, nil
}

func (s *Store) keyPut(k KeyRecord) (*types.Put, error) {
	item, err := attributevalue.MarshalMap(keyItem{
		itemKeys:  itemKeys{PK: k.Owner().pk(), SK: k.sk(), Entity: EntityProviderKey},
		KeyRecord: k,
	})
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	if k.LastUsedAt.IsZero() {
		delete(item, "last_used_at")
	}
	return &types.Put{TableName: aws.String(s.table), Item: item}, nil
}

// bumpSet is the transaction item that moves owner's provider key set from
// version to version+1, failing when another add or replace came first.
func (s *Store) bumpSet(owner Owner, provider string, version int64) types.TransactWriteItem {
	return types.TransactWriteItem{Update: &types.Update{
		TableName:           aws.String(s.table),
		Key:                 keyOf(owner.pk(), owner.setSK(provider)),
		UpdateExpression:    aws.String("SET ver = :new, entity = :e"),
		ConditionExpression: aws.String("attribute_not_exists(ver) OR ver = :old"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":new": N(version + 1), ":old": N(version), ":e": S(entityKeySet),
		},
	}}
}

func (s *Store) transact(ctx context.Context, op string, items []types.TransactWriteItem) error {
	_, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
	if err != nil {
		if isConditionFailed(err) {
			return ErrConflict
		}
		return unavailable(op, err)
	}
	return nil
}

// AddKey stores k as one more key of its owner and provider (never at the
// primary slot), provided the key set is still at version (ErrConflict
// otherwise: another add or replace came first; read again and retry).
func (s *Store) AddKey(ctx context.Context, k KeyRecord, version int64) error {
	k.Primary = false
	put, err := s.keyPut(k)
	if err != nil {
		return err
	}
	put.ConditionExpression = aws.String("attribute_not_exists(pk)")
	return s.transact(ctx, "add key", []types.TransactWriteItem{{Put: put}, s.bumpSet(k.Owner(), k.Provider, version)})
}

// ReplaceKeys stores k at its provider's primary slot and deletes every other
// key in old, in one write. It needs no key-set version: a key added
// concurrently after old was read survives, which is the same as the add
// coming just after the replace (and the 10-key limit only loosens).
func (s *Store) ReplaceKeys(ctx context.Context, k KeyRecord, old []KeyRecord) error {
	k.Primary = true
	put, err := s.keyPut(k)
	if err != nil {
		return err
	}
	items := []types.TransactWriteItem{{Put: put}}
	for _, o := range old {
		if o.Primary {
			continue // overwritten by the put
		}
		items = append(items, types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(s.table), Key: o.key()}})
	}
	if len(items) == 1 { // the common case: one write, no transaction
		if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: put.TableName, Item: put.Item}); err != nil {
			return unavailable("put key", err)
		}
		return nil
	}
	return s.transact(ctx, "replace keys", items)
}

// PutKey stores k at its provider's primary slot (sk KEY#<provider>, the
// single-key layout), replacing the key stored there, and returns it (nil
// when there was none). Further keys of the provider are left alone; the
// keys service's PUT uses ReplaceKeys to replace them all.
func (s *Store) PutKey(ctx context.Context, k KeyRecord) (*KeyRecord, error) {
	k.Primary = true
	put, err := s.keyPut(k)
	if err != nil {
		return nil, err
	}
	out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: put.TableName, Item: put.Item, ReturnValues: types.ReturnValueAllOld})
	if err != nil {
		return nil, unavailable("put key", err)
	}
	if len(out.Attributes) == 0 {
		return nil, nil
	}
	old, ok, err := decodeKey(out.Attributes)
	if err != nil || !ok {
		return nil, err
	}
	return &old, nil
}

// KeyPatch holds the editable key fields; nil means unchanged.
type KeyPatch struct {
	Label    *string
	Priority *int
	Models   *[]string
	// APIVersion and Deployments: Azure keys only (an empty map removes
	// every deployment).
	APIVersion  *string
	Deployments *map[string]string
}

// PatchKey changes k's label, priority or models, only if its row still
// holds the same key id (ErrConflict otherwise), and returns the key after.
func (s *Store) PatchKey(ctx context.Context, k KeyRecord, p KeyPatch, now time.Time) (KeyRecord, error) {
	set := []string{"updated_at = :now"}
	var remove []string
	vals := map[string]types.AttributeValue{":now": S(now.UTC().Format(time.RFC3339Nano)), ":kid": S(k.KeyID)}
	if p.Label != nil {
		set = append(set, "label = :label")
		vals[":label"] = S(*p.Label)
	}
	if p.Priority != nil {
		set = append(set, "priority = :prio")
		vals[":prio"] = N(int64(*p.Priority))
	}
	// A collection set to empty is removed, not stored empty.
	setOrRemove := func(attr, placeholder string, empty bool, v any) error {
		if empty {
			remove = append(remove, attr)
			return nil
		}
		av, err := attributevalue.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", attr, err)
		}
		set = append(set, attr+" = "+placeholder)
		vals[placeholder] = av
		return nil
	}
	if p.Models != nil {
		if err := setOrRemove("models", ":models", len(*p.Models) == 0, *p.Models); err != nil {
			return KeyRecord{}, err
		}
	}
	if p.APIVersion != nil {
		set = append(set, "api_version = :apiv")
		vals[":apiv"] = S(*p.APIVersion)
	}
	if p.Deployments != nil {
		if err := setOrRemove("deployments", ":deps", len(*p.Deployments) == 0, *p.Deployments); err != nil {
			return KeyRecord{}, err
		}
	}
	expr := "SET " + strings.Join(set, ", ")
	if len(remove) > 0 {
		expr += " REMOVE " + strings.Join(remove, ", ")
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(s.table),
		Key:                       k.key(),
		UpdateExpression:          aws.String(expr),
		ConditionExpression:       aws.String("key_id = :kid"),
		ExpressionAttributeValues: vals,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if err != nil {
		if isConditionFailed(err) {
			return KeyRecord{}, ErrConflict
		}
		return KeyRecord{}, unavailable("patch key", err)
	}
	out.Attributes[AttrPK], out.Attributes[AttrSK] = S(k.Owner().pk()), S(k.sk())
	r, _, err := decodeKey(out.Attributes)
	return r, err
}

// DeleteKeys removes the given keys (every key of one provider, or one key)
// in one transaction. A key already gone is no error.
func (s *Store) DeleteKeys(ctx context.Context, ks []KeyRecord) error {
	if len(ks) == 0 {
		return nil
	}
	items := make([]types.TransactWriteItem, 0, len(ks))
	for _, k := range ks {
		items = append(items, types.TransactWriteItem{Delete: &types.Delete{TableName: aws.String(s.table), Key: k.key()}})
	}
	return s.transact(ctx, "delete keys", items)
}

// DeleteKey hard-deletes every key of userID for provider. It returns the
// first deleted key, or nil when there was none.
func (s *Store) DeleteKey(ctx context.Context, userID, provider string) (*KeyRecord, error) {
	set, err := s.GetKeySet(ctx, UserOwner(userID))
	if err != nil {
		return nil, err
	}
	old := set.Keys[provider]
	if len(old) == 0 {
		return nil, nil
	}
	if err := s.DeleteKeys(ctx, old); err != nil {
		return nil, err
	}
	return &old[0], nil
}

// StatusUpdate is a new validation outcome for one stored key.
type StatusUpdate struct {
	// UserID, Provider and KeyID name the key (as before several keys and
	// scopes existed); Key is the row as read, which locates it (owner and
	// slot). A zero Key means the user's key at the primary slot.
	UserID, Provider, KeyID string
	Key                     KeyRecord
	Status                  string
	Reason                  string
	Detail                  string
	ValidatedAt             time.Time
}

// UpdateKeyStatus records a validation outcome, only if the row still holds
// the same key id (a replaced or deleted key is never touched: ErrConflict).
// It returns the status and reason the row had before.
func (s *Store) UpdateKeyStatus(ctx context.Context, u StatusUpdate) (prevStatus, prevReason string, err error) {
	row := u.Key
	if row.KeyID == "" {
		row = KeyRecord{UserID: u.UserID, Provider: u.Provider, KeyID: u.KeyID, Primary: true}
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(s.table),
		Key:                 row.key(),
		UpdateExpression:    aws.String("SET #st = :st, reason = :r, detail = :d, validated_at = :va"),
		ConditionExpression: aws.String("key_id = :kid"),
		ExpressionAttributeNames: map[string]string{
			"#st": "status",
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":st":  S(u.Status),
			":r":   S(u.Reason),
			":d":   S(u.Detail),
			":va":  S(u.ValidatedAt.UTC().Format(time.RFC3339Nano)),
			":kid": S(row.KeyID),
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

// ReplaceCiphertext swaps k's envelope (after a rewrap) only if the row
// still holds exactly k.Ciphertext; otherwise ErrConflict.
func (s *Store) ReplaceCiphertext(ctx context.Context, k KeyRecord, newCiphertext []byte, wrapperID string) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(s.table),
		Key:                 k.key(),
		UpdateExpression:    aws.String("SET ciphertext = :new, wrapper_id = :w"),
		ConditionExpression: aws.String("ciphertext = :old"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":new": &types.AttributeValueMemberB{Value: newCiphertext},
			":old": &types.AttributeValueMemberB{Value: k.Ciphertext},
			":w":   S(wrapperID),
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

// ScanKeys calls fn for every stored provider key of every scope, page by
// page. Segment and total allow a parallel scan (total 0 or 1 = one
// sequential scan).
func (s *Store) ScanKeys(ctx context.Context, segment, total int32, fn func(KeyRecord) error) error {
	var start map[string]types.AttributeValue
	for {
		in := &dynamodb.ScanInput{
			TableName:        aws.String(s.table),
			FilterExpression: aws.String("entity = :e"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":e": S(EntityProviderKey),
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
			k, ok, err := decodeKey(it)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := fn(k); err != nil {
				return err
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		start = out.LastEvaluatedKey
	}
}
