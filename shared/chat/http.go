package chat

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/routing"
)

// readBody reads at most limit bytes of the request body (413 beyond).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, apperr.New(apperr.RequestTooLarge, "request body exceeds %d bytes", limit)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, apperr.New(apperr.RequestTooLarge, "request body exceeds %d bytes", limit)
		}
		return nil, apperr.Wrap(err, apperr.InvalidRequest, "could not read the request body")
	}
	return b, nil
}

func (x *Executor) handleChatCompletions(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, httpx.MaxJSONBody)
	if err != nil {
		writeError(w, r, err)
		return
	}
	x.serveChat(w, r, "chat.completions", body)
}

type copilotRequest struct {
	Message *string `json:"message"`
	Model   string  `json:"model"`
	Stream  bool    `json:"stream"`
}

// handleCopilot is the platform's simple endpoint: one user message, an
// optional model (default DefaultCopilotModel) and stream flag. It answers
// in the OpenAI chat completion format, through the same routing.
func (x *Executor) handleCopilot(w http.ResponseWriter, r *http.Request) {
	var req copilotRequest
	if err := httpx.DecodeJSON(w, r, httpx.MaxJSONBody, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if req.Message == nil || *req.Message == "" {
		writeError(w, r, apperr.New(apperr.InvalidRequest, "field \"message\" is required"))
		return
	}
	model := req.Model
	if model == "" {
		model = x.DefaultCopilotModel
		if model == "" {
			model = "gpt-4o-mini"
		}
	}
	body, err := json.Marshal(map[string]any{
		"model": model, "stream": req.Stream,
		"messages": []map[string]string{{"role": "user", "content": *req.Message}},
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	x.serveChat(w, r, "copilot.chat", body)
}

// serveChat routes one OpenAI-format chat request.
func (x *Executor) serveChat(w http.ResponseWriter, r *http.Request, endpoint string, body []byte) {
	ctx := r.Context()
	p, ok := auth.FromContext(ctx)
	if !ok {
		writeError(w, r, apperr.New(apperr.Unauthorized, "missing credentials"))
		return
	}
	req, err := parseChatRequest(body)
	if err != nil {
		writeError(w, r, err)
		return
	}
	prov, upstreamModel, err := ProviderForModel(req.Model)
	if err == nil {
		err = servedProvider(prov)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	req.UpstreamModel = upstreamModel
	c, err := x.newCall(ctx, w, r, p.UserID, endpoint, req, prov)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := c.serve(ctx); err != nil {
		writeError(w, r, err)
	}
}

// newCall loads what routing needs: settings (cached), then the account and
// keys with one query.
func (x *Executor) newCall(ctx context.Context, w http.ResponseWriter, r *http.Request, userID, endpoint string, req *chatRequest, prov provider.Name) (*call, error) {
	set, err := x.Settings.Get(ctx)
	if err != nil {
		return nil, err
	}
	u, err := x.Users.GetUser(ctx, userID)
	if err != nil {
		return nil, err
	}
	c := &call{x: x, w: w, r: r, start: time.Now(), userID: userID, endpoint: endpoint, req: req, prov: prov, set: set, user: u}
	in := routing.Input{Mode: set.RoutingMode, BYOKEnabled: set.BYOKEnabled, Tier: tierOf(u.Account)}
	if u.Account != nil {
		in.Balance = u.Account.CreditBalance
	}
	if k, ok := u.Keys[string(prov)]; ok {
		c.key = &k
		in.Key = routing.KeyState(k.Status)
	}
	if in.Eligible() && in.Mode == routing.BYOKFirst {
		in.CircuitOpen = x.Circuit.Open(userID, string(prov))
	}
	c.in = in
	c.ledgerID = r.Header.Get("Idempotency-Key")
	if c.ledgerID == "" || len(c.ledgerID) > 200 {
		c.ledgerID = httpx.RequestID(ctx)
	}
	return c, nil
}
