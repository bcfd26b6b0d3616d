package ratelimit

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// clock is a controllable now.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func high() routing.TierLimit {
	return routing.TierLimit{RequestsPerMinute: 1e6, TokensPerDay: 1e12, ConcurrentRequests: 1000}
}
func rateLimited(err error) *apperr.Error {
	var e *apperr.Error
	errors.As(err, &e)
	return e
}

type env struct {
	l      *Limiter
	db     *dynamodb.Client
	prefix string
	clock  *clock
}

func newEnv(t *testing.T, slotTTL time.Duration) env {
	t.Helper()
	db := dynamodb.NewFromConfig(awstest.Config(t), func(o *dynamodb.Options) {
		o.HTTPClient = awstest.SerialHTTPClient()
		o.DisableValidateResponseChecksum = true // moto's crc32 on error responses is off
	})
	prefix := awstest.Prefix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := store.EnsureTables(ctx, db, prefix); err != nil {
		t.Fatal(err)
	}
	c := newClock(time.Date(2025, 6, 1, 12, 0, 30, 0, time.UTC))
	return env{l: New(db, prefix, c.Now, slotTTL), db: db, prefix: prefix, clock: c}
}

// admitMany runs n Admit calls at once and returns the admitted tickets and
// the refusals.
func admitMany(t *testing.T, l *Limiter, user string, lim routing.TierLimit, n int) ([]*Ticket, []*apperr.Error) {
	t.Helper()
	var mu sync.Mutex
	var tickets []*Ticket
	var refusals []*apperr.Error
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			tk, err := l.Admit(context.Background(), user, lim, 10)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				tickets = append(tickets, tk)
			case apperr.Is(err, apperr.RateLimited):
				refusals = append(refusals, rateLimited(err))
			default:
				t.Errorf("Admit: %v", err)
			}
		})
	}
	wg.Wait()
	return tickets, refusals
}

func TestRequestsPerMinute(t *testing.T) {
	e := newEnv(t, 0)
	const L = 10
	lim := high()
	lim.RequestsPerMinute = L
	tickets, refusals := admitMany(t, e.l, "u", lim, 3*L)
	if len(tickets) != L || len(refusals) != 2*L {
		t.Fatalf("admitted %d, refused %d; want %d and %d", len(tickets), len(refusals), L, 2*L)
	}
	for _, r := range refusals {
		if r.RetryAfter != 30 || !strings.Contains(r.Message, "requests per minute limit of 10 reached") {
			t.Fatalf("refusal: %+v", r)
		}
	}
	for _, tk := range tickets {
		tk.Release(context.Background())
	}

	// The counter lives under RL#<user>, with a ttl, never in USER#<user>.
	out, err := e.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(store.MainTable.Name(e.prefix)),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "RL#u"}, "sk": &types.AttributeValueMemberS{Value: "RPM#202506011200"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ttl, _ := out.Item["ttl"].(*types.AttributeValueMemberN)
	count, _ := out.Item["count"].(*types.AttributeValueMemberN)
	if ttl == nil || count == nil || count.Value != "10" {
		t.Fatalf("counter item: %v", out.Item)
	}

	// The next minute has a fresh window.
	e.clock.Advance(30 * time.Second)
	tickets, _ = admitMany(t, e.l, "u", lim, 1)
	if len(tickets) != 1 {
		t.Fatal("not admitted in the next minute")
	}
	// Other users have their own counters.
	if tickets, _ := admitMany(t, e.l, "other", lim, 1); len(tickets) != 1 {
		t.Fatal("another user was limited")
	}
}

func TestConcurrencyLimit(t *testing.T) {
	e := newEnv(t, 0)
	const C = 3
	lim := high()
	lim.ConcurrentRequests = C
	tickets, refusals := admitMany(t, e.l, "u", lim, 3*C)
	if len(tickets) != C || len(refusals) != 2*C {
		t.Fatalf("admitted %d, refused %d; want %d and %d", len(tickets), len(refusals), C, 2*C)
	}
	for _, r := range refusals {
		if r.RetryAfter != 1 || !strings.Contains(r.Message, "concurrent requests limit of 3 reached") {
			t.Fatalf("refusal: %+v", r)
		}
	}
	// Releasing one (twice: idempotent) frees exactly one slot.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tickets[0].Release(cancelled) // runs even with a cancelled request context
	tickets[0].Release(context.Background())
	more, _ := admitMany(t, e.l, "u", lim, 3)
	if len(more) != 1 {
		t.Fatalf("after one release, %d admitted; want 1", len(more))
	}
	for _, tk := range append(tickets[1:], more...) {
		tk.Release(context.Background())
	}
	if again, _ := admitMany(t, e.l, "u", lim, 2*C); len(again) != C {
		t.Fatalf("after releasing all, %d admitted; want %d", len(again), C)
	}
	var nilTicket *Ticket
	nilTicket.Release(context.Background())
}

func TestCrashedHolderSlotExpires(t *testing.T) {
	const ttl = 5 * time.Minute
	e := newEnv(t, ttl)
	lim := high()
	lim.ConcurrentRequests = 2
	crashed, _ := admitMany(t, e.l, "u", lim, 2) // never released
	if len(crashed) != 2 {
		t.Fatalf("admitted %d", len(crashed))
	}
	if got, _ := admitMany(t, e.l, "u", lim, 1); len(got) != 0 {
		t.Fatal("admitted beyond the concurrency limit")
	}
	e.clock.Advance(ttl - time.Second)
	if got, _ := admitMany(t, e.l, "u", lim, 1); len(got) != 0 {
		t.Fatal("a slot freed before slotTTL")
	}
	e.clock.Advance(2 * time.Second)
	fresh, _ := admitMany(t, e.l, "u", lim, 3)
	if len(fresh) != 2 {
		t.Fatalf("after slotTTL, %d admitted; want 2", len(fresh))
	}
	// A late release by the crashed holder must not free the new holders.
	for _, tk := range crashed {
		tk.Release(context.Background())
	}
	if got, _ := admitMany(t, e.l, "u", lim, 1); len(got) != 0 {
		t.Fatal("a stale ticket's release freed another request's slot")
	}
}

func TestTokensPerDay(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	lim := high()
	lim.TokensPerDay = 1000
	tk, err := e.l.Admit(ctx, "u", lim, 600)
	if err != nil {
		t.Fatal(err)
	}
	tk.Release(ctx)
	if err := e.l.AddTokens(ctx, "u", 600); err != nil {
		t.Fatal(err)
	}
	_, err = e.l.Admit(ctx, "u", lim, 500)
	r := rateLimited(err)
	if r == nil || r.Code != apperr.RateLimited || !strings.Contains(r.Message, "tokens per day limit of 1000 reached") {
		t.Fatalf("Admit over the daily tokens: %v", err)
	}
	if want := int((11*time.Hour + 59*time.Minute + 30*time.Second) / time.Second); r.RetryAfter != want {
		t.Fatalf("Retry-After %d, want %d (to the next UTC day)", r.RetryAfter, want)
	}
	if tk, err = e.l.Admit(ctx, "u", lim, 400); err != nil {
		t.Fatalf("Admit within the daily tokens: %v", err)
	}
	tk.Release(ctx)
	if err := e.l.AddTokens(ctx, "u", 400); err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.Admit(ctx, "u", lim, 1); !apperr.Is(err, apperr.RateLimited) {
		t.Fatalf("Admit at the limit: %v", err)
	}
	e.clock.Advance(12 * time.Hour) // the next UTC day
	if _, err := e.l.Admit(ctx, "u", lim, 900); err != nil {
		t.Fatalf("Admit on a new day: %v", err)
	}
}

func TestRefusalGivesBackTheMinuteCount(t *testing.T) {
	e := newEnv(t, 0)
	ctx := context.Background()
	lim := routing.TierLimit{RequestsPerMinute: 2, TokensPerDay: 1000, ConcurrentRequests: 1}
	a, err := e.l.Admit(ctx, "u", lim, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.Admit(ctx, "u", lim, 10); !apperr.Is(err, apperr.RateLimited) {
		t.Fatalf("second concurrent request: %v", err)
	}
	if _, err := e.l.Admit(ctx, "u", lim, 5000); !apperr.Is(err, apperr.RateLimited) {
		t.Fatalf("request over the daily tokens: %v", err)
	}
	a.Release(ctx)
	b, err := e.l.Admit(ctx, "u", lim, 10)
	if err != nil {
		t.Fatalf("refused requests used up the minute: %v", err)
	}
	b.Release(ctx)
	if _, err := e.l.Admit(ctx, "u", lim, 10); !strings.Contains(err.Error(), "requests per minute limit of 2") {
		t.Fatalf("third request of the minute: %v", err)
	}
}

func TestUnreachableStorageFailsClosed(t *testing.T) {
	db := dynamodb.NewFromConfig(awstest.Config(t), func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String("http://127.0.0.1:1")
		o.RetryMaxAttempts = 1
	})
	l := New(db, "x-", nil, 0)
	ctx := context.Background()
	for _, lim := range []routing.TierLimit{
		routing.DefaultTierLimits()[routing.Free],
		{TokensPerDay: 10},
		{ConcurrentRequests: 1},
	} {
		if _, err := l.Admit(ctx, "u", lim, 1); !apperr.Is(err, apperr.ServiceUnavailable) {
			t.Fatalf("Admit %+v: %v, want ServiceUnavailable", lim, err)
		}
	}
	if err := l.AddTokens(ctx, "u", 5); !apperr.Is(err, apperr.ServiceUnavailable) {
		t.Fatalf("AddTokens: %v", err)
	}
}
