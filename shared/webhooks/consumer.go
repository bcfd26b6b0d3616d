package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

// DefaultSchedule is the Standard Webhooks retry schedule: the waits after
// the first, second, ... failed attempt (8 attempts over about 27.5 hours).
var DefaultSchedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// MaxSQSDelay is the longest DelaySeconds SQS accepts; longer waits are
// made of several hops (docs/webhooks.md).
const MaxSQSDelay = 15 * time.Minute

// DisableAfter is how long an endpoint may fail every attempt before it is
// switched off and its owner told.
const DisableAfter = 72 * time.Hour

// Message attribute naming our own messages on the events queue.
const (
	KindAttribute = "byok_kind"
	KindRetry     = "webhook_retry"
	KindExhausted = "webhook_exhausted"
)

// Message is one queue message: an event from the topic, or a retry job we
// queued ourselves (Kind KindRetry).
type Message struct {
	ID   string
	Body string
	Kind string
	// Receives is SQS's ApproximateReceiveCount (0 when unknown). A first
	// receive of an event cannot have been delivered before.
	Receives int
}

// Queue sends messages (*sqs.Client satisfies it).
type Queue interface {
	SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// Opener opens sealed secrets (*vault.Vault satisfies it).
type Opener interface {
	Open(ctx context.Context, ec vault.Context, blob []byte) ([]byte, error)
}

// Accounts finds an owner's e-mail for the disabled notice.
type Accounts interface {
	GetAccount(ctx context.Context, userID string) (*store.Account, error)
}

// Orgs finds an org's notification e-mail for the disabled notice of its
// endpoints (*store.Store satisfies it).
type Orgs interface {
	GetOrg(ctx context.Context, org, project string) (store.Org, error)
}

// Consumer delivers the events of queue batches, one job per endpoint, so a
// failing endpoint is retried alone and never repeats a healthy one's
// delivery.
type Consumer struct {
	Store    *Store
	Opener   Opener
	Sender   *Sender
	Queue    Queue
	QueueURL string
	DLQURL   string
	Events   events.Publisher
	Accounts Accounts // may be nil
	Orgs     Orgs     // may be nil
	// Schedule is the retry schedule (DefaultSchedule when nil); MaxDelay the
	// longest single SQS delay (MaxSQSDelay when 0; tests set it tiny and
	// drive Now instead of waiting).
	Schedule     []time.Duration
	MaxDelay     time.Duration
	DisableAfter time.Duration
	Now          func() time.Time
	Concurrency  int
	Log          *slog.Logger
}

// batchLists reads each owner's endpoints once per batch, with a
// consistent read when the batch's first event for that owner is handled;
// nothing is kept beyond the batch, so once a delete or a PATCH has
// returned, the next batch sees it (docs/webhooks.md, "Changes take effect
// at once"). A burst for one owner costs one Query per batch, not per event.
type batchLists struct {
	store *Store
	mu    sync.Mutex
	m     map[string]*ownerList
}

type ownerList struct {
	once sync.Once
	eps  []Endpoint
	err  error
}

func (b *batchLists) endpoints(ctx context.Context, owner string) ([]Endpoint, error) {
	b.mu.Lock()
	l := b.m[owner]
	if l == nil {
		l = &ownerList{}
		b.m[owner] = l
	}
	b.mu.Unlock()
	l.once.Do(func() { l.eps, l.err = b.store.List(ctx, owner) })
	return l.eps, l.err
}

// job is one pending delivery of one event to one endpoint.
type job struct {
	Owner     string          `json:"owner"`
	WebhookID string          `json:"webhook_id"`
	MsgID     string          `json:"msg_id"`
	EventType string          `json:"event_type"`
	Attempt   int             `json:"attempt"`
	NotBefore time.Time       `json:"not_before"`
	Payload   json.RawMessage `json:"payload"`
	LastError string          `json:"last_error,omitempty"`
}

func (c *Consumer) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Consumer) schedule() []time.Duration {
	if c.Schedule != nil {
		return c.Schedule
	}
	return DefaultSchedule
}

// Handle processes a batch and returns the ids of the messages that must
// come back (left on the queue: SQS redelivers them after the visibility
// timeout, and the redrive policy moves a poison message to the DLQ).
func (c *Consumer) Handle(ctx context.Context, msgs []Message) (failed []string) {
	n := c.Concurrency
	if n <= 0 {
		n = 10
	}
	sem := make(chan struct{}, n)
	lists := &batchLists{store: c.Store, m: map[string]*ownerList{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range msgs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.handle(ctx, m, lists); err != nil {
				c.Log.Error("webhook message not done; it will be redelivered", "message_id", m.ID, "err", err.Error())
				mu.Lock()
				failed = append(failed, m.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

func (c *Consumer) handle(ctx context.Context, m Message, lists *batchLists) error {
	if m.Kind == KindRetry {
		return c.handleRetry(ctx, m)
	}
	var ev events.Event
	if err := json.Unmarshal([]byte(m.Body), &ev); err != nil {
		return errors.New("message is not an event: " + err.Error())
	}
	if !isDeliverable(ev.Type) || (ev.UserID == "" && ev.Org == "") {
		c.Log.Info("event not for webhooks", "message_id", m.ID, "event_type", clip(ev.Type, 40))
		return nil
	}
	if ev.ID == "" {
		ev.ID = "msg_" + m.ID // stable across redeliveries of this message
	}
	// The body we sign is our own encoding of what we parsed.
	payload, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	eps, err := lists.endpoints(ctx, OwnerOf(ev))
	if err != nil {
		return err
	}
	var errs []error
	for _, ep := range eps {
		if ep.Status != StatusActive || !ep.Subscribed(ev.Type) {
			continue
		}
		j := job{Owner: ep.Owner, WebhookID: ep.ID, MsgID: ev.ID, EventType: ev.Type, Attempt: 1, Payload: payload}
		if err := c.attempt(ctx, ep, j, m.Receives == 1); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isDeliverable(t string) bool {
	for _, x := range EventTypes {
		if x == t {
			return true
		}
	}
	return false
}

func (c *Consumer) handleRetry(ctx context.Context, m Message) error {
	var j job
	if err := json.Unmarshal([]byte(m.Body), &j); err != nil || j.WebhookID == "" || j.Owner == "" || j.Attempt < 2 {
		return errors.New("malformed retry job")
	}
	if wait := j.NotBefore.Sub(c.now()); wait > 0 {
		return c.enqueue(ctx, j) // another hop towards a wait longer than SQS allows
	}
	ep, err := c.Store.Get(ctx, j.Owner, j.WebhookID)
	if apperr.Is(err, apperr.NotFound) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	if ep.Status != StatusActive || !ep.Subscribed(j.EventType) {
		return nil // disabled, paused or unsubscribed from this event meanwhile
	}
	return c.attempt(ctx, ep, j, false)
}

// attempt makes one delivery of j and records it. It returns an error only
// when we failed (storage, vault, queue, cancellation): then the message
// comes back and nothing was counted against the endpoint. fresh says the
// message is on its first receive, so no earlier delivery can exist.
func (c *Consumer) attempt(ctx context.Context, ep Endpoint, j job, fresh bool) error {
	if !fresh {
		done, err := c.Store.Delivered(ctx, ep.ID, j.MsgID)
		if err != nil || done {
			return err
		}
	}
	secret, err := c.Opener.Open(ctx, vault.Context{UserID: ep.Owner, Provider: SecretProvider, KeyID: ep.ID}, ep.Ciphertext)
	if err != nil {
		return err
	}
	res, err := c.Sender.Send(ctx, ep.URL, string(secret), j.MsgID, j.Payload)
	clear(secret)
	if err != nil {
		return err
	}
	now := c.now()
	a := Attempt{At: now, WebhookID: ep.ID, EventID: j.MsgID, EventType: j.EventType, Attempt: j.Attempt,
		HTTPStatus: res.HTTPStatus, Error: res.Error, LatencyMS: res.Latency.Milliseconds()}
	log := c.Log.With("webhook_id", ep.ID, "event_id", j.MsgID, "attempt", j.Attempt)
	if res.OK {
		a.Result = ResultDelivered
		if err := c.Store.RecordDelivered(ctx, a); err != nil {
			return err
		}
		if ep.FailingSince != nil {
			if err := c.Store.MarkHealthy(ctx, ep.Owner, ep.ID); err != nil {
				log.Error("healthy mark not written", "err", err.Error())
			}
		}
		return nil
	}
	a.Result = ResultFailed
	sched := c.schedule()
	if j.Attempt <= len(sched) {
		next := j
		next.Attempt, next.NotBefore, next.LastError = j.Attempt+1, now.Add(sched[j.Attempt-1]), res.Error
		a.NextAttempt = &next.NotBefore
		// Queued before anything else, so the retry outlives a crash here.
		if err := c.enqueue(ctx, next); err != nil {
			return err
		}
	} else {
		j.LastError = res.Error
		if err := c.toDLQ(ctx, j); err != nil {
			return err
		}
		log.Warn("webhook delivery gave up; kept in the dead-letter queue", "error", res.Error, "http_status", res.HTTPStatus)
	}
	if err := c.Store.RecordAttempt(ctx, a); err != nil {
		log.Error("attempt not recorded", "err", err.Error())
	}
	since, err := c.Store.MarkFailing(ctx, ep.Owner, ep.ID, now)
	if err != nil {
		log.Error("failing mark not written", "err", err.Error())
		return nil
	}
	limit := c.DisableAfter
	if limit <= 0 {
		limit = DisableAfter
	}
	if now.Sub(since) >= limit {
		c.disable(ctx, ep, since, now, res.Error)
	}
	return nil
}

func (c *Consumer) enqueue(ctx context.Context, j job) error {
	body, err := json.Marshal(j)
	if err != nil {
		return err
	}
	maxDelay := c.MaxDelay
	if maxDelay <= 0 {
		maxDelay = MaxSQSDelay
	}
	delay := min(max(j.NotBefore.Sub(c.now()), 0), maxDelay)
	_, err = c.Queue.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:     aws.String(c.QueueURL),
		MessageBody:  aws.String(string(body)),
		DelaySeconds: int32(delay / time.Second),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			KindAttribute: {DataType: aws.String("String"), StringValue: aws.String(KindRetry)},
		},
	})
	if err != nil {
		return apperr.Wrap(err, apperr.ServiceUnavailable, "webhook queue is unavailable")
	}
	return nil
}

func (c *Consumer) toDLQ(ctx context.Context, j job) error {
	body, err := json.Marshal(j)
	if err != nil {
		return err
	}
	_, err = c.Queue.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:    aws.String(c.DLQURL),
		MessageBody: aws.String(string(body)),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			KindAttribute: {DataType: aws.String("String"), StringValue: aws.String(KindExhausted)},
		},
	})
	if err != nil {
		return apperr.Wrap(err, apperr.ServiceUnavailable, "webhook dead-letter queue is unavailable")
	}
	return nil
}

// disable switches ep off and tells its owner (an event: e-mail through the
// topic, and the owner's other endpoints that subscribe to it).
func (c *Consumer) disable(ctx context.Context, ep Endpoint, since, now time.Time, lastErr string) {
	ok, err := c.Store.Disable(ctx, ep.Owner, ep.ID, since, now)
	if err != nil {
		c.Log.Error("webhook not disabled", "webhook_id", ep.ID, "err", err.Error())
		return
	}
	if !ok {
		// Not active any more, or its failure clock changed since it was
		// read (the owner re-enabled it or gave it a new URL): not switched off.
		c.Log.Info("webhook not switched off: changed meanwhile", "webhook_id", ep.ID)
		return
	}
	host := ""
	if u, err := url.Parse(ep.URL); err == nil {
		host = u.Host // never the path or query: they may hold a token
	}
	e := events.Event{Type: events.WebhookDisabled, WebhookID: ep.ID, Hint: host, DetectedBy: events.ByUse, At: now,
		Reason: "last error: " + lastErr}
	switch {
	case strings.HasPrefix(ep.Owner, "user:"):
		e.UserID = strings.TrimPrefix(ep.Owner, "user:")
		if c.Accounts != nil {
			if acc, err := c.Accounts.GetAccount(ctx, e.UserID); err == nil && acc != nil {
				e.Email = acc.Email
			}
		}
	case strings.HasPrefix(ep.Owner, "org:"):
		e.Org = strings.TrimPrefix(ep.Owner, "org:")
		if c.Orgs != nil { // the org's notification e-mail (its settings), as for its key events
			if o, err := c.Orgs.GetOrg(ctx, e.Org, ""); err == nil {
				e.Email = o.Settings.Email
			}
		}
	}
	c.Log.Warn("webhook disabled after failing for days", "webhook_id", ep.ID, "owner", ep.Owner)
	if c.Events != nil {
		c.Events.Publish(ctx, e)
	}
}
