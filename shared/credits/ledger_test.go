package credits

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/store"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

type env struct {
	l      *Ledger
	db     *dynamodb.Client
	prefix string
}

func newEnv(t *testing.T) env {
	t.Helper()
	db := dynamodb.NewFromConfig(awstest.Config(t), func(o *dynamodb.Options) {
		o.HTTPClient = awstest.SerialHTTPClient()
		// moto's x-amz-crc32 on error responses does not match: skip the
		// check so the SDK does not log a warning per refused transaction.
		o.DisableValidateResponseChecksum = true
	})
	prefix := awstest.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := store.EnsureTables(ctx, db, prefix); err != nil {
		t.Fatal(err)
	}
	return env{l: NewLedger(db, prefix, nil), db: db, prefix: prefix}
}

// assertBalance checks the balance and that it equals the ledger's sum.
func (e env) assertBalance(t *testing.T, userID string, want int64) {
	t.Helper()
	ctx := context.Background()
	bal, err := e.l.Balance(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := e.l.Sum(ctx, userID)
	if err != nil {
		t.Fatal(err)
	}
	if bal != want || sum != want {
		t.Fatalf("balance %d, ledger sum %d, want both %d", bal, sum, want)
	}
}

func grant(t *testing.T, l *Ledger, userID string, amount int64) {
	t.Helper()
	if _, _, err := l.Grant(context.Background(), userID, fmt.Sprintf("g-%d-%d", time.Now().UnixNano(), amount), amount, "test"); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentReservesNeverOverdraw(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const n, price, workers = 37, 10, 200
	user := "u-race"
	grant(t, e.l, user, n*price)

	var ok, refused atomic.Int64
	var won sync.Map
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			id := fmt.Sprintf("req-%03d", i)
			err := e.l.Reserve(ctx, user, id, price)
			switch {
			case err == nil:
				ok.Add(1)
				won.Store(id, true)
			case apperr.Is(err, apperr.PaymentRequired):
				refused.Add(1)
			default:
				t.Errorf("Reserve %s: %v", id, err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != n || refused.Load() != workers-n {
		t.Fatalf("%d reserves succeeded and %d were refused; want %d and %d", ok.Load(), refused.Load(), n, workers-n)
	}
	e.assertBalance(t, user, 0)

	// Settle half with actual < reserved, release the rest, concurrently.
	var ids []string
	won.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	var spent atomic.Int64
	for i, id := range ids {
		wg.Go(func() {
			if i%2 == 0 {
				actual := int64(1 + i%9)
				charged, err := e.l.Settle(ctx, user, id, price, actual, map[string]any{"model": "gpt-4o-mini", "input_tokens": 12})
				if err != nil || charged != actual {
					t.Errorf("Settle %s: charged %d, %v", id, charged, err)
				}
				spent.Add(actual)
			} else if err := e.l.Release(ctx, user, id, price, nil); err != nil {
				t.Errorf("Release %s: %v", id, err)
			}
		})
	}
	wg.Wait()
	e.assertBalance(t, user, n*price-spent.Load())
}

func TestRequestIDNeverMovesCreditsTwice(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	user := "u-replay"
	grant(t, e.l, user, 100)

	// Held, then settled: every further reserve is a duplicate.
	if err := e.l.Reserve(ctx, user, "r1", 10); err != nil {
		t.Fatal(err)
	}
	if err := e.l.Reserve(ctx, user, "r1", 10); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second reserve of a held id: %v, want ErrDuplicate", err)
	}
	e.assertBalance(t, user, 90)
	charged, err := e.l.Settle(ctx, user, "r1", 10, 4, map[string]any{"model": "gpt-4o"})
	if err != nil || charged != 4 {
		t.Fatalf("Settle: %d, %v", charged, err)
	}
	e.assertBalance(t, user, 96)
	if err := e.l.Reserve(ctx, user, "r1", 10); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("reserve after settle: %v, want ErrDuplicate", err)
	}
	charged, err = e.l.Settle(ctx, user, "r1", 10, 9, nil)
	if err != nil || charged != 4 {
		t.Fatalf("second Settle: %d, %v; want the first charge 4", charged, err)
	}
	if err := e.l.Release(ctx, user, "r1", 10, nil); err != nil {
		t.Fatalf("Release after Settle: %v", err)
	}
	e.assertBalance(t, user, 96)

	// Released: the id may reserve once more.
	if err := e.l.Reserve(ctx, user, "r2", 20); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := e.l.Release(ctx, user, "r2", 20, nil); err != nil {
			t.Fatal(err)
		}
	}
	e.assertBalance(t, user, 96)
	if err := e.l.Reserve(ctx, user, "r2", 20); err != nil {
		t.Fatalf("reserve after release: %v", err)
	}
	if err := e.l.Reserve(ctx, user, "r2", 20); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("third reserve: %v, want ErrDuplicate", err)
	}
	e.assertBalance(t, user, 76)
	if _, err := e.l.Settle(ctx, user, "r2", 5, 5, nil); !errors.Is(err, ErrNoReservation) {
		t.Fatalf("Settle with a wrong reserved amount: %v, want ErrNoReservation", err)
	}
	if _, err := e.l.Settle(ctx, user, "never", 5, 5, nil); !errors.Is(err, ErrNoReservation) {
		t.Fatalf("Settle of an unknown id: %v, want ErrNoReservation", err)
	}
	if _, err := e.l.Settle(ctx, user, "r2", 20, 20, nil); err != nil {
		t.Fatal(err)
	}
	e.assertBalance(t, user, 76)

	// The same id from 20 goroutines at once: exactly one reserves.
	var ok, dup atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			switch err := e.l.Reserve(ctx, user, "r3", 7); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrDuplicate):
				dup.Add(1)
			default:
				t.Errorf("Reserve: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || dup.Load() != 19 {
		t.Fatalf("concurrent reserves of one id: %d ok, %d duplicates; want 1 and 19", ok.Load(), dup.Load())
	}
	e.assertBalance(t, user, 69)

	// Grant replays move nothing.
	bal, replayed, err := e.l.Grant(ctx, user, "topup-1", 50, "monthly")
	if err != nil || replayed || bal != 119 {
		t.Fatalf("Grant: %d %v %v", bal, replayed, err)
	}
	bal, replayed, err = e.l.Grant(ctx, user, "topup-1", 50, "monthly")
	if err != nil || !replayed || bal != 119 {
		t.Fatalf("Grant replay: %d %v %v; want 119 replayed", bal, replayed, err)
	}
	e.assertBalance(t, user, 119)
}

func TestReserveInsufficientMessage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	err := e.l.Reserve(ctx, "nobody", "r", 5)
	if !apperr.Is(err, apperr.PaymentRequired) {
		t.Fatalf("reserve without account: %v", err)
	}
	grant(t, e.l, "u", 3)
	err = e.l.Reserve(ctx, "u", "r", 5)
	if !apperr.Is(err, apperr.PaymentRequired) || !strings.Contains(err.Error(), "balance 3, this request needs up to 5") {
		t.Fatalf("err %v", err)
	}
	e.assertBalance(t, "u", 3)
	// The refused id is free to reserve later.
	grant(t, e.l, "u", 2)
	if err := e.l.Reserve(ctx, "u", "r", 5); err != nil {
		t.Fatal(err)
	}
	e.assertBalance(t, "u", 0)
}

func TestSettleOverReservationNeverBelowZero(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	user := "u-over"
	grant(t, e.l, user, 15)
	if err := e.l.Reserve(ctx, user, "r1", 10); err != nil {
		t.Fatal(err)
	}
	// 5 left: an actual of 40 charges 10 reserved + 5 more, not 30.
	charged, err := e.l.Settle(ctx, user, "r1", 10, 40, nil)
	if err != nil || charged != 15 {
		t.Fatalf("Settle: charged %d, %v; want 15", charged, err)
	}
	e.assertBalance(t, user, 0)

	grant(t, e.l, user, 30)
	if err := e.l.Reserve(ctx, user, "r2", 10); err != nil {
		t.Fatal(err)
	}
	charged, err = e.l.Settle(ctx, user, "r2", 10, 12, nil)
	if err != nil || charged != 12 {
		t.Fatalf("Settle: charged %d, %v; want 12", charged, err)
	}
	e.assertBalance(t, user, 18)

	// Zero balance: the extra is simply not charged.
	if _, _, err := e.l.Grant(ctx, user, "debit", -18, "admin"); err != nil {
		t.Fatal(err)
	}
	grant(t, e.l, user, 10)
	if err := e.l.Reserve(ctx, user, "r3", 10); err != nil {
		t.Fatal(err)
	}
	charged, err = e.l.Settle(ctx, user, "r3", 10, 1000, nil)
	if err != nil || charged != 10 {
		t.Fatalf("Settle: charged %d, %v; want 10", charged, err)
	}
	e.assertBalance(t, user, 0)
}

func TestGrantAccountAndDebits(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	st := store.New(e.db, e.prefix)
	tier, email := "premium", "a@example.com"
	if _, err := st.UpsertAccount(ctx, "u", store.AccountPatch{Tier: &tier, Email: &email}, time.Now()); err != nil {
		t.Fatal(err)
	}
	bal, _, err := e.l.Grant(ctx, "u", "k1", 500, "purchase")
	if err != nil || bal != 500 {
		t.Fatalf("Grant: %d %v", bal, err)
	}
	acc, err := st.GetAccount(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	if acc.Tier != "premium" || acc.Email != email || acc.CreditBalance != 500 || acc.LastGrant != 500 {
		t.Fatalf("account after grant: %+v", acc)
	}
	bal, _, err = e.l.Grant(ctx, "u", "k2", -200, "refund")
	if err != nil || bal != 300 {
		t.Fatalf("debit: %d %v", bal, err)
	}
	_, _, err = e.l.Grant(ctx, "u", "k3", -301, "too much")
	if !apperr.Is(err, apperr.InvalidRequest) {
		t.Fatalf("overdraw debit: %v, want InvalidRequest", err)
	}
	if acc, _ = st.GetAccount(ctx, "u"); acc.LastGrant != 500 {
		t.Fatalf("last_grant changed by a debit: %d", acc.LastGrant)
	}
	e.assertBalance(t, "u", 300)

	// A grant creates a missing account with tier free.
	if _, _, err := e.l.Grant(ctx, "new", "k1", 7, "welcome"); err != nil {
		t.Fatal(err)
	}
	acc, err = st.GetAccount(ctx, "new")
	if err != nil || acc == nil || acc.Tier != "free" || acc.CreditBalance != 7 || acc.UserID != "new" {
		t.Fatalf("new account: %+v %v", acc, err)
	}
	if _, _, err := e.l.Grant(ctx, "nobody", "k1", -1, ""); !apperr.Is(err, apperr.InvalidRequest) {
		t.Fatalf("debit of a missing account: %v", err)
	}
}

func TestListPagination(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var tick atomic.Int64
	e.l.now = func() time.Time { return base.Add(time.Duration(tick.Add(1)) * time.Millisecond) }
	user := "u-list"
	grant(t, e.l, user, 1000)
	for i := range 6 {
		id := fmt.Sprintf("r%d", i)
		if err := e.l.Reserve(ctx, user, id, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := e.l.Settle(ctx, user, id, 10, 3, map[string]any{"model": "gpt-4o", "output_tokens": 42}); err != nil {
			t.Fatal(err)
		}
	}
	// 13 rows: grant, then reserve+settle ×6. Read them 5 per page.
	var all []Transaction
	cursor := ""
	for page := 0; ; page++ {
		txs, next, err := e.l.List(ctx, user, 5, cursor)
		if err != nil {
			t.Fatal(err)
		}
		if len(txs) > 5 || page > 5 {
			t.Fatalf("page %d has %d rows", page, len(txs))
		}
		all = append(all, txs...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 13 {
		t.Fatalf("%d rows, want 13", len(all))
	}
	for i := 1; i < len(all); i++ {
		if !all[i-1].At.After(all[i].At) {
			t.Fatalf("rows not newest first at %d: %v then %v", i, all[i-1].At, all[i].At)
		}
	}
	first, last := all[0], all[len(all)-1]
	if first.Kind != KindSettle || first.RequestID != "r5" || first.Amount != 7 || first.Charged != 3 ||
		first.Meta["model"] != "gpt-4o" || first.Meta["output_tokens"] != float64(42) {
		t.Fatalf("newest row: %+v", first)
	}
	if last.Kind != KindGrant || last.Amount != 1000 || last.Reason != "test" {
		t.Fatalf("oldest row: %+v", last)
	}
	for _, bad := range []string{"!!", "e30", "eyJzayI6IktFWSNvcGVuYWkifQ"} { // not base64, {}, {"sk":"KEY#openai"}
		if _, _, err := e.l.List(ctx, user, 5, bad); !apperr.Is(err, apperr.InvalidRequest) {
			t.Fatalf("cursor %q: %v, want InvalidRequest", bad, err)
		}
	}
}

func TestUnreachableStorageFailsClosed(t *testing.T) {
	db := dynamodb.NewFromConfig(awstest.Config(t), func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String("http://127.0.0.1:1")
		o.RetryMaxAttempts = 1
	})
	l := NewLedger(db, "x-", nil)
	l.SettleWithin = 200 * time.Millisecond // settle retries a lost connection: do not wait 20 s here
	ctx := context.Background()
	if err := l.Reserve(ctx, "u", "r", 5); !apperr.Is(err, apperr.ServiceUnavailable) {
		t.Fatalf("Reserve: %v, want ServiceUnavailable", err)
	}
	if _, err := l.Settle(ctx, "u", "r", 5, 1, nil); !apperr.Is(err, apperr.ServiceUnavailable) {
		t.Fatalf("Settle: %v", err)
	}
	if _, _, err := l.Grant(ctx, "u", "k", 5, ""); !apperr.Is(err, apperr.ServiceUnavailable) {
		t.Fatalf("Grant: %v", err)
	}
	if _, err := l.Balance(ctx, "u"); !apperr.Is(err, apperr.ServiceUnavailable) {
		t.Fatalf("Balance: %v", err)
	}
}

// A reservation never finished (its Lambda died) is given back by
// ReleaseStale once older than the cut-off, exactly once; finished and
// recent ones are left alone.
func TestReleaseStaleReservations(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now().UTC()
	clock := func() time.Time { return now }
	l := NewLedger(e.db, e.prefix, func() time.Time { return clock() })
	grant(t, l, "sam", 1000)
	if err := l.Reserve(ctx, "sam", "orphan", 100); err != nil {
		t.Fatal(err)
	}
	if err := l.Reserve(ctx, "sam", "done", 50); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Settle(ctx, "sam", "done", 50, 30, nil); err != nil {
		t.Fatal(err)
	}
	clock = func() time.Time { return now.Add(10 * time.Minute) }
	if err := l.Reserve(ctx, "sam", "recent", 200); err != nil {
		t.Fatal(err)
	}
	e.assertBalance(t, "sam", 1000-100-30-200)

	// 10 minutes on: nothing is older than 20 minutes yet.
	if n, err := l.ReleaseStale(ctx, 20*time.Minute); err != nil || n != 0 {
		t.Fatalf("early sweep released %d (%v)", n, err)
	}
	// 25 minutes on: only the orphan (reserved at 0) is stale.
	clock = func() time.Time { return now.Add(25 * time.Minute) }
	if n, err := l.ReleaseStale(ctx, 20*time.Minute); err != nil || n != 1 {
		t.Fatalf("sweep released %d (%v), want 1", n, err)
	}
	e.assertBalance(t, "sam", 1000-30-200)
	if n, err := l.ReleaseStale(ctx, 20*time.Minute); err != nil || n != 0 {
		t.Fatalf("second sweep released %d (%v), want 0", n, err)
	}
	// The request that still holds its reservation can settle normally.
	if _, err := l.Settle(ctx, "sam", "recent", 200, 120, nil); err != nil {
		t.Fatal(err)
	}
	e.assertBalance(t, "sam", 1000-30-120)
}
