package chat

import (
	"context"

	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/usage"
)

// Response headers naming the key a BYOK answer used (docs/teams.md).
const (
	HeaderKey      = "X-Byok-Key"
	HeaderKeyScope = "X-Byok-Key-Scope"
)

// OrgStore reads an org's settings, keys and one project's keys with one
// query (store.Store.GetOrg).
type OrgStore interface {
	GetOrg(ctx context.Context, org, project string) (store.Org, error)
}

// loadOrg reads the org the token names (nil when it names none): the one
// extra read of a request made for an org (docs/teams.md).
func (x *Executor) loadOrg(ctx context.Context, p auth.Principal) (*store.Org, error) {
	if p.Org == "" || x.Orgs == nil {
		return nil, nil
	}
	o, err := x.Orgs.GetOrg(ctx, p.Org, p.Project)
	if err != nil {
		return nil, err
	}
	return &o, nil
}

// keyCircuit is the circuit name of one key: each key of a user has its
// own, so one failing key does not hide the others.
func keyCircuit(prov provider.Name, k store.KeyRecord) string {
	return string(prov) + "\x00" + k.Scope() + "\x00" + k.Org + "\x00" + k.Project + "\x00" + k.KeyID
}

// pickKeys sets c.cands (the keys the BYOK route walks, in order) and the
// routing input's key state. In byok_first the keys whose circuit is open
// are left out; when every key's circuit is open the request goes to
// credits first (CircuitOpen) and, should credits refuse it, still walks
// them all.
func (c *call) pickKeys(org *store.Org) {
	c.org = org // its e-mail receives its keys' events
	all := keys.Candidates(c.user, org, string(c.prov), c.req.UpstreamModel)
	c.in.Key = routing.KeyNone
	if len(all) == 0 {
		if k, ok := c.user.Keys[string(c.prov)]; ok && k.Status == string(routing.KeyInvalid) && org == nil {
			c.in.Key = routing.KeyInvalid
		}
		return
	}
	c.in.Key = routing.KeyState(all[0].Status)
	c.cands = all
	if !c.in.Eligible() || c.in.Mode != routing.BYOKFirst {
		return
	}
	var closed []store.KeyRecord
	for _, k := range all {
		if !c.x.Circuit.Open(c.userID, keyCircuit(c.prov, k)) {
			closed = append(closed, k)
		}
	}
	if len(closed) == 0 {
		c.in.CircuitOpen = true
		return
	}
	c.cands = closed
}

// releaseProbes ends the probes held by keys that were never tried (a
// probe must not hold a circuit it did not test).
func (c *call) releaseProbes(from int) {
	for _, k := range c.cands[min(from, len(c.cands)):] {
		c.x.Circuit.Done(c.userID, keyCircuit(c.prov, k))
	}
}

// setKeyHeaders names the key of a BYOK answer; other routes carry none.
func (c *call) setKeyHeaders(k *store.KeyRecord) {
	h := c.w.Header()
	if k == nil {
		h.Del(HeaderKey)
		h.Del(HeaderKeyScope)
		return
	}
	h.Set(HeaderKey, k.KeyID)
	h.Set(HeaderKeyScope, k.Scope())
}

// lastTry reports whether a failure on a key ends the walk: the last key,
// a stream already started, or a failure the next key cannot mend (only
// fallback-class failures and provider rate limits move on).
func lastTry(i, n int, out *outcome) bool {
	if i == n-1 || out.bytesSent || out.canceled {
		return true
	}
	return !out.class.FallbackClass() && out.class != routing.FailRateLimit
}

// KeyToucher writes a usage row together with the key's last_used_at
// (usage.Writer.PutTouching).
type KeyToucher interface {
	PutTouching(ctx context.Context, r usage.Record, k store.KeyRecord) error
}

// putTry writes the usage row of one try. last_used_at rides on that same
// write (docs/teams.md): only when the value this request read is an hour
// old or more does the row go out as one transaction with the key's update,
// so the warm path keeps one write and no extra read. A failed transaction
// falls back to the plain write (putUsage, with its retries).
func (c *call) putTry(ctx context.Context, rec usage.Record, k store.KeyRecord, out *outcome) {
	if t, ok := c.x.Usage.(KeyToucher); ok && (out.ok || out.status != 0) && usage.NeedsTouch(k, rec.At) {
		if err := t.PutTouching(ctx, rec, k); err == nil {
			return
		}
	}
	c.putUsage(ctx, rec)
}
