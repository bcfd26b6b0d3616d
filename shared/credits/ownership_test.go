package credits

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/httpx"
)

// flakyDB is the real emulator client with injected failures: the next
// failTx transactions (and failUpdate single updates) fail as a lost
// connection would, before reaching storage.
type flakyDB struct {
	DynamoDB
	failTx, failUpdate atomic.Int64
}

var errInjected = errors.New("injected: connection reset by peer")

func (f *flakyDB) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, o ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	if f.failTx.Add(-1) >= 0 {
		return nil, errInjected
	}
	return f.DynamoDB.TransactWriteItems(ctx, in, o...)
}

func (f *flakyDB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, o ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if f.failUpdate.Add(-1) >= 0 {
		return nil, errInjected
	}
	return f.DynamoDB.UpdateItem(ctx, in, o...)
}

func asRequest(id string) context.Context {
	return httpx.WithRequestNonce(context.Background(), id)
}

// A second request with the same Idempotency-Key whose reserve meets a
// storage error, and which then releases "just in case" (as the chat route
// does), must not give back the first request's reservation: the first
// request still settles, and pays.
func TestDuplicateKeyStorageErrorLeavesFirstReservation(t *testing.T) {
	e := newEnv(t)
	f := &flakyDB{DynamoDB: e.db}
	l := NewLedger(f, e.prefix, nil)
	user := "u-dup"
	grant(t, l, user, 100)
	a, b := asRequest("req-a"), asRequest("req-b")
	if err := l.Reserve(a, user, "idem-1", 40); err != nil {
		t.Fatal(err)
	}
	f.failTx.Store(1)
	if err := l.Reserve(b, user, "idem-1", 40); !apperr.Is(err, apperr.ServiceUnavailable) {
		t.Fatalf("second reserve under a storage error: %v, want ServiceUnavailable", err)
	}
	if err := l.Release(b, user, "idem-1", 40, nil); !errors.Is(err, ErrNoReservation) {
		t.Fatalf("second request's release: %v, want ErrNoReservation (not its reservation)", err)
	}
	if _, err := l.Settle(b, user, "idem-1", 40, 0, nil); !errors.Is(err, ErrNoReservation) {
		t.Fatalf("second request's settle: %v, want ErrNoReservation", err)
	}
	e.assertBalance(t, user, 60)
	charged, err := l.Settle(a, user, "idem-1", 40, 30, nil)
	if err != nil || charged != 30 {
		t.Fatalf("first request's settle: charged %d, %v; want 30", charged, err)
	}
	e.assertBalance(t, user, 70)
	// A replay of the first request's settle is still idempotent.
	if charged, err := l.Settle(a, user, "idem-1", 40, 30, nil); err != nil || charged != 30 {
		t.Fatalf("replayed settle: %d, %v", charged, err)
	}
}

// Real usage above the reservation (a provider that overshoots) is charged
// as far as the balance allows, and what could not be charged is recorded
// on the ledger row, not silently dropped.
func TestSettleOvershootRecordsShortfall(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	user := "u-short"
	grant(t, e.l, user, 25)
	if err := e.l.Reserve(ctx, user, "r1", 10); err != nil {
		t.Fatal(err)
	}
	charged, err := e.l.Settle(ctx, user, "r1", 10, 100, nil)
	if err != nil || charged != 25 {
		t.Fatalf("Settle: charged %d, %v; want 25", charged, err)
	}
	e.assertBalance(t, user, 0)
	rows, _, err := e.l.List(ctx, user, 1, "")
	if err != nil || len(rows) != 1 {
		t.Fatal(rows, err)
	}
	if r := rows[0]; r.Kind != KindSettle || r.Charged != 25 || r.Shortfall != 75 {
		t.Fatalf("settle row %+v, want charged 25 shortfall 75", r)
	}
}

// A settle that meets passing storage errors retries within its deadline
// instead of leaving the delivered answer's reservation to the sweep.
func TestSettleRetriesStorageErrors(t *testing.T) {
	e := newEnv(t)
	f := &flakyDB{DynamoDB: e.db}
	l := NewLedger(f, e.prefix, nil)
	ctx := asRequest("req-retry")
	grant(t, l, "u-retry", 100)
	if err := l.Reserve(ctx, "u-retry", "r", 50); err != nil {
		t.Fatal(err)
	}
	f.failTx.Store(3)
	charged, err := l.Settle(ctx, "u-retry", "r", 50, 20, nil)
	if err != nil || charged != 20 {
		t.Fatalf("Settle after 3 storage errors: %d, %v; want 20", charged, err)
	}
	e.assertBalance(t, "u-retry", 80)
}

// A settle that fails for good (storage down past its deadline) leaves a
// delivered answer: the stale sweep charges it the reserved amount instead
// of refunding it whole. A reservation that never delivered is refunded.
func TestStaleSweepSettlesDeliveredReservations(t *testing.T) {
	e := newEnv(t)
	f := &flakyDB{DynamoDB: e.db}
	now := time.Now().UTC()
	clock := func() time.Time { return now }
	l := NewLedger(f, e.prefix, func() time.Time { return clock() })
	l.SettleWithin = 300 * time.Millisecond
	grant(t, l, "u-sweep", 1000)
	ctx := asRequest("req-sweep")
	for _, id := range []string{"delivered", "failed-settle", "crashed"} {
		if err := l.Reserve(ctx, "u-sweep", id, 100); err != nil {
			t.Fatal(err)
		}
	}
	// "delivered": the request marked delivery, then its Lambda died.
	if err := l.MarkDelivered(ctx, "u-sweep", "delivered"); err != nil {
		t.Fatal(err)
	}
	if err := l.MarkDelivered(asRequest("someone-else"), "u-sweep", "crashed"); !errors.Is(err, ErrNoReservation) {
		t.Fatalf("MarkDelivered by another request: %v, want ErrNoReservation", err)
	}
	// "failed-settle": every settle transaction fails until the deadline.
	f.failTx.Store(1 << 40)
	if _, err := l.Settle(ctx, "u-sweep", "failed-settle", 100, 30, nil); !apperr.Is(err, apperr.ServiceUnavailable) {
		t.Fatalf("Settle with storage down: %v, want ServiceUnavailable", err)
	}
	f.failTx.Store(0)
	e.assertBalance(t, "u-sweep", 700)

	clock = func() time.Time { return now.Add(time.Hour) }
	n, err := l.ReleaseStale(context.Background(), 20*time.Minute)
	if err != nil || n != 3 {
		t.Fatalf("sweep finished %d (%v), want 3", n, err)
	}
	// delivered and failed-settle are charged their reservation; crashed is refunded.
	e.assertBalance(t, "u-sweep", 800)
	rows, _, err := l.List(context.Background(), "u-sweep", 10, "")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, r := range rows {
		if r.Kind == KindSettle || r.Kind == KindRelease {
			kinds[r.RequestID] = r.Kind
		}
	}
	if kinds["delivered"] != KindSettle || kinds["failed-settle"] != KindSettle || kinds["crashed"] != KindRelease {
		t.Fatalf("sweep outcomes %v", kinds)
	}
}

// A grant replayed with the same Idempotency-Key is a replay only when it
// asks for the same movement; a different amount or reason is a conflict.
func TestGrantReplayWithDifferentAmountConflicts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, _, err := e.l.Grant(ctx, "u-g", "g1", 100, "welcome"); err != nil {
		t.Fatal(err)
	}
	bal, replayed, err := e.l.Grant(ctx, "u-g", "g1", 100, "welcome")
	if err != nil || !replayed || bal != 100 {
		t.Fatalf("same replay: %d %v %v", bal, replayed, err)
	}
	for _, c := range []struct {
		amount int64
		reason string
	}{{500, "welcome"}, {100, "other"}, {-100, "welcome"}} {
		if _, _, err := e.l.Grant(ctx, "u-g", "g1", c.amount, c.reason); !apperr.Is(err, apperr.Conflict) {
			t.Fatalf("replay with %d %q: %v, want Conflict", c.amount, c.reason, err)
		}
	}
	e.assertBalance(t, "u-g", 100)
}
