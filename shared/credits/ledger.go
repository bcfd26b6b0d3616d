// Package credits moves the credits of the credits route (docs/api.md §9): reserve
// before the upstream call, settle with the real usage after it, release on
// failure, and admin grants. Credits are integers.
//
// Every movement is one DynamoDB transaction that updates the account's
// credit_balance (main table, pk USER#<id>, sk ACCOUNT) and writes a ledger
// row (credit_transactions table, pk USER#<id>, sk TX#<time>#<request id>#
// <kind>#<nonce>) together with an idempotency item of the same partition:
//
//   - REQ#<request id>: the state of a request's reservation
//     (state reserved|settled|released, reserved amount, attempt count,
//     charged, owner, delivered). Reserve needs it absent or released;
//     Settle and Release need it reserved with the same amount and the same
//     owner: the server-made nonce of the HTTP request that reserved
//     (httpx.RequestNonce), never a client value. So a request id never
//     moves credits twice, whichever Lambda instance or retry sends it, and
//     a duplicate Idempotency-Key never finishes another request's
//     reservation, whatever error it met.
//   - GRANT#<idempotency key>: written once by Grant.
//
// The balance therefore always equals the sum of the ledger rows, and the
// account update's condition keeps it from going below zero. Any DynamoDB
// failure is an apperr ServiceUnavailable: the caller fails closed.
package credits

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/store"
)

// DynamoDB is the subset of *dynamodb.Client the ledger uses.
type DynamoDB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	Query(context.Context, *dynamodb.QueryInput, ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
}

// Ledger row kinds.
const (
	KindGrant   = "grant"
	KindReserve = "reserve"
	KindSettle  = "settle"
	KindRelease = "release"
)

// Request states stored on the REQ# item.
const (
	stateReserved = "reserved"
	stateSettled  = "settled"
	stateReleased = "released"
)

const (
	skAccount     = "ACCOUNT"
	skTxPrefix    = "TX#"
	skReqPrefix   = "REQ#"
	skGrantPrefix = "GRANT#"
	// entityIdempotency marks REQ#/GRANT# items, which are not ledger rows.
	entityIdempotency = "credit_idempotency"
	// txTimeLayout is fixed width so that sort keys order by time.
	txTimeLayout = "2006-01-02T15:04:05.000000000Z"
	maxIDLen     = 256
	// maxConflictRetries bounds the retries of a transaction cancelled by a
	// concurrent transaction on the same items (TransactionConflict).
	maxConflictRetries = 12
	// DefaultSettleWithin bounds how long Settle and Release retry storage
	// errors: long enough to ride out a throttle or a lost connection,
	// short enough to finish well inside the chat function's timeout.
	DefaultSettleWithin = 20 * time.Second
)

// ErrDuplicate means the request id was already charged: its reservation is
// still held or it was settled. Callers answer 409.
var ErrDuplicate = errors.New("credits: request id already charged")

// ErrNoReservation means Settle, Release or MarkDelivered found no
// reservation of the request id made by this request (none, one for a
// different amount, or one held by another request with the same
// Idempotency-Key). Nothing moved.
var ErrNoReservation = errors.New("credits: no open reservation of this request for this request id and amount")

// Ledger moves credits. It is safe for concurrent use.
type Ledger struct {
	db     DynamoDB
	main   string
	ledger string
	now    func() time.Time
	// Log receives shortfalls and given-up settles (slog.Default when nil).
	Log *slog.Logger
	// SettleWithin bounds the retries of Settle and Release on storage
	// errors (DefaultSettleWithin when zero).
	SettleWithin time.Duration
}

// NewLedger returns a Ledger over the tables named with tablePrefix. now
// defaults to time.Now.
func NewLedger(db DynamoDB, tablePrefix string, now func() time.Time) *Ledger {
	if now == nil {
		now = time.Now
	}
	return &Ledger{
		db:     db,
		main:   store.MainTable.Name(tablePrefix),
		ledger: store.CreditTransactionsTable.Name(tablePrefix),
		now:    now,
	}
}

// Transaction is one ledger row.
type Transaction struct {
	// RequestID is the request id (reserve/settle/release) or the
	// idempotency key (grant).
	RequestID string `json:"request_id"`
	Kind      string `json:"kind"`
	Reason    string `json:"reason,omitempty"`
	// Amount is the signed movement of the balance.
	Amount int64 `json:"amount"`
	// Charged is, on a settle row, what the request cost in the end.
	Charged int64 `json:"charged,omitempty"`
	// Shortfall is, on a settle row, what the real usage cost beyond what
	// could be charged (the provider overshot the reservation and the
	// balance did not cover the rest).
	Shortfall int64          `json:"shortfall,omitempty"`
	At        time.Time      `json:"at"`
	Meta      map[string]any `json:"meta,omitempty"`
}

// txItem is the stored form of a ledger row.
type txItem struct {
	PK        string         `dynamodbav:"pk"`
	SK        string         `dynamodbav:"sk"`
	Entity    string         `dynamodbav:"entity"`
	UserID    string         `dynamodbav:"user_id"`
	RequestID string         `dynamodbav:"request_id"`
	Kind      string         `dynamodbav:"kind"`
	Reason    string         `dynamodbav:"reason,omitempty"`
	Amount    int64          `dynamodbav:"amount"`
	Charged   int64          `dynamodbav:"charged,omitempty"`
	Shortfall int64          `dynamodbav:"shortfall,omitempty"`
	At        string         `dynamodbav:"at"`
	Meta      map[string]any `dynamodbav:"meta,omitempty"`
}

// reqItem is the stored state of a request id.
type reqItem struct {
	State     string `dynamodbav:"state"`
	Reserved  int64  `dynamodbav:"reserved"`
	Charged   int64  `dynamodbav:"charged"`
	Attempt   int64  `dynamodbav:"attempt"`
	Owner     string `dynamodbav:"owner"`
	Delivered bool   `dynamodbav:"delivered"`
}

// ownerOf is the owner a ledger call acts as: the server-made nonce of the
// HTTP request ("" outside one: tests and tools, which own only
// reservations made without an owner).
func ownerOf(ctx context.Context) string { return httpx.RequestNonce(ctx) }

// ownerCond is the condition that the REQ# item is owned by owner; it adds
// its names and values to the maps.
func ownerCond(owner string, names map[string]string, vals map[string]types.AttributeValue) string {
	names["#own"] = "owner"
	if owner == "" {
		return "attribute_not_exists(#own)"
	}
	vals[":own"] = store.S(owner)
	return "#own = :own"
}

func (l *Ledger) log(ctx context.Context) *slog.Logger {
	def := l.Log
	if def == nil {
		def = slog.Default()
	}
	return httpx.Logger(ctx, def)
}

func (l *Ledger) settleWithin() time.Duration {
	if l.SettleWithin > 0 {
		return l.SettleWithin
	}
	return DefaultSettleWithin
}

func unavailable(op string, err error) error {
	return store.Unavailable("credit storage", "credits "+op, err)
}

func checkIDs(userID, requestID string) error {
	if userID == "" || len(userID) > maxIDLen {
		return apperr.New(apperr.InvalidRequest, "user id must be 1 to %d characters", maxIDLen)
	}
	if requestID == "" || len(requestID) > maxIDLen {
		return apperr.New(apperr.InvalidRequest, "request id must be 1 to %d characters", maxIDLen)
	}
	return nil
}

func nonce() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// txPut builds the ledger row of one movement. The nonce keeps two rows of
// the same request, kind and instant (reserve, release, reserve again under a
// frozen clock) apart; the REQ#/GRANT# item, not the row, is what makes a
// movement happen once.
func (l *Ledger) txPut(userID string, at time.Time, row txItem) (*types.Put, error) {
	row.PK = store.UserPK(userID)
	row.SK = skTxPrefix + at.Format(txTimeLayout) + "#" + row.RequestID + "#" + row.Kind + "#" + nonce()
	row.Entity = store.EntityCreditTransaction
	row.UserID = userID
	row.At = at.Format(time.RFC3339Nano)
	item, err := attributevalue.MarshalMap(row)
	if err != nil {
		return nil, fmt.Errorf("credits: encode ledger row: %w", err)
	}
	return &types.Put{
		TableName:                aws.String(l.ledger),
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#pk": store.AttrPK},
	}, nil
}

// accountDelta updates the balance by delta. A negative delta is
// conditional on the balance covering it.
func (l *Ledger) accountDelta(userID string, delta int64) *types.Update {
	u := &types.Update{
		TableName:                 aws.String(l.main),
		Key:                       store.Key(store.UserPK(userID), skAccount),
		UpdateExpression:          aws.String("SET #bal = #bal + :d"),
		ExpressionAttributeNames:  map[string]string{"#bal": "credit_balance"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":d": store.N(delta)},
	}
	if delta < 0 {
		u.ConditionExpression = aws.String("#bal >= :need")
		u.ExpressionAttributeValues[":need"] = store.N(-delta)
	} else {
		u.ConditionExpression = aws.String("attribute_exists(#bal)")
	}
	return u
}

// cancelled reports, for a TransactionCanceledException, which item indexes
// failed their condition.
type cancelled struct {
	failed   map[int]bool
	conflict bool
}

func cancellation(err error) (cancelled, bool) {
	var tce *types.TransactionCanceledException
	if !errors.As(err, &tce) {
		return cancelled{}, false
	}
	c := cancelled{failed: map[int]bool{}}
	for i, r := range tce.CancellationReasons {
		switch aws.ToString(r.Code) {
		case "ConditionalCheckFailed":
			c.failed[i] = true
		case "TransactionConflict":
			c.conflict = true
		}
	}
	return c, true
}

// transact runs items, retrying while a concurrent transaction on the same
// items cancels it with no condition failing. A cancellation with a failed
// condition is returned as it is.
func (l *Ledger) transact(ctx context.Context, items []types.TransactWriteItem) error {
	backoff := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		_, err := l.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		if err == nil {
			return nil
		}
		c, ok := cancellation(err)
		if !ok || len(c.failed) > 0 || !c.conflict || attempt >= maxConflictRetries {
			return err
		}
		d := backoff/2 + time.Duration(mrand.Int64N(int64(backoff)))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		backoff = min(backoff*2, 250*time.Millisecond)
	}
}

// Reserve takes amount credits from userID's balance for requestID, before
// the upstream call. An insufficient balance (or no account) is an apperr
// PaymentRequired and moves nothing. A request id whose reservation is held
// or settled is ErrDuplicate; one whose earlier reservation was released may
// reserve again.
func (l *Ledger) Reserve(ctx context.Context, userID, requestID string, amount int64) error {
	if err := checkIDs(userID, requestID); err != nil {
		return err
	}
	if amount <= 0 {
		return fmt.Errorf("credits: reserve amount must be positive, got %d", amount)
	}
	now := l.now().UTC()
	tx, err := l.txPut(userID, now, txItem{RequestID: requestID, Kind: KindReserve, Amount: -amount})
	if err != nil {
		return err
	}
	names := map[string]string{
		"#st": "state", "#res": "reserved", "#ch": "charged", "#at": "at", "#ent": store.AttrEntity,
		"#uid": "user_id", "#rid": "request_id", "#att": "attempt", "#own": "owner", "#del": "delivered",
		"#sf": "shortfall",
	}
	vals := map[string]types.AttributeValue{
		":reserved": store.S(stateReserved), ":released": store.S(stateReleased), ":amt": store.N(amount),
		":zero": store.N(0), ":now": store.S(now.Format(time.RFC3339Nano)), ":ent": store.S(entityIdempotency),
		":uid": store.S(userID), ":rid": store.S(requestID), ":one": store.N(1),
	}
	set := "SET #st = :reserved, #res = :amt, #ch = :zero, #at = :now, #ent = :ent, #uid = :uid, #rid = :rid"
	remove := " REMOVE #del, #sf"
	if owner := ownerOf(ctx); owner != "" {
		set += ", #own = :own"
		vals[":own"] = store.S(owner)
	} else {
		remove += ", #own"
	}
	items := []types.TransactWriteItem{
		{Update: l.accountDelta(userID, -amount)},
		{Update: &types.Update{
			TableName:                 aws.String(l.ledger),
			Key:                       store.Key(store.UserPK(userID), skReqPrefix+requestID),
			UpdateExpression:          aws.String(set + remove + " ADD #att :one"),
			ConditionExpression:       aws.String("attribute_not_exists(#st) OR #st = :released"),
			ExpressionAttributeNames:  names,
			ExpressionAttributeValues: vals,
		}},
		{Put: tx},
	}
	err = l.transact(ctx, items)
	if err == nil {
		return nil
	}
	if c, ok := cancellation(err); ok && len(c.failed) > 0 {
		if c.failed[1] {
			return ErrDuplicate
		}
		if c.failed[0] {
			bal, berr := l.Balance(ctx, userID)
			if berr != nil {
				return berr
			}
			return apperr.New(apperr.PaymentRequired, "insufficient credits: balance %d, this request needs up to %d", bal, amount)
		}
	}
	return unavailable("reserve", err)
}

// Settle finishes requestID's reservation of reserved credits with the
// actual cost, as the request that made the reservation (its owner, see the
// package comment). Up to the reservation it charges actual and refunds the
// rest. Beyond it (a provider that overshot the reservation, which covers
// the worst case of what was sent) it charges the extra only as far as the
// balance allows, never below zero, and records what it could not charge as
// the row's shortfall and in a log line. It returns what the request was
// charged in total. meta (usage metadata, never content) is stored on the
// ledger row.
//
// Settle is called once the answer was delivered, so a storage error does
// not give up at once: it retries within SettleWithin, and marks the
// reservation delivered as soon as it can, so that if it still fails the
// stale sweep charges the reserved amount instead of refunding it.
//
// A second Settle of the same request id by its owner moves nothing and
// returns the first one's charge. A request id with no reservation of that
// amount by this request is ErrNoReservation.
func (l *Ledger) Settle(ctx context.Context, userID, requestID string, reserved, actual int64, meta map[string]any) (int64, error) {
	if err := checkIDs(userID, requestID); err != nil {
		return 0, err
	}
	if reserved < 0 || actual < 0 {
		return 0, fmt.Errorf("credits: settle amounts must not be negative (reserved %d, actual %d)", reserved, actual)
	}
	owner := ownerOf(ctx)
	ctx, cancel := context.WithTimeout(ctx, l.settleWithin())
	defer cancel()
	extra := max(actual-reserved, 0) // what we would like to charge beyond the reservation
	marked, balanceTries := false, 0
	var lastErr error
	for wait := 50 * time.Millisecond; ; wait = min(wait*2, 2*time.Second) {
		delta, charged := reserved-actual, actual // refund the unused part
		if actual > reserved {
			delta, charged = -extra, reserved+extra
		}
		shortfall := actual - charged
		err := l.finish(ctx, userID, requestID, owner, reserved, delta, charged, shortfall, stateSettled, KindSettle, meta, "")
		if err == nil {
			if shortfall > 0 {
				l.log(ctx).Warn("credit settle: the real usage exceeded the reservation and the balance; the rest is a shortfall",
					"user_id", userID, "reserved", reserved, "actual", actual, "charged", charged, "shortfall", shortfall)
			}
			return charged, nil
		}
		c, isCancel := cancellation(err)
		switch {
		case isCancel && c.failed[1]:
			return l.finished(ctx, userID, requestID, owner, stateSettled)
		case isCancel && c.failed[0] && extra > 0:
			// The balance does not cover the extra: charge what is there
			// (after a few races with other requests, nothing more).
			balanceTries++
			bal, berr := l.Balance(ctx, userID)
			if berr == nil && balanceTries < 8 {
				extra = min(extra, max(bal, 0))
			} else {
				extra = 0
			}
			continue
		}
		lastErr = err
		if !transient(err) {
			l.log(ctx).Error("credit settle failed; the reservation is still held and the stale-reservation sweep will finish it",
				"user_id", userID, "reserved", reserved, "actual", actual, "err", err.Error())
			return 0, unavailable("settle", err)
		}
		if !marked && !errors.Is(err, context.DeadlineExceeded) {
			marked = l.markDelivered(ctx, userID, requestID, owner) == nil
		}
		select {
		case <-ctx.Done():
			after := "the stale-reservation sweep will refund it"
			if marked {
				after = "it is marked delivered, so the stale-reservation sweep will charge the reserved amount"
			}
			l.log(ctx).Error("credit settle failed after retries; the reservation is still held: "+after,
				"user_id", userID, "reserved", reserved, "actual", actual, "err", lastErr.Error())
			return 0, unavailable("settle", lastErr)
		case <-time.After(wait):
		}
	}
}

// transient reports whether a storage error may pass on a retry: a lost
// connection, a throttle, a server fault or a transaction conflict, but not
// a request DynamoDB refuses as such (a validation error, a missing table).
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if _, ok := cancellation(err); ok {
		return true // cancelled by conflicts only (failed conditions are handled before)
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return true // no answer from DynamoDB: the network
	}
	switch ae.ErrorCode() {
	case "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
		"TransactionInProgressException", "InternalServerError", "ServiceUnavailable", "LimitExceededException":
		return true
	}
	return ae.ErrorFault() == smithy.FaultServer
}

// finished answers a finish whose REQ# condition failed: the reservation
// is already in state (a replay: the first outcome is returned) or it is
// not this request's to finish.
func (l *Ledger) finished(ctx context.Context, userID, requestID, owner, state string) (int64, error) {
	st, err := l.requestState(ctx, userID, requestID)
	if err != nil {
		return 0, err
	}
	if st.Owner != owner {
		return 0, ErrNoReservation
	}
	switch {
	case st.State == state:
		return st.Charged, nil
	case state == stateReleased && st.State == stateSettled:
		return 0, nil
	}
	return 0, ErrNoReservation
}

// Release gives back the whole reservation of requestID (the upstream call
// failed), as the request that made it. It is idempotent for its owner:
// releasing a released or settled request id does nothing. It does not
// retry storage errors: it runs before an error answer the client is
// waiting for, and a release that fails is done by the stale sweep, which
// refunds a reservation never marked delivered.
func (l *Ledger) Release(ctx context.Context, userID, requestID string, reserved int64, meta map[string]any) error {
	if err := checkIDs(userID, requestID); err != nil {
		return err
	}
	if reserved < 0 {
		return fmt.Errorf("credits: release amount must not be negative, got %d", reserved)
	}
	owner := ownerOf(ctx)
	err := l.finish(ctx, userID, requestID, owner, reserved, reserved, 0, 0, stateReleased, KindRelease, meta, "")
	if err == nil {
		return nil
	}
	if c, ok := cancellation(err); ok && c.failed[1] {
		_, err := l.finished(ctx, userID, requestID, owner, stateReleased)
		return err
	}
	return unavailable("release", err)
}

// MarkDelivered records that requestID's answer started reaching the
// client, as the request that reserved it: if the request then never
// settles (its Lambda dies, storage fails past Settle's retries), the stale
// sweep charges the reserved amount instead of refunding it, so the
// platform never delivers more than it charged. Call it when the first
// byte of the answer goes out; Settle also calls it when it has to retry.
func (l *Ledger) MarkDelivered(ctx context.Context, userID, requestID string) error {
	if err := checkIDs(userID, requestID); err != nil {
		return err
	}
	return l.markDelivered(ctx, userID, requestID, ownerOf(ctx))
}

func (l *Ledger) markDelivered(ctx context.Context, userID, requestID, owner string) error {
	names := map[string]string{"#st": "state", "#del": "delivered"}
	vals := map[string]types.AttributeValue{":reserved": store.S(stateReserved), ":t": &types.AttributeValueMemberBOOL{Value: true}}
	cond := "#st = :reserved AND " + ownerCond(owner, names, vals)
	_, err := l.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(l.ledger),
		Key:                       store.Key(store.UserPK(userID), skReqPrefix+requestID),
		UpdateExpression:          aws.String("SET #del = :t"),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ccf):
		return ErrNoReservation
	}
	return unavailable("mark delivered", err)
}

// finish moves a reserved request to state, adding delta to the balance.
// Item 0 is the account (absent when delta is 0: a placeholder condition
// check keeps the indexes), item 1 the REQ# state, item 2 the ledger row.
// The REQ# condition is ownership by owner, or, for the stale sweep
// (staleBefore set), a reservation time before staleBefore.
func (l *Ledger) finish(ctx context.Context, userID, requestID, owner string, reserved, delta, charged, shortfall int64, state, kind string, meta map[string]any, staleBefore string) error {
	now := l.now().UTC()
	tx, err := l.txPut(userID, now, txItem{RequestID: requestID, Kind: kind, Amount: delta, Charged: charged, Shortfall: shortfall, Meta: meta})
	if err != nil {
		return err
	}
	var account types.TransactWriteItem
	if delta != 0 {
		account.Update = l.accountDelta(userID, delta)
	} else {
		account.ConditionCheck = &types.ConditionCheck{
			TableName:                aws.String(l.main),
			Key:                      store.Key(store.UserPK(userID), skAccount),
			ConditionExpression:      aws.String("attribute_exists(#pk)"),
			ExpressionAttributeNames: map[string]string{"#pk": store.AttrPK},
		}
	}
	names := map[string]string{"#st": "state", "#ch": "charged", "#res": "reserved", "#fin": "finished_at", "#sf": "shortfall"}
	vals := map[string]types.AttributeValue{
		":state": store.S(state), ":charged": store.N(charged), ":now": store.S(now.Format(time.RFC3339Nano)),
		":reserved": store.S(stateReserved), ":amt": store.N(reserved), ":sf": store.N(shortfall),
	}
	cond := "#st = :reserved AND #res = :amt AND "
	if staleBefore != "" {
		cond += "#at < :cutoff"
		names["#at"] = "at"
		vals[":cutoff"] = store.S(staleBefore)
	} else {
		cond += ownerCond(owner, names, vals)
	}
	items := []types.TransactWriteItem{
		account,
		{Update: &types.Update{
			TableName:                 aws.String(l.ledger),
			Key:                       store.Key(store.UserPK(userID), skReqPrefix+requestID),
			UpdateExpression:          aws.String("SET #st = :state, #ch = :charged, #fin = :now, #sf = :sf"),
			ConditionExpression:       aws.String(cond),
			ExpressionAttributeNames:  names,
			ExpressionAttributeValues: vals,
		}},
		{Put: tx},
	}
	return l.transact(ctx, items)
}

func (l *Ledger) requestState(ctx context.Context, userID, requestID string) (reqItem, error) {
	out, err := l.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(l.ledger),
		Key:            store.Key(store.UserPK(userID), skReqPrefix+requestID),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return reqItem{}, unavailable("read request state", err)
	}
	var r reqItem
	if len(out.Item) > 0 {
		if err := attributevalue.UnmarshalMap(out.Item, &r); err != nil {
			return reqItem{}, fmt.Errorf("credits: decode request state: %w", err)
		}
	}
	return r, nil
}

// Grant adds amount credits to userID (a negative amount is an admin debit,
// refused with apperr InvalidRequest when the balance does not cover it). It
// creates the account row (tier free) if missing and keeps every other
// attribute of an existing one; a positive grant sets last_grant. The same
// idempotencyKey never moves credits twice: a replay returns replayed=true
// and the current balance; the same key with a different amount or reason
// is an apperr Conflict. An empty key makes the grant non-idempotent.
// The balance returned is read right after the movement.
func (l *Ledger) Grant(ctx context.Context, userID, idempotencyKey string, amount int64, reason string) (int64, bool, error) {
	if idempotencyKey == "" {
		idempotencyKey = "auto-" + nonce() + nonce()
	}
	if err := checkIDs(userID, idempotencyKey); err != nil {
		return 0, false, err
	}
	if amount == 0 {
		return 0, false, apperr.New(apperr.InvalidRequest, "amount must not be zero")
	}
	now := l.now().UTC()
	ts := now.Format(time.RFC3339Nano)
	set := []string{
		"#bal = if_not_exists(#bal, :zero) + :amt", "#ent = :ent", "#uid = :uid",
		"#tier = if_not_exists(#tier, :free)", "#email = if_not_exists(#email, :empty)",
		"#cat = if_not_exists(#cat, :now)", "#uat = :now",
	}
	names := map[string]string{
		"#bal": "credit_balance", "#ent": store.AttrEntity, "#uid": "user_id", "#tier": "tier",
		"#email": "email", "#cat": "created_at", "#uat": "updated_at",
	}
	vals := map[string]types.AttributeValue{
		":zero": store.N(0), ":amt": store.N(amount), ":ent": store.S(store.EntityAccount), ":uid": store.S(userID),
		":free": store.S("free"), ":empty": store.S(""), ":now": store.S(ts),
	}
	account := &types.Update{
		TableName:                 aws.String(l.main),
		Key:                       store.Key(store.UserPK(userID), skAccount),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: vals,
	}
	if amount > 0 {
		set = append(set, "#lg = :amt")
		names["#lg"] = "last_grant"
	} else {
		account.ConditionExpression = aws.String("#bal >= :need")
		vals[":need"] = store.N(-amount)
	}
	account.UpdateExpression = aws.String("SET " + strings.Join(set, ", "))

	tx, err := l.txPut(userID, now, txItem{RequestID: idempotencyKey, Kind: KindGrant, Amount: amount, Reason: reason})
	if err != nil {
		return 0, false, err
	}
	items := []types.TransactWriteItem{
		{Update: account},
		{Put: &types.Put{
			TableName: aws.String(l.ledger),
			Item: map[string]types.AttributeValue{
				store.AttrPK: store.S(store.UserPK(userID)), store.AttrSK: store.S(skGrantPrefix + idempotencyKey),
				store.AttrEntity: store.S(entityIdempotency), "user_id": store.S(userID), "request_id": store.S(idempotencyKey),
				"amount": store.N(amount), "reason": store.S(reason), "at": store.S(ts),
			},
			ConditionExpression:      aws.String("attribute_not_exists(#pk)"),
			ExpressionAttributeNames: map[string]string{"#pk": store.AttrPK},
		}},
		{Put: tx},
	}
	err = l.transact(ctx, items)
	if err != nil {
		c, ok := cancellation(err)
		switch {
		case ok && c.failed[1]:
			if err := l.sameGrant(ctx, userID, idempotencyKey, amount, reason); err != nil {
				return 0, false, err
			}
			bal, berr := l.Balance(ctx, userID)
			return bal, true, berr
		case ok && c.failed[0]:
			bal, berr := l.Balance(ctx, userID)
			if berr != nil {
				return 0, false, berr
			}
			return bal, false, apperr.New(apperr.InvalidRequest, "a debit of %d would take the balance (%d) below zero", -amount, bal)
		}
		return 0, false, unavailable("grant", err)
	}
	bal, err := l.Balance(ctx, userID)
	return bal, false, err
}

// sameGrant checks that a replayed idempotency key asks for the movement it
// made the first time: a different amount or reason is a conflict, not a
// replay (the admin meant another grant and must use another key).
func (l *Ledger) sameGrant(ctx context.Context, userID, key string, amount int64, reason string) error {
	out, err := l.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(l.ledger),
		Key:            store.Key(store.UserPK(userID), skGrantPrefix+key),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return unavailable("read grant", err)
	}
	var g struct {
		Amount int64  `dynamodbav:"amount"`
		Reason string `dynamodbav:"reason"`
	}
	if err := attributevalue.UnmarshalMap(out.Item, &g); err != nil {
		return fmt.Errorf("credits: decode grant: %w", err)
	}
	if g.Amount != amount || g.Reason != reason {
		return apperr.New(apperr.Conflict, "this Idempotency-Key was already used for a grant of %d credits with another reason or amount; use a new key for a different grant", g.Amount)
	}
	return nil
}

// Balance returns userID's credit balance (0 without an account), read
// strongly consistent.
func (l *Ledger) Balance(ctx context.Context, userID string) (int64, error) {
	out, err := l.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(l.main),
		Key:                      store.Key(store.UserPK(userID), skAccount),
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String("#bal"),
		ExpressionAttributeNames: map[string]string{"#bal": "credit_balance"},
	})
	if err != nil {
		return 0, unavailable("read balance", err)
	}
	var a struct {
		Balance int64 `dynamodbav:"credit_balance"`
	}
	if err := attributevalue.UnmarshalMap(out.Item, &a); err != nil {
		return 0, fmt.Errorf("credits: decode balance: %w", err)
	}
	return a.Balance, nil
}

// Default and maximum page sizes of List.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

type cursorKey struct {
	SK string `json:"sk"`
}

func encodeCursor(lek map[string]types.AttributeValue) string {
	sk, _ := lek[store.AttrSK].(*types.AttributeValueMemberS)
	if sk == nil {
		return ""
	}
	b, _ := json.Marshal(cursorKey{SK: sk.Value})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(userID, cursor string) (map[string]types.AttributeValue, error) {
	bad := apperr.New(apperr.InvalidRequest, "invalid cursor")
	if len(cursor) > 2048 {
		return nil, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return nil, bad
	}
	var c cursorKey
	if err := json.Unmarshal(b, &c); err != nil || !strings.HasPrefix(c.SK, skTxPrefix) || len(c.SK) <= len(skTxPrefix) {
		return nil, bad
	}
	return store.Key(store.UserPK(userID), c.SK), nil
}

// List returns userID's ledger rows newest first, limit per page (default
// 50, at most 500), and the cursor of the next page ("" at the end). A
// cursor that is not one List returned is apperr InvalidRequest.
func (l *Ledger) List(ctx context.Context, userID string, limit int, cursor string) ([]Transaction, string, error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	var start map[string]types.AttributeValue
	if cursor != "" {
		var err error
		if start, err = decodeCursor(userID, cursor); err != nil {
			return nil, "", err
		}
	}
	out, err := l.db.Query(ctx, &dynamodb.QueryInput{
		TableName:              aws.String(l.ledger),
		KeyConditionExpression: aws.String("#pk = :pk AND begins_with(#sk, :tx)"),
		ExpressionAttributeNames: map[string]string{
			"#pk": store.AttrPK, "#sk": store.AttrSK,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": store.S(store.UserPK(userID)), ":tx": store.S(skTxPrefix),
		},
		ScanIndexForward:  aws.Bool(false),
		Limit:             aws.Int32(int32(limit)),
		ExclusiveStartKey: start,
	})
	if err != nil {
		return nil, "", unavailable("list", err)
	}
	txs := make([]Transaction, 0, len(out.Items))
	for _, it := range out.Items {
		var r txItem
		if err := attributevalue.UnmarshalMap(it, &r); err != nil {
			return nil, "", fmt.Errorf("credits: decode ledger row: %w", err)
		}
		at, _ := time.Parse(time.RFC3339Nano, r.At)
		txs = append(txs, Transaction{
			RequestID: r.RequestID, Kind: r.Kind, Reason: r.Reason, Amount: r.Amount,
			Charged: r.Charged, Shortfall: r.Shortfall, At: at, Meta: r.Meta,
		})
	}
	next := ""
	if len(out.LastEvaluatedKey) > 0 {
		next = encodeCursor(out.LastEvaluatedKey)
	}
	return txs, next, nil
}

// Sum returns the sum of every ledger row of userID (audits and tests: it
// equals the balance).
func (l *Ledger) Sum(ctx context.Context, userID string) (int64, error) {
	total := new(big.Int)
	var start map[string]types.AttributeValue
	for {
		out, err := l.db.Query(ctx, &dynamodb.QueryInput{
			TableName:              aws.String(l.ledger),
			KeyConditionExpression: aws.String("#pk = :pk AND begins_with(#sk, :tx)"),
			ProjectionExpression:   aws.String("#amt"),
			ExpressionAttributeNames: map[string]string{
				"#pk": store.AttrPK, "#sk": store.AttrSK, "#amt": "amount",
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":pk": store.S(store.UserPK(userID)), ":tx": store.S(skTxPrefix),
			},
			ConsistentRead:    aws.Bool(true),
			ExclusiveStartKey: start,
		})
		if err != nil {
			return 0, unavailable("sum", err)
		}
		for _, it := range out.Items {
			n, _ := it["amount"].(*types.AttributeValueMemberN)
			if n == nil {
				continue
			}
			v, err := strconv.ParseInt(n.Value, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("credits: decode amount %q: %w", n.Value, err)
			}
			total.Add(total, big.NewInt(v))
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		start = out.LastEvaluatedKey
	}
	if !total.IsInt64() {
		return 0, fmt.Errorf("credits: ledger sum overflows int64")
	}
	return total.Int64(), nil
}

// ReleaseStale finishes every reservation still held longer than
// olderThan: a request whose Lambda was killed between reserve and settle
// (timeout, crash), or whose settle or release failed past its retries.
// One that was marked delivered (MarkDelivered, or a Settle that had to
// retry) is settled at the reserved amount, which covers the worst case of
// what was sent; any other is released. Choose olderThan above the chat
// function's timeout. Each finish is conditional on the reservation still
// being held and stale, so a request that finishes meanwhile is left alone.
// It returns how many reservations it finished.
func (l *Ledger) ReleaseStale(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := l.now().UTC().Add(-olderThan).Format(time.RFC3339Nano)
	done := 0
	var start map[string]types.AttributeValue
	for {
		out, err := l.db.Scan(ctx, &dynamodb.ScanInput{
			TableName:                aws.String(l.ledger),
			FilterExpression:         aws.String("begins_with(#sk, :req) AND #st = :reserved AND #at < :cutoff"),
			ExpressionAttributeNames: map[string]string{"#sk": store.AttrSK, "#st": "state", "#at": "at"},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":req": store.S(skReqPrefix), ":reserved": store.S(stateReserved), ":cutoff": store.S(cutoff),
			},
			ExclusiveStartKey: start,
		})
		if err != nil {
			return done, unavailable("scan stale reservations", err)
		}
		for _, it := range out.Items {
			var r struct {
				UserID    string `dynamodbav:"user_id"`
				RequestID string `dynamodbav:"request_id"`
				Reserved  int64  `dynamodbav:"reserved"`
				Delivered bool   `dynamodbav:"delivered"`
			}
			if err := attributevalue.UnmarshalMap(it, &r); err != nil {
				return done, fmt.Errorf("credits: decode reservation: %w", err)
			}
			if r.Delivered {
				err = l.finish(ctx, r.UserID, r.RequestID, "", r.Reserved, 0, r.Reserved, 0, stateSettled, KindSettle,
					map[string]any{"reason": "stale_reservation_delivered"}, cutoff)
			} else {
				err = l.finish(ctx, r.UserID, r.RequestID, "", r.Reserved, r.Reserved, 0, 0, stateReleased, KindRelease,
					map[string]any{"reason": "stale_reservation"}, cutoff)
			}
			if c, ok := cancellation(err); ok && c.failed[1] {
				continue // finished meanwhile
			}
			if err != nil {
				return done, unavailable("finish stale reservation", err)
			}
			done++
		}
		if len(out.LastEvaluatedKey) == 0 {
			return done, nil
		}
		start = out.LastEvaluatedKey
	}
}
