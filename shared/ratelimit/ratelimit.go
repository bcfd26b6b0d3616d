// Package ratelimit enforces the tier limits of the credits route (docs/api.md §9)
// across every Lambda instance with DynamoDB conditional writes. The BYOK
// route has none of these limits.
//
// Items live in the main table under pk RL#<user id> (not USER#<id>, so the
// account Query of a warm request never reads them), entity rate_limits,
// each with a ttl so DynamoDB deletes them once they no longer matter:
//
//   - RPM#<yyyymmddhhmm>  count  — requests in that UTC minute (fixed window)
//   - TPD#<yyyymmdd>      tokens — tokens used that UTC day
//   - CONC#<n>, n < limit holder, expires_at (unix ms) — one concurrency slot
//
// A slot whose holder crashed frees itself once expires_at (acquire time +
// slotTTL) has passed. Every DynamoDB failure is apperr ServiceUnavailable:
// the request fails closed.
package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
)

// DynamoDB is the subset of *dynamodb.Client the limiter uses.
type DynamoDB interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// DefaultSlotTTL is how long a concurrency slot stays held when its holder
// never releases it (a crashed or killed instance).
const DefaultSlotTTL = 5 * time.Minute

// maxSlotProbes bounds the slots one Admit tries; with a larger limit a
// refusal means at least this many requests are in flight.
const maxSlotProbes = 64

// releaseTimeout bounds Ticket.Release, which runs even when the request's
// context is already cancelled.
const releaseTimeout = 5 * time.Second

// Limiter checks and counts the tier limits of users.
type Limiter struct {
	db      DynamoDB
	table   string
	now     func() time.Time
	slotTTL time.Duration
}

// New returns a Limiter over the main table named with tablePrefix. now
// defaults to time.Now and slotTTL (<= 0) to DefaultSlotTTL.
func New(db DynamoDB, tablePrefix string, now func() time.Time, slotTTL time.Duration) *Limiter {
	if now == nil {
		now = time.Now
	}
	if slotTTL <= 0 {
		slotTTL = DefaultSlotTTL
	}
	return &Limiter{db: db, table: store.MainTable.Name(tablePrefix), now: now, slotTTL: slotTTL}
}

// Ticket is an admitted request. Release it when the request ends.
type Ticket struct {
	l        *Limiter
	userID   string
	slot     string // "" when no concurrency slot is held
	holder   string
	released atomic.Bool
}

// Release frees the ticket's concurrency slot. It is idempotent, safe on a
// nil Ticket, and runs even if ctx is already cancelled. A failure is
// ignored: the slot then frees itself after the limiter's slotTTL.
func (t *Ticket) Release(ctx context.Context) {
	if t == nil || t.slot == "" || !t.released.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	// Only our own hold is deleted: a slot that expired and was taken by
	// another request stays.
	_, _ = t.l.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 aws.String(t.l.table),
		Key:                       store.Key(rlPK(t.userID), t.slot),
		ConditionExpression:       aws.String("#h = :h"),
		ExpressionAttributeNames:  map[string]string{"#h": "holder"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":h": store.S(t.holder)},
	})
}

func rlPK(userID string) string { return "RL#" + userID }

func unavailable(op string, err error) error {
	return store.Unavailable("rate limit storage", "ratelimit "+op, err)
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

func limited(retryAfter time.Duration, format string, args ...any) error {
	e := apperr.New(apperr.RateLimited, format, args...)
	e.RetryAfter = max(int((retryAfter+time.Second-1)/time.Second), 1)
	return e
}

func rpmKey(t time.Time) string { return "RPM#" + t.Format("200601021504") }
func tpdKey(t time.Time) string { return "TPD#" + t.Format("20060102") }
func slotKey(n int64) string    { return "CONC#" + strconv.FormatInt(n, 10) }

func nextDay(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}

// Admit checks userID's limits, in order, and counts the request:
//
//  1. requests per minute: a conditional ADD on the counter of the current
//     UTC minute (count < limit);
//  2. tokens per day: tokens used today + estTokens <= limit (a check only;
//     AddTokens records the real count after the request);
//  3. concurrency: a conditional put of one of lim.ConcurrentRequests slots
//     that is free or expired, starting at a random slot.
//
// A refusal is an apperr RateLimited naming the limit, with RetryAfter to
// the next minute, the next UTC day, or 1 s for concurrency. When check 2 or
// 3 refuses, the request counted by check 1 is taken back (best effort: if
// that write fails the refused request still counts in its minute). A limit
// <= 0 is not enforced. The returned Ticket must be released.
func (l *Limiter) Admit(ctx context.Context, userID string, lim routing.TierLimit, estTokens int64) (*Ticket, error) {
	if userID == "" {
		return nil, apperr.New(apperr.InvalidRequest, "user id is required")
	}
	now := l.now().UTC()
	counted := ""
	undo := func() {
		if counted != "" {
			l.uncount(ctx, userID, counted)
		}
	}

	if lim.RequestsPerMinute > 0 {
		window := now.Truncate(time.Minute)
		sk := rpmKey(window)
		_, err := l.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:           aws.String(l.table),
			Key:                 store.Key(rlPK(userID), sk),
			UpdateExpression:    aws.String("SET #ttl = :ttl, #ent = :ent ADD #c :one"),
			ConditionExpression: aws.String("attribute_not_exists(#c) OR #c < :lim"),
			ExpressionAttributeNames: map[string]string{
				"#ttl": store.AttrTTL, "#ent": store.AttrEntity, "#c": "count",
			},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":ttl": store.N(window.Add(2 * time.Minute).Unix()), ":ent": store.S(store.EntityRateLimit),
				":one": store.N(1), ":lim": store.N(lim.RequestsPerMinute),
			},
		})
		if err != nil {
			if isConditionFailed(err) {
				return nil, limited(window.Add(time.Minute).Sub(now),
					"requests per minute limit of %d reached; retry in the next minute", lim.RequestsPerMinute)
			}
			return nil, unavailable("count request", err)
		}
		counted = sk
	}

	if lim.TokensPerDay > 0 {
		used, err := l.tokensToday(ctx, userID, now)
		if err != nil {
			undo()
			return nil, err
		}
		if used+max(estTokens, 0) > lim.TokensPerDay {
			undo()
			return nil, limited(nextDay(now).Sub(now),
				"tokens per day limit of %d reached: %d used today, this request needs up to %d",
				lim.TokensPerDay, used, max(estTokens, 0))
		}
	}

	t := &Ticket{l: l, userID: userID}
	if lim.ConcurrentRequests > 0 {
		slot, holder, err := l.acquireSlot(ctx, userID, lim.ConcurrentRequests, now)
		if err != nil {
			undo()
			return nil, err
		}
		if slot == "" {
			undo()
			return nil, limited(time.Second, "concurrent requests limit of %d reached", lim.ConcurrentRequests)
		}
		t.slot, t.holder = slot, holder
	}
	return t, nil
}

// uncount takes back one request of the minute counter sk.
func (l *Limiter) uncount(ctx context.Context, userID, sk string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	_, _ = l.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(l.table),
		Key:                       store.Key(rlPK(userID), sk),
		UpdateExpression:          aws.String("ADD #c :minus"),
		ConditionExpression:       aws.String("#c > :zero"),
		ExpressionAttributeNames:  map[string]string{"#c": "count"},
		ExpressionAttributeValues: map[string]types.AttributeValue{":minus": store.N(-1), ":zero": store.N(0)},
	})
}

func (l *Limiter) tokensToday(ctx context.Context, userID string, now time.Time) (int64, error) {
	out, err := l.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(l.table),
		Key:                      store.Key(rlPK(userID), tpdKey(now)),
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String("#tok"),
		ExpressionAttributeNames: map[string]string{"#tok": "tokens"},
	})
	if err != nil {
		return 0, unavailable("read tokens", err)
	}
	n, _ := out.Item["tokens"].(*types.AttributeValueMemberN)
	if n == nil {
		return 0, nil
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ratelimit: decode tokens %q: %w", n.Value, err)
	}
	return v, nil
}

// acquireSlot takes a free or expired slot, or returns "" when all are held.
func (l *Limiter) acquireSlot(ctx context.Context, userID string, limit int64, now time.Time) (slot, holder string, err error) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	holder = hex.EncodeToString(b[:])
	expires := now.Add(l.slotTTL)
	start := mrand.Int64N(limit)
	for i := range min(limit, maxSlotProbes) {
		sk := slotKey((start + i) % limit)
		_, err := l.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(l.table),
			Item: map[string]types.AttributeValue{
				store.AttrPK: store.S(rlPK(userID)), store.AttrSK: store.S(sk),
				store.AttrEntity: store.S(store.EntityRateLimit), "holder": store.S(holder),
				"expires_at": store.N(expires.UnixMilli()), store.AttrTTL: store.N(expires.Add(time.Hour).Unix()),
			},
			ConditionExpression:      aws.String("attribute_not_exists(#pk) OR #exp < :now"),
			ExpressionAttributeNames: map[string]string{"#pk": store.AttrPK, "#exp": "expires_at"},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":now": store.N(now.UnixMilli()),
			},
		})
		if err == nil {
			return sk, holder, nil
		}
		if !isConditionFailed(err) {
			return "", "", unavailable("acquire slot", err)
		}
	}
	return "", "", nil
}

// AddTokens records the real token count of a finished request toward
// userID's tokens per day.
func (l *Limiter) AddTokens(ctx context.Context, userID string, tokens int64) error {
	if tokens <= 0 {
		return nil
	}
	now := l.now().UTC()
	_, err := l.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:        aws.String(l.table),
		Key:              store.Key(rlPK(userID), tpdKey(now)),
		UpdateExpression: aws.String("SET #ttl = :ttl, #ent = :ent ADD #tok :n"),
		ExpressionAttributeNames: map[string]string{
			"#ttl": store.AttrTTL, "#ent": store.AttrEntity, "#tok": "tokens",
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":ttl": store.N(nextDay(now).Add(24 * time.Hour).Unix()), ":ent": store.S(store.EntityRateLimit),
			":n": store.N(tokens),
		},
	})
	if err != nil {
		return unavailable("add tokens", err)
	}
	return nil
}
