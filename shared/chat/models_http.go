package chat

import (
	"net/http"
	"slices"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/httpx"
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
	routes := map[provider.Name]routing.Route{}
	for _, prov := range provider.Supported() {
		plan := routing.Decide(x.routingInput(set, u, p.UserID, prov))
		if plan.First == routing.RouteCredits && x.InternalKeys[prov] == "" {
			plan.First = routing.RouteNone
		}
		routes[prov] = plan.First
	}
	names := make([]string, 0, len(x.Prices.Models))
	for m := range x.Prices.Models {
		names = append(names, m)
	}
	slices.Sort(names)
	data := []ModelInfo{}
	for _, m := range names {
		prov, _, err := ProviderForModel(m)
		if err != nil || servedProvider(prov) != nil || routes[prov] == routing.RouteNone {
			continue
		}
		data = append(data, ModelInfo{ID: m, Object: "model", OwnedBy: string(prov), Provider: string(prov), Route: string(routes[prov])})
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}
