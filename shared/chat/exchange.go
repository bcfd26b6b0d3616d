package chat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/credits"
	"github.com/synthstack/byok/shared/events"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/provider/schema"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/usage"
)

// Response headers (docs/api.md §8).
const (
	HeaderRoute    = "X-Byok-Route"
	HeaderFallback = "X-Byok-Fallback"
)

// call is one AI request being served.
type call struct {
	x        *Executor
	w        http.ResponseWriter
	r        *http.Request
	start    time.Time
	userID   string
	endpoint string
	req      *apiRequest
	prov     provider.Name
	set      routing.Settings
	user     store.User
	key      *store.KeyRecord
	in       routing.Input
	ledgerID string
	fallback string
	cands    []store.KeyRecord // the keys the BYOK route walks, in order (pickKeys)
	org      *store.Org        // the org the token names, read for its keys (nil when none)
	usedKeys []string          // every key sent upstream for this request (scrubbed from what we relay)
	// onFirstByte runs when a stream's first byte goes to the client.
	onFirstByte func()

	// The neutral request an adapter provider was sent (native.go).
	nChat  *schema.ChatRequest
	nEmbed *schema.EmbeddingRequest
}

// serve runs the routing plan for c and writes the answer.
func (c *call) serve(ctx context.Context) error {
	plan := routing.Decide(c.in)
	if plan.First == routing.RouteNone {
		route := routing.RouteCredits
		if plan.Refuse == routing.RefuseBYOKRequired {
			route = routing.RouteBYOK
		}
		c.w.Header().Set(HeaderRoute, string(route))
		return refusal(plan.Refuse, c.prov)
	}
	c.fallback = plan.Skipped
	route := plan.First
	tried := map[routing.Route]bool{}
	for {
		tried[route] = true
		var next routing.Next
		var err error
		switch route {
		case routing.RouteBYOK:
			next, err = c.viaBYOK(ctx)
		case routing.RouteCredits:
			next, err = c.viaCredits(ctx)
		}
		if err != nil || next.Route == routing.RouteNone {
			return err
		}
		if tried[next.Route] {
			// Each route is tried at most once per request.
			return errNoCredits
		}
		route = next.Route
	}
}

func (c *call) setRouteHeaders(route routing.Route) {
	h := c.w.Header()
	h.Set(HeaderRoute, string(route))
	if route != routing.RouteBYOK {
		c.setKeyHeaders(nil)
	}
	if c.fallback != "" {
		h.Set(HeaderFallback, c.fallback)
	} else {
		h.Del(HeaderFallback)
	}
}

func (c *call) record(route routing.Route, model string, out *outcome) usage.Record {
	rec := usage.Record{
		RequestID: httpx.RequestID(c.r.Context()), UserID: c.userID, At: c.start.UTC(), Route: string(route),
		Endpoint: c.endpoint, Provider: string(c.prov), Model: model, Stream: c.req.Stream,
		InputTokens: out.usage.input, OutputTokens: out.usage.output, CacheReadTokens: out.usage.cacheRead,
		Status: out.clientStatus(), LatencyMS: ms(time.Since(c.start)), FallbackReason: c.fallback, Cut: out.cut,
	}
	if route == routing.RouteBYOK && c.key != nil {
		rec.Org, rec.Project, rec.KeyScope, rec.KeyID = c.key.Org, c.key.Project, c.key.Scope(), c.key.KeyID
		if rec.KeyScope != store.ScopeUser {
			// An org key serves every project: the org's chargeback groups by
			// the project the token named (docs/teams.md).
			if p, ok := auth.FromContext(c.r.Context()); ok {
				rec.ForProject = p.Project
			}
		}
	}
	if out.ttft > 0 {
		rec.TTFTMS = ms(out.ttft)
	}
	if out.usage.input == 0 && (out.cut || out.canceled) && out.bytesSent {
		rec.InputTokens, _ = credits.EstimateTokens(len(c.req.Body), 0)
		out.usage.input = rec.InputTokens
	}
	if !out.ok {
		rec.ErrorClass = string(out.class)
		if out.canceled {
			rec.ErrorClass = "client_cancelled"
		}
	}
	rec.CostUSD = c.x.Prices.CostUSD(model, rec.InputTokens, rec.OutputTokens)
	return rec
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// viaBYOK serves the request with the caller's keys, walking c.cands in
// order (docs/teams.md): a fallback-class failure or a provider rate limit
// moves to the next key before the routing table decides; each try is one
// usage row.
func (c *call) viaBYOK(ctx context.Context) (routing.Next, error) {
	x := c.x
	c.setRouteHeaders(routing.RouteBYOK)
	if len(c.cands) == 0 {
		return routing.Next{}, errNoCredits
	}
	for i := range c.cands {
		k := &c.cands[i]
		c.key = k
		circ := keyCircuit(c.prov, *k)
		c.setKeyHeaders(k)
		plain, err := x.Keys.Open(ctx, keys.VaultContext(*k), k.Ciphertext)
		if err != nil {
			x.Circuit.Done(c.userID, circ) // a probe that never ran must not hold the circuit
			c.releaseProbes(i + 1)
			return routing.Next{}, err // fail closed: no upstream call
		}
		out := c.attempt(ctx, string(plain))
		clear(plain)
		after, cancel := x.detached(ctx)
		rec := c.record(routing.RouteBYOK, c.req.UpstreamModel, out)
		rec.Try = i
		c.putTry(after, rec, *k, out)
		switch {
		case out.canceled:
			x.Circuit.Done(c.userID, circ)
		case out.class == routing.FailUnavailable:
			x.Circuit.Failure(c.userID, circ)
		default:
			x.Circuit.Success(c.userID, circ)
		}
		if out.canceled || out.ok {
			if out.ok && out.rateLow != "" { // at most once per key per hour
				c.publishOnce(after, events.QuotaWarning, "ratelimit#"+c.throttleKey(*k), time.Hour, out.rateLow, k)
			}
			cancel()
			c.releaseProbes(i + 1)
			return routing.Next{}, nil
		}
		reason := reasonOf(out.class, out.status, out.timedOut)
		c.onBYOKFailure(after, out, reason)
		if !lastTry(i, len(c.cands), out) {
			cancel()
			continue
		}
		c.releaseProbes(i + 1)
		next, err := c.afterLastKey(after, out, reason)
		cancel()
		return next, err
	}
	return routing.Next{}, nil
}

// afterLastKey applies the routing table (docs/api.md §8) to the failure of the
// last key tried.
func (c *call) afterLastKey(after context.Context, out *outcome, reason string) (routing.Next, error) {
	next := routing.AfterBYOK(c.in, out.class, out.bytesSent)
	switch {
	case next.Route == routing.RouteCredits:
		c.fallback = reason
		c.notifyFallback(after, reason)
		return next, nil
	case next.Refuse != "":
		return routing.Next{}, errBYOKFailed(c.prov, reason)
	}
	if out.bytesSent {
		return routing.Next{}, nil // a stream cut after its first byte: nothing more to say
	}
	return routing.Next{}, c.passThrough(out)
}

// usageAttempts bounds putUsage's tries within one request.
const usageAttempts = 3

// putUsage stores a BYOK usage row after the answer, retrying a failed
// write within ctx's deadline: the row's key is the request's own, so a
// retry after an unknown outcome rewrites the same row. A write that still
// fails is logged.
func (c *call) putUsage(ctx context.Context, rec usage.Record) {
	var err error
	for i := range usageAttempts {
		if i > 0 {
			t := time.NewTimer(time.Duration(i) * 100 * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if err = c.x.Usage.Put(ctx, rec); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		httpx.Logger(ctx, c.x.Log).Error("usage write failed", "err", err.Error(), "attempts", usageAttempts)
	}
}

// onBYOKFailure marks a key invalid on 401/403 and warns on the user's own
// quota running out; ctx is detached from the client (Executor.detached).
func (c *call) onBYOKFailure(ctx context.Context, out *outcome, reason string) {
	x := c.x
	bg := ctx
	switch out.class {
	case routing.FailAuth:
		if c.key.Scope() != store.ScopeUser {
			bg = keys.WithActor(bg, c.userID) // the org's event names the member
		}
		_, err := x.KeyRecorder.Record(bg, c.user.Account, *c.key, provider.Result{
			Status: provider.StatusInvalid, Reason: keyReason(out.class, out.status), HTTPStatus: out.status, Detail: out.detail,
		}, events.ByUse)
		if err != nil {
			httpx.Logger(ctx, x.Log).Error("marking key invalid failed", "err", err.Error())
		}
	case routing.FailBilling:
		if c.key.Scope() != store.ScopeUser { // the org's mailbox: once per key per hour
			c.publishOnce(bg, events.QuotaWarning, "quota#"+c.throttleKey(*c.key), time.Hour, "the "+string(c.prov)+" account of this key reports its quota or billing exhausted", c.key)
			return
		}
		c.publishOnce(bg, events.QuotaWarning, "quota#"+c.userID+"#"+string(c.prov), 24*time.Hour, "your "+string(c.prov)+" account reports its quota or billing exhausted", c.key)
	}
}

// notifyFallback tells about a request that fell back to credits after the
// last key tried (c.key) failed: the member about their own key, the org
// about its key, at most once per key per hour.
func (c *call) notifyFallback(ctx context.Context, reason string) {
	if c.key != nil && c.key.Scope() != store.ScopeUser {
		c.publishOnce(ctx, events.Fallback, "fallback#"+c.throttleKey(*c.key), time.Hour, reason, c.key)
		return
	}
	c.publishOnce(ctx, events.Fallback, "fallback#"+c.userID+"#"+string(c.prov), time.Hour, reason, c.key)
}

// throttleKey names k for the once-per-window markers: a personal key per
// user, an org's or project's key once for every member (the org gets one
// notice, not one per member).
func (c *call) throttleKey(k store.KeyRecord) string {
	if k.Scope() == store.ScopeUser {
		return c.userID + "#" + string(c.prov) + "#" + k.KeyID
	}
	return k.Scope() + "#" + k.Org + "#" + k.Project + "#" + string(c.prov) + "#" + k.KeyID
}

// publishOnce publishes one event about k (nil: about no key, e.g. the
// credit balance) unless key was already used within window. An org's or
// project's key's event names its scope, org and project and goes to the
// org's e-mail (docs/teams.md), read with the org's keys for this request.
func (c *call) publishOnce(ctx context.Context, typ, key string, window time.Duration, reason string, k *store.KeyRecord) {
	x := c.x
	if x.Events == nil || x.Once == nil {
		return
	}
	ok, err := x.Once.Once(ctx, key, window, x.now())
	if err != nil || !ok {
		return
	}
	e := events.Event{Type: typ, UserID: c.userID, Provider: string(c.prov), Reason: reason, DetectedBy: events.ByUse, At: x.now().UTC()}
	if c.user.Account != nil {
		e.Email = c.user.Account.Email
	}
	if k != nil {
		e.Hint, e.Scope = k.Hint, k.Scope()
		if e.Scope != store.ScopeUser {
			e.Org, e.Project, e.Email = k.Org, k.Project, ""
			if c.org != nil {
				e.Email = c.org.Settings.Email
			}
		}
	}
	e.Subject, e.Text = events.Describe(e)
	x.Events.Publish(ctx, e)
}

// viaCredits serves the request with the platform's key, paid in credits.
func (c *call) viaCredits(ctx context.Context) (routing.Next, error) {
	x := c.x
	c.setRouteHeaders(routing.RouteCredits)
	key := x.InternalKeys[c.prov]
	if key == "" {
		// No platform key for this provider (never one for Azure OpenAI:
		// deployments are the user's own resource): say what to do.
		if c.fallback != "" {
			return routing.Next{}, apperr.New(apperr.ServiceUnavailable,
				"your %s key failed (%s) and platform credits do not cover %s models; check the key under Settings → API Keys", c.prov, c.fallback, c.prov)
		}
		return routing.Next{}, apperr.New(apperr.ServiceUnavailable,
			"platform credits do not cover %s models here; they are served with your own %s key (Settings → API Keys)", c.prov, c.prov)
	}
	estIn, estOut := c.estimate()
	reserved := x.Prices.Credits(c.req.UpstreamModel, estIn, estOut)
	// A balance that cannot cover the reservation means credits ran out:
	// decide before the tier limits, which never apply to the BYOK route.
	if c.user.Account == nil || c.user.Account.CreditBalance < reserved {
		if next := routing.AfterCreditsRefused(c.in); next.Route == routing.RouteBYOK {
			c.fallback = "credits_exhausted"
			return next, nil
		}
		// Refused before any upstream call: the platform never delivers
		// more than the balance can pay for.
		var bal int64
		if c.user.Account != nil {
			bal = c.user.Account.CreditBalance
		}
		if bal > 0 {
			return routing.Next{}, apperr.New(apperr.PaymentRequired,
				"this request may cost up to %d credits (%d output tokens × %d choices plus the input) and your balance is %d: lower max_tokens or n, or add credits", reserved, estOut/max(c.req.Choices, 1), max(c.req.Choices, 1), bal)
		}
		return routing.Next{}, errNoCredits
	}
	tier := tierOf(c.user.Account)
	ticket, err := x.Limiter.Admit(ctx, c.userID, c.set.TierLimits[tier], estIn+estOut)
	if err != nil {
		return routing.Next{}, err
	}
	defer func() {
		rctx, cancel := x.detached(ctx)
		defer cancel()
		ticket.Release(rctx)
	}()
	// Reserve, settle and release never die with the client's connection: a
	// reservation committed just as the client left must still be finished.
	// Each runs detached from the client but within DetachedTimeout.
	bg, cancelReserve := x.detached(ctx)
	err = x.Ledger.Reserve(bg, c.userID, c.ledgerID, reserved)
	cancelReserve()
	if err != nil {
		if !isDuplicate(err) && !apperr.Is(err, apperr.PaymentRequired) {
			// The outcome is unknown (storage failed mid-call): release, which
			// is idempotent and does nothing if nothing was reserved.
			rctx, cancel := x.detached(ctx)
			_ = x.Ledger.Release(rctx, c.userID, c.ledgerID, reserved, nil)
			cancel()
		}
		switch {
		case isDuplicate(err):
			return routing.Next{}, apperr.New(apperr.Conflict, "this Idempotency-Key was already used for a request that was charged")
		case apperr.Is(err, apperr.PaymentRequired):
			next := routing.AfterCreditsRefused(c.in)
			if next.Route == routing.RouteBYOK {
				c.fallback = "credits_exhausted"
				return next, nil
			}
			return routing.Next{}, err
		}
		return routing.Next{}, err
	}
	finished := false
	defer func() {
		if !finished { // a panic between reserve and settle: give the credits back
			rctx, cancel := x.detached(ctx)
			defer cancel()
			_ = x.Ledger.Release(rctx, c.userID, c.ledgerID, reserved, nil)
		}
	}()
	// What was reserved is what is sent: a request with no output cap gets
	// the default cap it was reserved for (the BYOK route sends it as written).
	c.req.SendCap = credits.DefaultMaxOutputTokens
	// A stream marks its reservation delivered at its first byte, off the
	// answer's path: if this invocation dies mid-stream, the daily sweep
	// charges the reservation instead of refunding a delivered answer
	// (docs/api.md §9). Settle waits for the mark so the two never race.
	marked := make(chan struct{})
	var markOnce sync.Once
	c.onFirstByte = func() {
		markOnce.Do(func() {
			go func() {
				defer close(marked)
				mctx, cancel := x.detached(ctx)
				defer cancel()
				if err := x.Ledger.MarkDelivered(mctx, c.userID, c.ledgerID); err != nil {
					httpx.Logger(ctx, x.Log).Warn("could not mark the credit reservation delivered", "err", err.Error())
				}
			}()
		})
	}
	out := c.attempt(ctx, key)
	c.req.SendCap, c.onFirstByte = 0, nil
	markOnce.Do(func() { close(marked) }) // no stream byte: nothing to mark
	<-marked
	finished = true
	bg, cancel := x.detached(ctx)
	defer cancel()
	rec := c.record(routing.RouteCredits, c.req.UpstreamModel, out)
	if out.ok || out.bytesSent { // charge what was delivered, a cut or abandoned stream too
		actual := x.Prices.CreditsWithCache(c.req.UpstreamModel, out.usage.input, out.usage.cacheRead, out.usage.output)
		if c.req.Op == opTranscription && out.usage.input == 0 {
			actual = reserved // the answer reported no duration: charge the estimate
		}
		rec.Credits = actual
		charged, err := x.Ledger.Settle(bg, c.userID, c.ledgerID, reserved, actual, rec.Meta())
		if err != nil {
			httpx.Logger(ctx, x.Log).Error("credit settle failed; the ledger logged what became of the reservation", "err", err.Error(), "reserved", reserved)
		}
		if err := x.Limiter.AddTokens(bg, c.userID, out.usage.input+out.usage.output); err != nil {
			httpx.Logger(ctx, x.Log).Error("token count failed", "err", err.Error())
		}
		if out.canceled {
			return routing.Next{}, nil
		}
		if a := c.user.Account; a != nil && a.LastGrant > 0 && (a.CreditBalance-charged)*10 < a.LastGrant {
			c.publishOnce(bg, events.QuotaWarning, "credits#"+c.userID, 24*time.Hour,
				fmt.Sprintf("your platform credit balance is below 10%% of your last grant (%d left)", max(a.CreditBalance-charged, 0)), nil)
		}
		return routing.Next{}, nil
	}
	if err := x.Ledger.Release(bg, c.userID, c.ledgerID, reserved, rec.Meta()); err != nil {
		httpx.Logger(ctx, x.Log).Error("credit release failed", "err", err.Error(), "reserved", reserved)
	}
	if out.canceled {
		return routing.Next{}, nil
	}
	if out.class == routing.FailRequest {
		return routing.Next{}, c.passThrough(out)
	}
	if out.class == routing.FailRateLimit {
		return routing.Next{}, &apperr.Error{Code: apperr.RateLimited, RetryAfter: retryAfter(out.retryAfter, 1),
			Message: "the platform's " + string(c.prov) + " capacity is busy; retry shortly"}
	}
	return routing.Next{}, apperr.New(apperr.ProviderError, "the %s provider failed (%s); you were not charged", c.prov, reasonOf(out.class, out.status, out.timedOut))
}

// estimate returns the tokens a request may use, for the reservation and the
// tokens/day check: input size plus the output cap times the choices. Transcription is priced per second of audio: the
// estimate assumes a low 16 kbit/s bitrate (2,000 bytes per second) so long
// files are not refused for want of credits they would never use.
func (c *call) estimate() (in, out int64) {
	if c.req.Op == opTranscription {
		return max(1, int64(len(c.req.Body))/2000), 0
	}
	in, out = credits.EstimateTokens(len(c.req.Body), c.req.MaxTokens)
	// The worst case of what is sent: every choice may use the whole cap.
	if n := c.req.Choices; n > 1 {
		if out > math.MaxInt64/n {
			return in, math.MaxInt64 / 2
		}
		out *= n
	}
	return in, out
}

func tierOf(a *store.Account) routing.Tier {
	if a == nil || !routing.Tier(a.Tier).Valid() {
		return routing.Free
	}
	return routing.Tier(a.Tier)
}

func retryAfter(h string, def int) int {
	if n, err := strconv.Atoi(h); err == nil && n > 0 {
		return n
	}
	return def
}

// passThrough returns a BYOK (or request-class) upstream failure to the
// client: provider rate limits as 429 provider_rate_limited with the
// provider's Retry-After; anything else with the provider's status and
// error body, in the caller's protocol.
func (c *call) passThrough(out *outcome) error {
	if out.class == routing.FailRateLimit {
		return &apperr.Error{Code: apperr.ProviderRateLimited, RetryAfter: retryAfter(out.retryAfter, 1),
			Message: fmt.Sprintf("your %s API key hit the provider's rate limit; wait and retry (requests on your own key are not moved to platform credits)", c.prov)}
	}
	if out.status == 0 {
		reason := reasonOf(out.class, out.status, out.timedOut)
		return apperr.New(apperr.ProviderError, "the %s provider could not be reached (%s)", c.prov, reason)
	}
	if out.ownErr != nil {
		return out.ownErr
	}
	ue := &upstreamError{status: out.status, err: out.vetted}
	if out.class == routing.FailAuth {
		// Providers echo a masked form of the key (more than our hint):
		// the message is our own.
		ue.err.Message = fmt.Sprintf("the %s provider refused your API key (%s): %s", c.prov, c.key.Hint, reasonOf(out.class, out.status, false))
	}
	return ue
}

// writeError writes err: upstream errors rebuilt (vet.go), the rest in the
// envelope of docs/api.md §12 — for Anthropic-protocol callers also shaped as an
// Anthropic error ({"type":"error","error":{"type","message",...}}).
func writeError(w http.ResponseWriter, r *http.Request, op operation, err error) {
	if w.Header().Get(HeaderRoute) == "" {
		w.Header().Set(HeaderRoute, "none") // failed before a route was chosen
	}
	if httpx.ClientGone(r) {
		// The client went away (during a storage call, say): nobody to
		// answer, and not a failure of ours. 499 is the access log's status.
		httpx.Logger(r.Context(), slog.Default()).Info("client went away; request abandoned", "err", err.Error())
		w.WriteHeader(httpx.StatusClientGone)
		return
	}
	var ue *upstreamError
	if errors.As(err, &ue) {
		writeUpstreamError(w, op, ue)
		return
	}
	if !op.anthropicCaller() {
		httpx.WriteError(w, r, err)
		return
	}
	httpx.WriteAnthropicError(w, r, err)
}
