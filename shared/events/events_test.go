package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/events"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

// topicQueue is a real SNS topic on the emulator with an SQS queue
// subscribed to it (raw delivery: the body is the event JSON and the
// message attributes come through), and an SNS client to publish with.
type topicQueue struct {
	*awstest.Queue
	sns      *sns.Client
	topicARN string
}

func newTopicQueue(t *testing.T) *topicQueue {
	t.Helper()
	q := awstest.SubscribeQueue(t, awstest.Prefix(t)+"events")
	return &topicQueue{Queue: q, sns: sns.NewFromConfig(awstest.Config(t)), topicARN: q.TopicARN}
}

func (q *topicQueue) drain(t *testing.T) []awstest.Message { return q.Drain(t) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func sample(typ string) events.Event {
	return events.Event{Type: typ, UserID: "alice", Email: "alice@example.com", Provider: "openai",
		Hint: "sk-...abcdefg", Reason: "unauthorized", DetectedBy: events.BySchedule,
		At: time.Date(2026, 3, 1, 4, 5, 6, 0, time.UTC)}
}

func TestPublishReachesSubscribers(t *testing.T) {
	t.Parallel()
	q := newTopicQueue(t)
	logs := &syncBuffer{}
	pub := events.NewSNS(q.sns, q.topicARN, slog.New(slog.NewJSONHandler(logs, nil)))
	pub.Publish(context.Background(), sample(events.KeyInvalid)) // subject and text filled in by Publish
	msgs := q.drain(t)
	if len(msgs) != 1 {
		t.Fatalf("got %d messages, want 1: %+v", len(msgs), msgs)
	}
	if msgs[0].Type != events.KeyInvalid {
		t.Fatalf("event_type attribute = %q", msgs[0].Type)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(msgs[0].Body), &got); err != nil {
		t.Fatalf("body is not the event JSON: %v: %q", err, msgs[0].Body)
	}
	want := map[string]any{"event_type": events.KeyInvalid, "user_id": "alice", "email": "alice@example.com",
		"provider": "openai", "hint": "sk-...abcdefg", "reason": "unauthorized", "detected_by": "schedule",
		"at": "2026-03-01T04:05:06Z"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	wantSubj, wantText := events.Describe(sample(events.KeyInvalid))
	if got["subject"] != wantSubj || got["text"] != wantText {
		t.Errorf("subject/text = %q / %q, want Describe's", got["subject"], got["text"])
	}
	if strings.Contains(logs.String(), "publish failed") {
		t.Errorf("unexpected failure log: %s", logs.String())
	}
}

// flaky fails its first `failures` calls, then delegates to the real client.
type flaky struct {
	real     events.SNSAPI
	failures int32
	calls    atomic.Int32
}

func (f *flaky) Publish(ctx context.Context, in *sns.PublishInput, opts ...func(*sns.Options)) (*sns.PublishOutput, error) {
	if f.calls.Add(1) <= f.failures {
		return nil, errors.New("injected: service unavailable")
	}
	return f.real.Publish(ctx, in, opts...)
}

func TestPublishRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	q := newTopicQueue(t)
	logs := &syncBuffer{}
	f := &flaky{real: q.sns, failures: 2}
	events.NewSNS(f, q.topicARN, slog.New(slog.NewJSONHandler(logs, nil))).Publish(context.Background(), sample(events.KeyValid))
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("%d publish calls, want 3 (two failures, one success)", n)
	}
	msgs := q.drain(t)
	if len(msgs) != 1 || msgs[0].Type != events.KeyValid {
		t.Fatalf("got %+v, want one byok.key_valid", msgs)
	}
	if strings.Contains(logs.String(), "publish failed") {
		t.Errorf("a publish that succeeded on retry was logged as failed: %s", logs.String())
	}
}

func TestPublishGivesUpQuietly(t *testing.T) {
	t.Parallel()
	q := newTopicQueue(t)
	logs := &syncBuffer{}
	f := &flaky{real: q.sns, failures: 1 << 30}
	// A cancelled caller context must not stop the publish attempts either.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	events.NewSNS(f, q.topicARN, slog.New(slog.NewJSONHandler(logs, nil))).Publish(ctx, sample(events.Fallback))
	if n := f.calls.Load(); n != 3 {
		t.Fatalf("%d publish calls, want 3 tries", n)
	}
	if !strings.Contains(logs.String(), "event publish failed") || !strings.Contains(logs.String(), events.Fallback) {
		t.Fatalf("final failure not logged: %q", logs.String())
	}
	if msgs := q.drain(t); len(msgs) != 0 {
		t.Fatalf("unexpected messages %+v", msgs)
	}
}

func TestPublishToMissingTopicIsLogged(t *testing.T) {
	t.Parallel()
	q := newTopicQueue(t)
	logs := &syncBuffer{}
	missing := strings.TrimSuffix(q.topicARN, "events") + "no-such-topic"
	events.NewSNS(q.sns, missing, slog.New(slog.NewJSONHandler(logs, nil))).Publish(context.Background(), sample(events.KeyInvalid))
	if !strings.Contains(logs.String(), "event publish failed") {
		t.Fatalf("failure not logged: %q", logs.String())
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{events.KeyInvalid, events.KeyValid, events.Fallback, events.QuotaWarning} {
		e := sample(typ)
		subj, text := events.Describe(e)
		if subj == "" || text == "" || subj == typ || text == typ {
			t.Errorf("%s: subject %q text %q", typ, subj, text)
		}
		if len(subj) > 99 {
			t.Errorf("%s: subject longer than SNS allows: %q", typ, subj)
		}
		if typ != events.QuotaWarning && !strings.Contains(subj, "openai") {
			t.Errorf("%s: subject does not name the provider: %q", typ, subj)
		}
		if typ != events.QuotaWarning && !strings.Contains(text, e.Hint) {
			t.Errorf("%s: text does not carry the hint: %q", typ, text)
		}
	}
	_, text := events.Describe(sample(events.KeyInvalid))
	for _, want := range []string{"rejected as unauthorized", "during the daily check", "1 Mar 2026"} {
		if !strings.Contains(text, want) {
			t.Errorf("key_invalid text lacks %q: %q", want, text)
		}
	}
	for by, want := range map[string]string{events.BySave: "when you saved it", events.ByTest: "when you tested it", events.ByUse: "while serving"} {
		e := sample(events.KeyValid)
		e.DetectedBy = by
		if _, text := events.Describe(e); !strings.Contains(text, want) {
			t.Errorf("detected_by %s: text lacks %q: %q", by, want, text)
		}
	}
	if s, x := events.Describe(events.Event{Type: "byok.other"}); s != "byok.other" || x != "byok.other" {
		t.Errorf("unknown type: %q %q", s, x)
	}
}

// recording keeps every PublishInput and passes it on to the emulator.
type recording struct {
	real events.SNSAPI
	mu   sync.Mutex
	ins  []*sns.PublishInput
}

func (r *recording) Publish(ctx context.Context, in *sns.PublishInput, opts ...func(*sns.Options)) (*sns.PublishOutput, error) {
	r.mu.Lock()
	r.ins = append(r.ins, in)
	r.mu.Unlock()
	return r.real.Publish(ctx, in, opts...)
}

// TestPublishMessageStructure: e-mail subscribers get the readable text
// (with the subject), the queue gets the event JSON with an event id.
func TestPublishMessageStructure(t *testing.T) {
	t.Parallel()
	q := newTopicQueue(t)
	rec := &recording{real: q.sns}
	events.NewSNS(rec, q.topicARN, slog.New(slog.NewJSONHandler(&syncBuffer{}, nil))).Publish(context.Background(), sample(events.KeyInvalid))
	if len(rec.ins) != 1 {
		t.Fatalf("%d publishes", len(rec.ins))
	}
	in := rec.ins[0]
	if in.MessageStructure == nil || *in.MessageStructure != "json" {
		t.Fatalf("MessageStructure = %v, want json", in.MessageStructure)
	}
	var per map[string]string
	if err := json.Unmarshal([]byte(*in.Message), &per); err != nil {
		t.Fatalf("message is not a per-protocol JSON object: %v", err)
	}
	subj, text := events.Describe(sample(events.KeyInvalid))
	if per["email"] != text || *in.Subject != subj {
		t.Errorf("email = %q subject = %q, want %q / %q", per["email"], *in.Subject, text, subj)
	}
	msgs := q.drain(t)
	if len(msgs) != 1 || msgs[0].Body != per["default"] {
		t.Fatalf("queue got %+v, want the default JSON %q", msgs, per["default"])
	}
	var got events.Event
	if err := json.Unmarshal([]byte(msgs[0].Body), &got); err != nil || !strings.HasPrefix(got.ID, "evt_") || got.Type != events.KeyInvalid {
		t.Fatalf("queue body %q: %v", msgs[0].Body, err)
	}
}

func TestDescribeRateLimitWarning(t *testing.T) {
	t.Parallel()
	e := sample(events.QuotaWarning)
	e.Reason = "rate limit nearly reached: 42 of 10000 requests left in the current window"
	subj, text := events.Describe(e)
	if !strings.Contains(subj, "rate limit") || !strings.Contains(text, "42 of 10000 requests") || !strings.Contains(text, e.Hint) || strings.Contains(subj, "out of quota") {
		t.Fatalf("subject %q text %q", subj, text)
	}
}
