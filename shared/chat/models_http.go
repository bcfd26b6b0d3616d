package chat

import (
	"net/http"
	"slices"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
	"github.com/synthstack/byok/shared/store"
)

// routingInput builds the routing input for one provider, without the
// circuit (which newCall consults only for the request it serves).
func (x *Executor) routingInput(set routing.Settings, u store.User, userID string, prov provider.Name) routing.Input {
	in := routing.Input{Mode: set.RoutingMode, BYOKEnabled: set.BYOKEnabled, Tier: tierOf(u.Account)}
	if u.Account != nil {
		in.Balance = u.Account.CreditBalance
	}
	if k, ok := u.Keys[string(prov)]; ok {
		in.Key = routing.KeyState(k.Status)
	}
	return in
}

// modelInput is routingInput for one model of GET /v1/models: the key
// state is the first candidate's (project, org, then personal keys;
// docs/teams.md) whose model filter admits model, as a request would pick.
func (x *Executor) modelInput(set routing.Settings, u store.User, org *store.Org, prov provider.Name, model string) routing.Input {
	in := x.routingInput(set, u, "", prov)
	in.Key = routing.KeyNone
	if c := keys.Candidates(u, org, string(prov), model); len(c) > 0 {
		in.Key = routing.KeyState(c[0].Status)
	} else if k, ok := u.Keys[string(prov)]; ok && org == nil && k.Status == string(routing.KeyInvalid) {
		in.Key = routing.KeyInvalid
	}
	return in
}

// ModelInfo is one entry of GET /v1/models (the OpenAI list shape, plus the
// provider and the route a request would take now).
type ModelInfo struct {
	ID       string `json:"id"`
	Object   string `json:"object"`
	Created  int64  `json:"created"`
	OwnedBy  string `json:"owned_by"`
	Provider string `json:"provider"`
	Route    string `json:"route"`
}

// handleModels lists the models the caller can use now, with the route each
// would take (byok or credits) under the current settings, tier, keys and
// balance. Fine-tuned OpenAI models ("ft:...") work too but cannot be
// listed.
func (x *Executor) handleModels(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, ok := auth.FromContext(ctx)
	if !ok {
		httpx.WriteError(w, r, apperr.New(apperr.Unauthorized, "missing credentials"))
		return
	}
	set, err := x.Settings.Get(ctx)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	u, err := x.Users.GetUser(ctx, p.UserID)
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	org, err := x.loadOrg(ctx, p) // the org's and project's keys serve its members too
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	names := make([]string, 0, len(x.Prices.Models))
	for m := range x.Prices.Models {
		names = append(names, m)
	}
	slices.Sort(names)
	data := []ModelInfo{}
	for _, m := range names {
		prov, upstream, err := ProviderForModel(m)
		if err != nil || servedProvider(prov) != nil {
			continue
		}
		// Per model: a key's model filter may admit some models only.
		route := routing.Decide(x.modelInput(set, u, org, prov, upstream)).First
		if route == routing.RouteCredits && x.InternalKeys[prov] == "" {
			route = routing.RouteNone
		}
		if route == routing.RouteNone {
			continue
		}
		data = append(data, ModelInfo{ID: m, Object: "model", OwnedBy: string(prov), Provider: string(prov), Route: string(route)})
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}
