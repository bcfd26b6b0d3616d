package webhooks

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/vault"
)

// Sealer seals and opens secrets (*vault.Vault satisfies it).
type Sealer interface {
	Seal(ctx context.Context, ec vault.Context, plaintext []byte) ([]byte, error)
	Opener
}

// Service is the registration API served by the keys function.
type Service struct {
	Store  *Store
	Sealer Sealer
	Guard  *Guard
	Sender *Sender
	Now    func() time.Time
	Log    *slog.Logger
}

// maxBody bounds a registration body: a URL and a few event names.
const maxBody = 16 << 10

// The owners' route prefixes: a user's own endpoints and an org's. The
// handlers are the same; the path names the owner (docs/webhooks.md).
var ownerPrefixes = []string{"/v1", "/v1/orgs/{org}"}

// Register adds the webhook routes to mux.
func (s *Service) Register(mux httpx.Router) {
	for _, pre := range ownerPrefixes {
		mux.HandleFunc("POST "+pre+"/webhooks", s.handleCreate)
		mux.HandleFunc("GET "+pre+"/webhooks", s.handleList)
		mux.HandleFunc("PATCH "+pre+"/webhooks/{id}", s.handlePatch)
		mux.HandleFunc("DELETE "+pre+"/webhooks/{id}", s.handleDelete)
		mux.HandleFunc("POST "+pre+"/webhooks/{id}/test", s.handleTest)
		mux.HandleFunc("GET "+pre+"/webhooks/{id}/deliveries", s.handleDeliveries)
	}
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// owner returns whose endpoints the path names, writing the error when the
// caller may not manage them: their own always; an org's only with a token
// whose org claim names that org and whose org_role is owner or admin (403
// otherwise). Ids are looked up under the owner, so another owner's id is 404.
func owner(w http.ResponseWriter, r *http.Request) (string, auth.Principal, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok || p.UserID == "" {
		httpx.WriteError(w, r, apperr.New(apperr.Unauthorized, "missing credentials"))
		return "", p, false
	}
	org := r.PathValue("org")
	if org == "" {
		return UserOwner(p.UserID), p, true
	}
	var err error
	switch {
	case !auth.ValidOrgID(org):
		err = apperr.New(apperr.InvalidRequest, "org ids are 1..%d printable characters without space, '#' or '/'", auth.MaxOrgIDLen)
	case p.Org != org:
		err = apperr.New(apperr.Forbidden, "your token is not for organisation %q; an org's webhooks are managed with a token whose org claim names the org", clip(org, 40))
	case !p.OrgAdmin(org):
		err = apperr.New(apperr.Forbidden, "managing organisation %q's webhooks needs org_role owner or admin; yours is %s", org, p.OrgRole)
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return "", p, false
	}
	return OrgOwner(org), p, true
}

// ownerAndID is owner and endpointID for the routes on one endpoint.
func ownerAndID(w http.ResponseWriter, r *http.Request) (string, auth.Principal, string, bool) {
	own, p, ok := owner(w, r)
	if !ok {
		return "", p, "", false
	}
	id, ok := endpointID(w, r)
	return own, p, id, ok
}

// endpointID reads {id}, refusing what cannot be an id.
func endpointID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if !ValidID(id) {
		httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "%q is not a webhook id (wh_ and 24 hex digits)", clip(id, 40)))
		return "", false
	}
	return id, true
}

type createRequest struct {
	URL    *string  `json:"url"`
	Events []string `json:"events"`
}

// Create registers an endpoint for owner and returns it with its secret.
func (s *Service) Create(ctx context.Context, own, rawURL string, evs []string) (Created, error) {
	u, err := s.Guard.CheckURL(ctx, rawURL)
	if err != nil {
		return Created{}, err
	}
	evs, err = ParseEvents(evs)
	if err != nil {
		return Created{}, err
	}
	id, secret := NewID(), NewSecret()
	ct, err := s.Sealer.Seal(ctx, vault.Context{UserID: own, Provider: SecretProvider, KeyID: id}, []byte(secret))
	if err != nil {
		return Created{}, err
	}
	e := Endpoint{Owner: own, ID: id, URL: u.String(), Events: evs, Ciphertext: ct, Hint: SecretHint(secret),
		Status: StatusActive, CreatedAt: s.now().UTC().Truncate(time.Millisecond)}
	if err := s.Store.Create(ctx, e, MaxPerOwner); err != nil {
		return Created{}, err
	}
	return Created{View: ViewOf(e), Secret: secret}, nil
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) {
	own, _, ok := owner(w, r)
	if !ok {
		return
	}
	var req createRequest
	if err := httpx.DecodeJSON(w, r, maxBody, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	if req.URL == nil {
		httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "field \"url\" is required"))
		return
	}
	out, err := s.Create(r.Context(), own, *req.URL, req.Events)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store") // the secret is in this answer
	httpx.WriteJSON(w, http.StatusCreated, out)
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	own, _, ok := owner(w, r)
	if !ok {
		return
	}
	eps, err := s.Store.List(r.Context(), own)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	out := make([]View, 0, len(eps))
	for _, e := range eps {
		out = append(out, ViewOf(e))
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"webhooks": out})
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) {
	own, _, id, ok := ownerAndID(w, r)
	if !ok {
		return
	}
	if err := s.Store.Delete(r.Context(), own, id); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Test sends a byok.test event to the owner's endpoint id now and returns
// the recorded attempt.
func (s *Service) Test(ctx context.Context, own, userID, id string) (Attempt, error) {
	ep, err := s.Store.Get(ctx, own, id)
	if err != nil {
		return Attempt{}, err
	}
	secret, err := s.Sealer.Open(ctx, vault.Context{UserID: ep.Owner, Provider: SecretProvider, KeyID: ep.ID}, ep.Ciphertext)
	if err != nil {
		return Attempt{}, err
	}
	now := s.now().UTC()
	ev := events.Event{ID: events.NewID(), Type: events.Test, UserID: userID, At: now}
	if org, ok := strings.CutPrefix(own, "org:"); ok {
		ev.Org = org // the receiver sees whose endpoint this is, as in key events
	}
	ev.Subject, ev.Text = events.Describe(ev)
	res, err := s.Sender.Send(ctx, ep.URL, string(secret), ev.ID, mustJSON(ev))
	clear(secret)
	if err != nil {
		return Attempt{}, apperr.Wrap(err, apperr.ServiceUnavailable, "the test delivery was interrupted; try again")
	}
	a := Attempt{At: now, WebhookID: ep.ID, EventID: ev.ID, EventType: ev.Type, Attempt: 1, HTTPStatus: res.HTTPStatus,
		Error: res.Error, LatencyMS: res.Latency.Milliseconds(), Result: ResultFailed}
	if res.OK {
		a.Result = ResultDelivered
	}
	if err := s.Store.RecordAttempt(ctx, a); err != nil {
		return Attempt{}, err
	}
	return a, nil
}

func (s *Service) handleTest(w http.ResponseWriter, r *http.Request) {
	own, p, id, ok := ownerAndID(w, r)
	if !ok {
		return
	}
	a, err := s.Test(r.Context(), own, p.UserID, id)
	httpx.Respond(w, r, http.StatusOK, a, err)
}

// Deliveries are bounded: the newest 50 by default, at most 100.
const (
	defaultDeliveries = 50
	maxDeliveries     = 100
)

func (s *Service) handleDeliveries(w http.ResponseWriter, r *http.Request) {
	own, _, id, ok := ownerAndID(w, r)
	if !ok {
		return
	}
	limit := defaultDeliveries
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxDeliveries {
			httpx.WriteError(w, r, apperr.New(apperr.InvalidRequest, "limit must be a whole number from 1 to %d", maxDeliveries))
			return
		}
		limit = n
	}
	if _, err := s.Store.Get(r.Context(), own, id); err != nil { // another owner's id: 404
		httpx.WriteError(w, r, err)
		return
	}
	as, err := s.Store.Attempts(r.Context(), id, limit)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"deliveries": as})
}

// patchRequest changes an endpoint; absent fields stay as they are.
type patchRequest struct {
	Enabled *bool     `json:"enabled"`
	URL     *string   `json:"url"`
	Events  *[]string `json:"events"`
}

// Update applies ch to the owner's endpoint id and returns it as stored.
// The URL and events are checked as on registration.
func (s *Service) Update(ctx context.Context, own, id string, ch Change) (View, error) {
	if ch.Enabled == nil && ch.URL == nil && ch.Events == nil {
		return View{}, apperr.New(apperr.InvalidRequest, "nothing to change: send \"enabled\", \"url\" or \"events\"")
	}
	if ch.URL != nil {
		u, err := s.Guard.CheckURL(ctx, *ch.URL)
		if err != nil {
			return View{}, err
		}
		clean := u.String()
		ch.URL = &clean
	}
	if ch.Events != nil {
		evs, err := ParseEvents(ch.Events)
		if err != nil {
			return View{}, err
		}
		ch.Events = evs
	}
	e, err := s.Store.Update(ctx, own, id, ch, s.now())
	if err != nil {
		return View{}, err
	}
	return ViewOf(e), nil
}

func (s *Service) handlePatch(w http.ResponseWriter, r *http.Request) {
	own, _, id, ok := ownerAndID(w, r)
	if !ok {
		return
	}
	var req patchRequest
	if err := httpx.DecodeJSON(w, r, maxBody, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	ch := Change{Enabled: req.Enabled, URL: req.URL}
	if req.Events != nil {
		ch.Events = *req.Events
		if ch.Events == nil {
			ch.Events = []string{} // present but empty: refused by ParseEvents
		}
	}
	v, err := s.Update(r.Context(), own, id, ch)
	httpx.Respond(w, r, http.StatusOK, v, err)
}
