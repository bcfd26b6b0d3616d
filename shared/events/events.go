// Package events publishes byok's notifications (docs/api.md §13) to one SNS topic,
// with the event type in the `event_type` message attribute. A failed publish
// is retried, then logged; it never fails the caller.
package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/cenkalti/backoff/v5"
)

// Event types.
const (
	KeyInvalid   = "byok.key_invalid"
	KeyValid     = "byok.key_valid"
	Fallback     = "byok.fallback"
	QuotaWarning = "byok.quota_warning"
	// WebhookDisabled: one of the owner's webhook endpoints failed every
	// delivery for 3 days and was switched off (docs/webhooks.md).
	WebhookDisabled = "byok.webhook_disabled"
	// Test is sent only by POST /v1/webhooks/{id}/test, never published.
	Test = "byok.test"
)

// What detected a status change.
const (
	BySave     = "save"
	ByTest     = "test"
	ByUse      = "use"
	BySchedule = "schedule"
)

// Event is the JSON body of one notification. It carries a key's hint only,
// never the key.
type Event struct {
	// ID identifies the event; webhook deliveries use it as webhook-id, so a
	// receiver can drop a repeat. Publish fills it in when empty.
	ID       string `json:"event_id,omitempty"`
	Type     string `json:"event_type"`
	UserID   string `json:"user_id"`
	Email    string `json:"email"`
	Provider string `json:"provider"`
	// Scope is the key's scope (user, org, project); Org and Project name
	// the org and project of org and project keys (docs/teams.md). An event
	// naming an org goes to the org's webhooks instead of the user's.
	Scope   string `json:"scope,omitempty"`
	Org     string `json:"org,omitempty"`
	Project string `json:"project,omitempty"`
	// WebhookID names the endpoint of a byok.webhook_disabled event.
	WebhookID  string    `json:"webhook_id,omitempty"`
	Hint       string    `json:"hint"`
	Reason     string    `json:"reason"`
	DetectedBy string    `json:"detected_by"`
	At         time.Time `json:"at"`
	Subject    string    `json:"subject"`
	Text       string    `json:"text"`
}

// Publisher publishes events.
type Publisher interface {
	Publish(ctx context.Context, e Event)
}

// Nop drops every event (no topic configured).
type Nop struct{}

// Publish implements Publisher.
func (Nop) Publish(context.Context, Event) {}

// SNSAPI is the subset of *sns.Client used.
type SNSAPI interface {
	Publish(context.Context, *sns.PublishInput, ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// SNS publishes to one topic.
type SNS struct {
	client   SNSAPI
	topicARN string
	log      *slog.Logger
	maxTries uint
}

// NewSNS returns a publisher to topicARN.
func NewSNS(client SNSAPI, topicARN string, log *slog.Logger) *SNS {
	return &SNS{client: client, topicARN: topicARN, log: log, maxTries: 3}
}

// Publish sends e, retrying transient failures with backoff; a final failure
// is logged and swallowed.
func (p *SNS) Publish(ctx context.Context, e Event) {
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	if e.ID == "" {
		e.ID = NewID()
	}
	if e.Subject == "" || e.Text == "" {
		e.Subject, e.Text = Describe(e)
	}
	msg, err := Message(e)
	if err != nil {
		p.log.Error("event encode failed", "event_type", e.Type, "err", err.Error())
		return
	}
	in := &sns.PublishInput{
		TopicArn: aws.String(p.topicARN),
		// json structure: e-mail subscribers get the readable text, every
		// other protocol (the webhooks queue, HTTP) the event JSON.
		MessageStructure: aws.String("json"),
		Message:          aws.String(msg),
		Subject:          aws.String(trimSubject(e.Subject)),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"event_type": {DataType: aws.String("String"), StringValue: aws.String(e.Type)},
		},
	}
	// A publish must not outlive a cancelled request by much, nor die with it.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err = backoff.Retry(pctx, func() (*sns.PublishOutput, error) {
		return p.client.Publish(pctx, in)
	}, backoff.WithBackOff(backoff.NewExponentialBackOff()), backoff.WithMaxTries(p.maxTries))
	if err != nil {
		p.log.Error("event publish failed", "event_type", e.Type, "user_id", e.UserID, "provider", e.Provider, "err", err.Error())
	}
}

// Message returns the SNS message of e for MessageStructure json:
// {"default": <event JSON>, "email": <text>}.
func Message(e Event) (string, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	text := e.Text
	if text == "" {
		_, text = Describe(e)
	}
	out, err := json.Marshal(struct {
		Default string `json:"default"`
		Email   string `json:"email"`
	}{string(body), text})
	return string(out), err
}

// NewID returns a fresh event id ("evt_" and 32 hex digits).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "evt_" + hex.EncodeToString(b[:])
}

func trimSubject(s string) string {
	if len(s) > 99 {
		return s[:99]
	}
	return s
}

// Describe returns an email subject and text for e.
func Describe(e Event) (subject, text string) {
	key := fmt.Sprintf("%s %s API key (%s)", keyOwner(e), e.Provider, e.Hint)
	switch e.Type {
	case KeyInvalid:
		return fmt.Sprintf("Action required: %s %s API key stopped working", keyOwner(e), e.Provider),
			fmt.Sprintf("We checked %s on %s (%s) and the provider refused it: %s. Until you fix it, requests for %s models use platform credits or fail, depending on your routing mode. Replace or re-test the key under Settings → API Keys.",
				key, e.At.Format("2 Jan 2006 15:04 MST"), detectedText(e.DetectedBy), reasonText(e.Reason), e.Provider)
	case KeyValid:
		return fmt.Sprintf("%s %s API key works again", upperFirst(keyOwner(e)), e.Provider),
			fmt.Sprintf("We checked %s on %s (%s) and it works again. Requests for %s models use it from now on.",
				key, e.At.Format("2 Jan 2006 15:04 MST"), detectedText(e.DetectedBy), e.Provider)
	case Fallback:
		if orgKey(e) { // the org's mailbox: say whose request it was
			return fmt.Sprintf("Requests with %s %s API key fell back to platform credits", keyOwner(e), e.Provider),
				fmt.Sprintf("A request of member %s with %s failed (%s), so it was served with the member's platform credits instead.", e.UserID, key, e.Reason)
		}
		return fmt.Sprintf("Your %s requests fell back to platform credits", e.Provider),
			fmt.Sprintf("A request with %s failed (%s), so it was served with platform credits instead.", key, e.Reason)
	case QuotaWarning:
		if strings.HasPrefix(e.Reason, "rate limit nearly reached") { // the provider's own rate-limit headers
			return fmt.Sprintf("%s %s API key is close to its rate limit", upperFirst(keyOwner(e)), e.Provider),
				fmt.Sprintf("The %s answers for %s say its %s. Requests beyond the limit will be refused by %s until the window resets; raise the limit in the %s account or spread requests out.",
					e.Provider, key, e.Reason, e.Provider, e.Provider)
		}
		if e.Hint == "" { // the platform credit balance, not a key
			return "Your platform credits are running low",
				fmt.Sprintf("Your platform credits are running low: %s. Add credits, or add your own API keys to keep working without them.", e.Reason)
		}
		return fmt.Sprintf("%s %s account is out of quota", upperFirst(keyOwner(e)), e.Provider),
			fmt.Sprintf("%s was refused for quota or billing reasons: %s. Add funds or raise the limit in the %s account; meanwhile requests may use platform credits.",
				upperFirst(key), e.Reason, e.Provider)
	case WebhookDisabled:
		return "A webhook endpoint was disabled",
			fmt.Sprintf("Your webhook endpoint %s (%s) failed every delivery for 3 days, so we stopped sending to it: %s. Fix the endpoint, then delete it and register it again under /v1/webhooks.",
				e.WebhookID, e.Hint, e.Reason)
	case Test:
		return "byok webhook test", "This is a test event sent from byok to check your webhook endpoint."
	}
	return e.Type, e.Type
}

// orgKey reports whether e is about an org's or a project's key.
func orgKey(e Event) bool { return e.Scope == "org" || e.Scope == "project" }

// keyOwner names whose key an event is about.
func keyOwner(e Event) string {
	switch e.Scope {
	case "org":
		return fmt.Sprintf("organisation %s's", e.Org)
	case "project":
		return fmt.Sprintf("project %s (organisation %s)'s", e.Project, e.Org)
	}
	return "your"
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func detectedText(by string) string {
	switch by {
	case BySave:
		return "when you saved it"
	case ByTest:
		return "when you tested it"
	case ByUse:
		return "while serving one of your requests"
	case BySchedule:
		return "during the daily check"
	}
	return by
}

func reasonText(r string) string {
	switch r {
	case "unauthorized":
		return "the key was rejected as unauthorized (revoked or mistyped)"
	case "forbidden":
		return "the key is not allowed to use the API (permissions or region)"
	case "no_billing":
		return "the provider account has no billing set up or no credit left"
	case "quota_exceeded":
		return "the provider account's quota is exhausted"
	}
	return r
}
