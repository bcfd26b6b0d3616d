// Package webhooks delivers byok's events to endpoints their owners register
// (docs/webhooks.md): the registration store and HTTP handlers, a consumer
// of the events queue that signs per the Standard Webhooks specification and
// retries on its schedule, and a client guarded against server-side request
// forgery. Domain code only publishes events; nothing else calls endpoints.
package webhooks

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/events"
)

// AllEvents subscribes an endpoint to every event type, present and future.
const AllEvents = "*"

// EventTypes are the event types an endpoint may subscribe to.
var EventTypes = []string{events.KeyInvalid, events.KeyValid, events.Fallback, events.QuotaWarning, events.WebhookDisabled}

// MaxPerOwner is how many endpoints one user or org may register.
const MaxPerOwner = 10

// SecretProvider is the vault "provider" a signing secret is sealed under;
// with the owner and the webhook id it binds the ciphertext to its row.
const SecretProvider = "webhook"

// UserOwner and OrgOwner name an endpoint's owner as data, so org webhooks
// are just another owner.
func UserOwner(userID string) string { return "user:" + userID }

// OrgOwner is the owner of an org's endpoints.
func OrgOwner(orgID string) string { return "org:" + orgID }

// OwnerOf returns whose endpoints receive e: the org's when it names one,
// else the user's.
func OwnerOf(e events.Event) string {
	if e.Org != "" {
		return OrgOwner(e.Org)
	}
	return UserOwner(e.UserID)
}

// ParseEvents validates a subscription list: non-empty, known types or "*",
// no repeats.
func ParseEvents(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, apperr.New(apperr.InvalidRequest, "field \"events\" is required: a list of event types, or [\"*\"] for all (%s)", strings.Join(EventTypes, ", "))
	}
	out := make([]string, 0, len(in))
	for _, t := range in {
		switch {
		case t == events.Test:
			return nil, apperr.New(apperr.InvalidRequest, "byok.test is not subscribable; POST /v1/webhooks/{id}/test sends it to one endpoint")
		case t != AllEvents && !slices.Contains(EventTypes, t):
			return nil, apperr.New(apperr.InvalidRequest, "unknown event type %q; known: %s, or \"*\" for all", clip(t, 40), strings.Join(EventTypes, ", "))
		case slices.Contains(out, t):
			return nil, apperr.New(apperr.InvalidRequest, "event type %q is listed twice", t)
		}
		out = append(out, t)
	}
	if slices.Contains(out, AllEvents) && len(out) > 1 {
		return nil, apperr.New(apperr.InvalidRequest, "\"*\" already means every event type; list it alone")
	}
	return out, nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// NewSecret returns a Standard Webhooks signing secret: "whsec_" and the
// base64 of 32 random bytes.
func NewSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "whsec_" + base64.StdEncoding.EncodeToString(b[:])
}

// SecretHint is the only part of a secret ever shown after creation.
func SecretHint(secret string) string {
	if len(secret) < 10 {
		return "whsec_..."
	}
	return "whsec_..." + secret[len(secret)-4:]
}

// NewID returns a webhook id ("wh_" and 24 hex digits).
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "wh_" + hex.EncodeToString(b[:])
}

// ValidID reports whether s looks like an id NewID made.
func ValidID(s string) bool {
	if len(s) != 27 || !strings.HasPrefix(s, "wh_") {
		return false
	}
	_, err := hex.DecodeString(s[3:])
	return err == nil
}

// View is an endpoint as the API shows it: never the secret, its hint only.
type View struct {
	ID         string     `json:"id"`
	URL        string     `json:"url"`
	Events     []string   `json:"events"`
	SecretHint string     `json:"secret_hint"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
}

// ViewOf returns e's public view.
func ViewOf(e Endpoint) View {
	return View{ID: e.ID, URL: e.URL, Events: e.Events, SecretHint: e.Hint, Status: e.Status, CreatedAt: e.CreatedAt, DisabledAt: e.DisabledAt}
}

// Created is the answer to a registration: the view plus the secret, shown
// this once.
type Created struct {
	View
	Secret string `json:"secret"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are passed
	}
	return b
}
