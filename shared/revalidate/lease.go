package revalidate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/uuid"
)

// LeaseDB is the subset of *dynamodb.Client a Lease uses.
type LeaseDB interface {
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
}

// ErrHeld means another holder has the lease: a pass is already running.
var ErrHeld = errors.New("another revalidation pass holds the lease")

// DefaultLeaseTTL is how long a lease lives without renewal: a holder that
// died (a Lambda killed at its timeout) frees it after this. Renewed every
// third of it.
const DefaultLeaseTTL = 2 * time.Minute

// Lease keeps a single pass running at a time across invocations, without
// Lambda reserved concurrency (which new accounts often cannot afford): one
// conditional row in the main table, acquired with an expiry, renewed while
// the pass runs and released after. Its zero TTL means DefaultLeaseTTL.
type Lease struct {
	DB    LeaseDB
	Table string
	// Name identifies what is leased (the row's key).
	Name string
	// Owner identifies this holder (a new random id when empty).
	Owner string
	TTL   time.Duration
	Now   func() time.Time
	Log   *slog.Logger

	once sync.Once
}

func (l *Lease) init() {
	l.once.Do(func() {
		if l.Owner == "" {
			l.Owner = uuid.NewString()
		}
		if l.TTL <= 0 {
			l.TTL = DefaultLeaseTTL
		}
	})
}

func (l *Lease) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Lease) key() map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "LEASE#" + l.Name},
		"sk": &types.AttributeValueMemberS{Value: "LEASE"},
	}
}

func num(n int64) *types.AttributeValueMemberN {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

// Acquire takes the lease if it is free or expired; ErrHeld otherwise.
func (l *Lease) Acquire(ctx context.Context) error {
	l.init()
	now := l.now()
	item := l.key()
	item["entity"] = &types.AttributeValueMemberS{Value: "lease"}
	item["owner"] = &types.AttributeValueMemberS{Value: l.Owner}
	item["expires_at"] = num(now.Add(l.TTL).UnixMilli())
	// DynamoDB TTL removes a row its holder never released (a day later).
	item["ttl"] = num(now.Add(24 * time.Hour).Unix())
	_, err := l.DB.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:           aws.String(l.Table),
		Item:                item,
		ConditionExpression: aws.String("attribute_not_exists(pk) OR expires_at < :now"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now": num(now.UnixMilli()),
		},
	})
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		return ErrHeld
	}
	if err != nil {
		return fmt.Errorf("acquire lease %s: %w", l.Name, err)
	}
	return nil
}

// Renew extends a lease this holder has; ErrHeld when it was lost (expired
// and taken by another).
func (l *Lease) Renew(ctx context.Context) error {
	l.init()
	_, err := l.DB.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(l.Table),
		Key:                 l.key(),
		UpdateExpression:    aws.String("SET expires_at = :exp"),
		ConditionExpression: aws.String("#o = :me"),
		ExpressionAttributeNames: map[string]string{
			"#o": "owner",
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":exp": num(l.now().Add(l.TTL).UnixMilli()),
			":me":  &types.AttributeValueMemberS{Value: l.Owner},
		},
	})
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		return ErrHeld
	}
	if err != nil {
		return fmt.Errorf("renew lease %s: %w", l.Name, err)
	}
	return nil
}

// Release frees the lease if this holder still has it.
func (l *Lease) Release(ctx context.Context) error {
	l.init()
	_, err := l.DB.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                aws.String(l.Table),
		Key:                      l.key(),
		ConditionExpression:      aws.String("#o = :me"),
		ExpressionAttributeNames: map[string]string{"#o": "owner"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":me": &types.AttributeValueMemberS{Value: l.Owner},
		},
	})
	var cf *types.ConditionalCheckFailedException
	if errors.As(err, &cf) {
		return nil // already expired and taken, or gone: nothing of ours to free
	}
	if err != nil {
		return fmt.Errorf("release lease %s: %w", l.Name, err)
	}
	return nil
}

// Hold runs fn while holding the lease: ErrHeld at once when another holder
// has it. The lease is renewed every TTL/3 while fn runs; if a renewal finds
// it lost, fn's context is cancelled so two passes never overlap for long.
// The lease is released when fn returns.
func (l *Lease) Hold(ctx context.Context, fn func(context.Context) error) error {
	if err := l.Acquire(ctx); err != nil {
		return err
	}
	log := l.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(l.TTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-fctx.Done():
				return
			case <-tick.C:
				switch err := l.Renew(fctx); {
				case errors.Is(err, ErrHeld):
					log.Error("revalidation lease lost to another pass; stopping this one", "lease", l.Name)
					cancel(ErrHeld)
					return
				case err != nil:
					// Storage trouble: keep going; the lease lasts a TTL more.
					log.Warn("revalidation lease renewal failed", "lease", l.Name, "err", err.Error())
				}
			}
		}
	}()
	err := fn(fctx)
	close(done)
	wg.Wait()
	cancel(nil)
	// Released outside ctx's cancellation: a pass stopped by its deadline
	// still frees the lease for the next one.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer rcancel()
	if rerr := l.Release(rctx); rerr != nil {
		log.Warn("revalidation lease release failed; it expires by itself", "lease", l.Name, "err", rerr.Error())
	}
	return err
}
