package webhooks_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
	"github.com/synthstack/byok/shared/webhooks"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// clock is the consumer's controllable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// published records the consumer's own events (the disabled notice).
type published struct {
	mu  sync.Mutex
	evs []events.Event
}

func (p *published) Publish(_ context.Context, e events.Event) {
	p.mu.Lock()
	p.evs = append(p.evs, e)
	p.mu.Unlock()
}

// receiver is a local endpoint verifying every delivery with the reference
// verifier; fail decides, per request number (1-based), whether to answer 500.
type receiver struct {
	t       testing.TB
	srv     *httptest.Server
	secret  atomic.Value
	mu      sync.Mutex
	calls   int
	ok      map[string]int  // webhook-id -> successful deliveries
	failed  map[string]bool // webhook-ids answered 500 at least once
	bodies  []string
	badSigs int
	fail    func(n int) bool
	block   chan struct{} // when set, the first request waits for the client to go
}

func newReceiver(t testing.TB, fail func(n int) bool) *receiver {
	r := &receiver{t: t, ok: map[string]int{}, failed: map[string]bool{}, fail: fail}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.calls++
	n := r.calls
	block := r.block
	r.mu.Unlock()
	if block != nil && n == 1 {
		close(block)
		<-req.Context().Done() // the consumer dies mid-delivery
		return
	}
	wh, err := standardwebhooks.NewWebhook(r.secret.Load().(string))
	if err != nil {
		r.t.Error(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := wh.Verify(body, req.Header); err != nil {
		r.badSigs++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.fail != nil && r.fail(n) {
		r.failed[req.Header.Get("webhook-id")] = true
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	r.ok[req.Header.Get("webhook-id")]++
	r.bodies = append(r.bodies, string(body))
}

func (r *receiver) snapshot() (calls int, ok map[string]int, bad int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cp := map[string]int{}
	for k, v := range r.ok {
		cp[k] = v
	}
	return r.calls, cp, r.badSigs
}

// rig is the whole path on the emulator: a topic, the events queue (raw
// delivery) with its dead-letter queue, the main table, a vault, the
// registration service and the consumer with its poller.
type rig struct {
	t        testing.TB
	ctx      context.Context
	clock    *clock
	sqs      *sqs.Client
	queues   webhooks.Queues
	pub      *events.SNS
	svc      *webhooks.Service
	consumer *webhooks.Consumer
	poller   *webhooks.Poller
	notices  *published
	store    *webhooks.Store
	db       *dynamodb.Client
	prefix   string
}

func newRig(t testing.TB) *rig {
	t.Helper()
	ctx := context.Background()
	cfg := awstest.Config(t)
	prefix := awstest.Prefix(t)
	db := dynamodb.NewFromConfig(cfg)
	if err := store.EnsureTables(ctx, db, prefix); err != nil {
		t.Fatal(err)
	}
	snsc, sqsc := sns.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	top, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(prefix + "events")})
	if err != nil {
		t.Fatal(err)
	}
	qs, err := webhooks.EnsureQueues(ctx, sqsc, snsc, aws.ToString(top.TopicArn), prefix+"webhooks")
	if err != nil {
		t.Fatal(err)
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	w, err := vault.NewLocalWrapper(hex.EncodeToString(k))
	if err != nil {
		t.Fatal(err)
	}
	v := vault.New(w, nil)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	clk := &clock{t: time.Now().UTC()}
	st := webhooks.NewStore(db, prefix)
	guard := &webhooks.Guard{Resolver: &stubResolver{answers: [][]netip.Addr{addrs("93.184.216.34")}}, AllowHosts: []string{"127.0.0.1"}}
	sender := webhooks.NewSender(guard)
	notices := &published{}
	c := &webhooks.Consumer{Store: st, Opener: v, Sender: sender, Queue: sqsc, QueueURL: qs.URL, DLQURL: qs.DLQURL,
		Events: notices, Now: clk.Now, MaxDelay: time.Nanosecond, Log: log}
	return &rig{t: t, ctx: ctx, clock: clk, sqs: sqsc, queues: qs, notices: notices, store: st, db: db, prefix: prefix,
		pub:      events.NewSNS(snsc, aws.ToString(top.TopicArn), log),
		svc:      &webhooks.Service{Store: st, Sealer: v, Guard: guard, Sender: sender, Now: clk.Now, Log: log},
		consumer: c,
		poller:   &webhooks.Poller{SQS: sqsc, QueueURL: qs.URL, Consumer: c, Visibility: 1, Log: log},
	}
}

func (r *rig) register(rc *receiver, user string, evs ...string) webhooks.Created {
	r.t.Helper()
	if len(evs) == 0 {
		evs = []string{"*"}
	}
	cr, err := r.svc.Create(r.ctx, webhooks.UserOwner(user), rc.srv.URL+"/hook?token=t0ps3cret", evs)
	if err != nil {
		r.t.Fatal(err)
	}
	rc.secret.Store(cr.Secret)
	return cr
}

func keyInvalid(user string) events.Event {
	return events.Event{Type: events.KeyInvalid, UserID: user, Email: user + "@example.com", Provider: "openai",
		Hint: "sk-...abcdefg", Reason: "unauthorized", DetectedBy: events.BySchedule}
}

// run polls, advancing the clock by step after each poll, until done says
// so or rounds run out.
func (r *rig) run(step time.Duration, rounds int, done func() bool) {
	r.t.Helper()
	for i := 0; i < rounds && !done(); i++ {
		if _, err := r.poller.PollOnce(r.ctx); err != nil {
			r.t.Fatal(err)
		}
		r.clock.Advance(step)
	}
	if !done() {
		r.t.Fatalf("not done after %d rounds", rounds)
	}
}

func (r *rig) drainDLQ() []string {
	r.t.Helper()
	var out []string
	for empty := 0; empty < 3; {
		m, err := r.sqs.ReceiveMessage(r.ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(r.queues.DLQURL), MaxNumberOfMessages: 10})
		if err != nil {
			r.t.Fatal(err)
		}
		if len(m.Messages) == 0 {
			empty++
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for _, x := range m.Messages {
			out = append(out, aws.ToString(x.Body))
			_, _ = r.sqs.DeleteMessage(r.ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(r.queues.DLQURL), ReceiptHandle: x.ReceiptHandle})
		}
	}
	return out
}

// TestEndToEnd: an event published to the topic reaches the endpoint
// through the queue, signed so that the reference verifier accepts it, with
// the event JSON as the body; the queue is left empty.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t, nil)
	cr := r.register(rc, "alice", events.KeyInvalid)
	other := newReceiver(t, nil)
	r.register(other, "bob") // another owner's endpoint gets nothing
	r.pub.Publish(r.ctx, keyInvalid("alice"))
	r.pub.Publish(r.ctx, events.Event{Type: events.KeyValid, UserID: "alice", Provider: "openai"}) // not subscribed
	r.run(time.Second, 50, func() bool { _, ok, _ := rc.snapshot(); return len(ok) == 1 })
	for i := 0; i < 3; i++ {
		if _, err := r.poller.PollOnce(r.ctx); err != nil {
			t.Fatal(err)
		}
	}
	calls, ok, bad := rc.snapshot()
	if calls != 1 || bad != 0 {
		t.Fatalf("calls %d, bad signatures %d, ok %v", calls, bad, ok)
	}
	var got events.Event
	if err := json.Unmarshal([]byte(rc.bodies[0]), &got); err != nil {
		t.Fatal(err)
	}
	if got.Type != events.KeyInvalid || got.UserID != "alice" || got.Hint != "sk-...abcdefg" || got.Subject == "" || got.Text == "" {
		t.Fatalf("body %s", rc.bodies[0])
	}
	for id := range ok {
		if id != got.ID || !strings.HasPrefix(id, "evt_") {
			t.Fatalf("webhook-id %q, event id %q", id, got.ID)
		}
	}
	if c, _, _ := other.snapshot(); c != 0 {
		t.Fatalf("bob's endpoint got %d deliveries", c)
	}
	as, err := r.store.Attempts(r.ctx, cr.ID, 10)
	if err != nil || len(as) != 1 || as[0].Result != webhooks.ResultDelivered || as[0].HTTPStatus != 200 || as[0].EventID != got.ID {
		t.Fatalf("attempts %+v, %v", as, err)
	}
}

// TestRetryUntilRecovery: an endpoint failing its first 4 attempts gets the
// event exactly once after it recovers, on the Standard Webhooks schedule,
// while a healthy endpoint of the same owner gets it once, at once.
func TestRetryUntilRecovery(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	flaky := newReceiver(t, func(n int) bool { return n <= 4 })
	healthy := newReceiver(t, nil)
	fc := r.register(flaky, "carol")
	r.register(healthy, "carol")
	start := r.clock.Now()
	r.pub.Publish(r.ctx, keyInvalid("carol"))
	r.run(time.Minute, 400, func() bool { _, ok, _ := flaky.snapshot(); return len(ok) == 1 })
	for i := 0; i < 3; i++ {
		_, _ = r.poller.PollOnce(r.ctx)
	}
	calls, ok, bad := flaky.snapshot()
	if calls != 5 || bad != 0 || len(ok) != 1 {
		t.Fatalf("flaky: calls %d ok %v bad %d", calls, ok, bad)
	}
	for id, n := range ok {
		if n != 1 {
			t.Fatalf("%s delivered %d times", id, n)
		}
	}
	if c, hok, _ := healthy.snapshot(); c != 1 || len(hok) != 1 {
		t.Fatalf("healthy endpoint: %d calls %v", c, hok)
	}
	as, err := r.store.Attempts(r.ctx, fc.ID, 50)
	if err != nil || len(as) != 5 {
		t.Fatalf("attempts %+v, %v", as, err)
	}
	// newest first: attempt 5 delivered, 4..1 failed, spaced by the schedule
	for i, a := range as {
		if a.Attempt != 5-i {
			t.Fatalf("attempt order %+v", as)
		}
	}
	if as[0].Result != webhooks.ResultDelivered || as[1].Result != webhooks.ResultFailed || as[1].HTTPStatus != 500 || as[1].NextAttempt == nil {
		t.Fatalf("attempts %+v", as)
	}
	// attempt 5 comes after 5 s + 5 min + 30 min + 2 h of waiting
	if wait := as[0].At.Sub(start); wait < 2*time.Hour+35*time.Minute+5*time.Second {
		t.Fatalf("fifth attempt after %s, before the schedule allows", wait)
	}
	ep, err := r.store.Get(r.ctx, webhooks.UserOwner("carol"), fc.ID)
	if err != nil || ep.FailingSince != nil || ep.Status != webhooks.StatusActive {
		t.Fatalf("endpoint after recovery: %+v %v", ep, err)
	}
}

// TestNeverSucceedsGoesToDLQ: 8 attempts over the schedule, then the job is
// kept in the dead-letter queue; 3 days of failures disable the endpoint
// and tell its owner.
func TestNeverSucceedsGoesToDLQ(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t, func(int) bool { return true })
	cr := r.register(rc, "dave")
	r.pub.Publish(r.ctx, keyInvalid("dave"))
	var dlq []string
	r.run(30*time.Minute, 200, func() bool {
		if c, _, _ := rc.snapshot(); c < 8 {
			return false
		}
		dlq = append(dlq, r.drainDLQ()...)
		return len(dlq) > 0
	})
	if c, _, _ := rc.snapshot(); c != 8 || len(dlq) != 1 {
		t.Fatalf("calls %d, dlq %v", c, dlq)
	}
	var j map[string]any
	if err := json.Unmarshal([]byte(dlq[0]), &j); err != nil || j["webhook_id"] != cr.ID || j["attempt"] != float64(8) || j["last_error"] != "http_status" {
		t.Fatalf("dlq message %s", dlq[0])
	}
	if strings.Contains(dlq[0], cr.Secret) || strings.Contains(dlq[0], "t0ps3cret") {
		t.Fatal("dead-letter message carries the secret or the URL")
	}
	as, _ := r.store.Attempts(r.ctx, cr.ID, 50)
	if len(as) != 8 || as[0].NextAttempt != nil {
		t.Fatalf("attempts %+v", as)
	}
	ep, _ := r.store.Get(r.ctx, webhooks.UserOwner("dave"), cr.ID)
	if ep.Status != webhooks.StatusActive || ep.FailingSince == nil {
		t.Fatalf("after ~28 h of failures: %+v", ep)
	}
	// Three days after the first failure, one more failed event disables it.
	r.clock.Advance(72 * time.Hour)
	r.pub.Publish(r.ctx, keyInvalid("dave"))
	r.run(time.Second, 50, func() bool {
		ep, _ := r.store.Get(r.ctx, webhooks.UserOwner("dave"), cr.ID)
		return ep.Status == webhooks.StatusDisabled
	})
	r.notices.mu.Lock()
	defer r.notices.mu.Unlock()
	if len(r.notices.evs) != 1 || r.notices.evs[0].Type != events.WebhookDisabled || r.notices.evs[0].WebhookID != cr.ID ||
		r.notices.evs[0].UserID != "dave" || strings.Contains(r.notices.evs[0].Hint, "t0ps3cret") {
		t.Fatalf("notices %+v", r.notices.evs)
	}
}

// TestKilledMidBatch: a consumer that dies while delivering leaves the
// message on the queue; the next one delivers it.
func TestKilledMidBatch(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	rc := newReceiver(t, nil)
	rc.block = make(chan struct{})
	r.register(rc, "erin")
	r.pub.Publish(r.ctx, keyInvalid("erin"))
	ctx, kill := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() {
		for {
			n, err := r.poller.PollOnce(ctx)
			if err != nil || n > 0 {
				done <- err
				return
			}
		}
	}()
	<-rc.block // the delivery is under way
	kill()
	if err := <-done; err == nil {
		t.Fatal("the killed poll reported success")
	}
	r.run(200*time.Millisecond, 100, func() bool {
		time.Sleep(100 * time.Millisecond) // visibility timeout of 1 s
		_, ok, _ := rc.snapshot()
		return len(ok) == 1
	})
	if _, ok, bad := rc.snapshot(); bad != 0 || len(ok) != 1 {
		t.Fatalf("ok %v bad %d", ok, bad)
	}
}
