package keys

import (
	"encoding/json"
	"net/http"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/provider"
	"github.com/synthstack/byok/shared/store"
)

// maxKeyBody bounds key request bodies: a key plus a few fields.
const maxKeyBody = 64 << 10

// The three places keys live: a user's own, an org's, a project's. Every
// key route exists under each prefix (docs/teams.md).
var scopePrefixes = []string{"/v1", "/v1/orgs/{org}", "/v1/orgs/{org}/projects/{project}"}

// RegisterKeys adds the keys function's routes to mux.
func (s *Service) RegisterKeys(mux httpx.Router) {
	for _, pre := range scopePrefixes {
		mux.HandleFunc("GET "+pre+"/keys", s.handleList)
		mux.HandleFunc("PUT "+pre+"/keys/{provider}", s.handlePut)
		mux.HandleFunc("POST "+pre+"/keys/{provider}", s.handleAdd)
		mux.HandleFunc("DELETE "+pre+"/keys/{provider}", s.handleDelete)
		mux.HandleFunc("PATCH "+pre+"/keys/{provider}/{key_id}", s.handlePatch)
		mux.HandleFunc("DELETE "+pre+"/keys/{provider}/{key_id}", s.handleDelete)
	}
	mux.HandleFunc("GET /v1/orgs/{org}/settings", s.handleGetOrgSettings)
	mux.HandleFunc("PUT /v1/orgs/{org}/settings", s.handlePutOrgSettings)
}

// RegisterValidate adds the validate function's routes to mux.
func (s *Service) RegisterValidate(mux httpx.Router) {
	for _, pre := range scopePrefixes {
		mux.HandleFunc("POST "+pre+"/keys/{provider}/test", s.handleTest)
		mux.HandleFunc("POST "+pre+"/keys/{provider}/{key_id}/test", s.handleTest)
	}
}

func principal(w http.ResponseWriter, r *http.Request) (auth.Principal, bool) {
	p, ok := auth.FromContext(r.Context())
	if !ok {
		httpx.WriteError(w, r, apperr.New(apperr.Unauthorized, "missing credentials"))
	}
	return p, ok
}

// ownerOf resolves whose keys the path names and checks the caller may
// manage them: their own always; an org's or its projects' only with a
// token whose org claim names that org and whose org_role is owner or
// admin. A token for another org, or a member's, is refused with 403.
func ownerOf(r *http.Request, p auth.Principal) (store.Owner, error) {
	org, project := r.PathValue("org"), r.PathValue("project")
	if org == "" {
		return store.UserOwner(p.UserID), nil
	}
	if !auth.ValidOrgID(org) || project != "" && !auth.ValidOrgID(project) {
		return store.Owner{}, apperr.New(apperr.InvalidRequest, "org and project ids are 1..%d printable characters without space, '#' or '/'", auth.MaxOrgIDLen)
	}
	if p.Org != org {
		return store.Owner{}, apperr.New(apperr.Forbidden, "your token is not for organisation %q; org keys are managed with a token whose org claim names the org", org)
	}
	if !p.OrgAdmin(org) {
		return store.Owner{}, apperr.New(apperr.Forbidden, "managing organisation %q's keys and settings needs org_role owner or admin; yours is %s", org, p.OrgRole)
	}
	if project != "" {
		return store.ProjectOwner(org, project), nil
	}
	return store.OrgOwner(org), nil
}

// target resolves the caller, the owner and, when the route has one, the
// {provider} path value, writing the error when any is wrong.
func target(w http.ResponseWriter, r *http.Request, withProvider bool) (auth.Principal, store.Owner, provider.Name, bool) {
	pr, ok := principal(w, r)
	if !ok {
		return pr, store.Owner{}, "", false
	}
	owner, err := ownerOf(r, pr)
	if err != nil {
		httpx.WriteError(w, r, err)
		return pr, store.Owner{}, "", false
	}
	if !withProvider {
		return pr, owner, "", true
	}
	p, err := provider.Parse(r.PathValue("provider"))
	if err != nil {
		httpx.WriteError(w, r, err)
		return pr, store.Owner{}, "", false
	}
	return pr, owner, p, true
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	pr, owner, _, ok := target(w, r, false)
	if !ok {
		return
	}
	out, err := s.ListKeys(r.Context(), pr.UserID, owner)
	httpx.Respond(w, r, http.StatusOK, out, err)
}

type putRequest struct {
	APIKey   *string   `json:"api_key"`
	Label    *string   `json:"label"`
	Priority *int      `json:"priority"`
	Models   *[]string `json:"models"`
	// azure_openai only (docs/providers.md).
	Endpoint    *string         `json:"endpoint"`
	APIVersion  *string         `json:"api_version"`
	Deployments json.RawMessage `json:"deployments"`
}

func (q putRequest) newKey() (NewKey, error) {
	if q.APIKey == nil || *q.APIKey == "" {
		return NewKey{}, apperr.New(apperr.InvalidRequest, "field \"api_key\" is required")
	}
	n := NewKey{APIKey: *q.APIKey}
	if q.Label != nil {
		n.Label = *q.Label
	}
	if q.Priority != nil {
		n.Priority = *q.Priority
	}
	if q.Models != nil {
		n.Models = *q.Models
	}
	if q.Endpoint != nil {
		if n.Azure.Endpoint = *q.Endpoint; n.Azure.Endpoint == "" {
			return NewKey{}, apperr.New(apperr.InvalidRequest, "field \"endpoint\" must not be empty")
		}
	}
	if q.APIVersion != nil {
		if n.Azure.APIVersion = *q.APIVersion; n.Azure.APIVersion == "" {
			return NewKey{}, apperr.New(apperr.InvalidRequest, "field \"api_version\" must not be empty (leave it out for the default)")
		}
	}
	if q.Deployments != nil {
		d, err := ParseDeployments(q.Deployments)
		if err != nil {
			return NewKey{}, err
		}
		if d == nil {
			d = map[string]string{} // present: the field was sent
		}
		n.Azure.Deployments = d
	}
	return n, nil
}

func decodeNewKey(w http.ResponseWriter, r *http.Request) (NewKey, bool) {
	var req putRequest
	err := httpx.DecodeJSON(w, r, maxKeyBody, &req)
	var n NewKey
	if err == nil {
		n, err = req.newKey()
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return NewKey{}, false
	}
	return n, true
}

func (s *Service) handlePut(w http.ResponseWriter, r *http.Request) {
	pr, owner, p, ok := target(w, r, true)
	if !ok {
		return
	}
	n, ok := decodeNewKey(w, r)
	if !ok {
		return
	}
	v, err := s.Replace(r.Context(), pr.UserID, owner, p, n)
	httpx.Respond(w, r, http.StatusOK, v, err)
}

func (s *Service) handleAdd(w http.ResponseWriter, r *http.Request) {
	pr, owner, p, ok := target(w, r, true)
	if !ok {
		return
	}
	n, ok := decodeNewKey(w, r)
	if !ok {
		return
	}
	v, err := s.Add(r.Context(), pr.UserID, owner, p, n)
	httpx.Respond(w, r, http.StatusCreated, v, err)
}

type patchRequest struct {
	Label    *string   `json:"label"`
	Priority *int      `json:"priority"`
	Models   *[]string `json:"models"`
	// azure_openai only; the endpoint is sealed with the key and cannot
	// change in place (docs/providers.md).
	Endpoint    *string         `json:"endpoint"`
	APIVersion  *string         `json:"api_version"`
	Deployments json.RawMessage `json:"deployments"`
}

func (q patchRequest) patch() (store.KeyPatch, error) {
	if q.Endpoint != nil {
		return store.KeyPatch{}, apperr.New(apperr.InvalidRequest,
			"field \"endpoint\" cannot be changed: it is sealed with the key; replace the key (PUT, or POST and then DELETE the old one)")
	}
	kp := store.KeyPatch{Label: q.Label, Priority: q.Priority, Models: q.Models, APIVersion: q.APIVersion}
	if q.Deployments != nil {
		d, err := ParseDeployments(q.Deployments)
		if err != nil {
			return store.KeyPatch{}, err
		}
		if d == nil {
			d = map[string]string{} // present: remove every deployment
		}
		kp.Deployments = &d
	}
	return kp, nil
}

func (s *Service) handlePatch(w http.ResponseWriter, r *http.Request) {
	_, owner, p, ok := target(w, r, true)
	if !ok {
		return
	}
	var req patchRequest
	err := httpx.DecodeJSON(w, r, maxKeyBody, &req)
	var kp store.KeyPatch
	if err == nil {
		kp, err = req.patch()
	}
	if err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	v, err := s.Patch(r.Context(), owner, p, r.PathValue("key_id"), kp)
	httpx.Respond(w, r, http.StatusOK, v, err)
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) {
	_, owner, p, ok := target(w, r, true)
	if !ok {
		return
	}
	if err := s.DeleteKeys(r.Context(), owner, p, r.PathValue("key_id")); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleTest(w http.ResponseWriter, r *http.Request) {
	pr, owner, p, ok := target(w, r, true)
	if !ok {
		return
	}
	v, err := s.TestKeys(WithActor(r.Context(), pr.UserID), owner, p, r.PathValue("key_id"))
	httpx.Respond(w, r, http.StatusOK, v, err)
}

func (s *Service) handleGetOrgSettings(w http.ResponseWriter, r *http.Request) {
	_, owner, _, ok := target(w, r, false)
	if !ok {
		return
	}
	v, err := s.OrgSettings(r.Context(), owner.Org)
	httpx.Respond(w, r, http.StatusOK, v, err)
}

type orgSettingsRequest struct {
	PersonalKeys *bool   `json:"personal_keys"`
	Email        *string `json:"email"`
}

func (s *Service) handlePutOrgSettings(w http.ResponseWriter, r *http.Request) {
	_, owner, _, ok := target(w, r, false)
	if !ok {
		return
	}
	var req orgSettingsRequest
	if err := httpx.DecodeJSON(w, r, maxKeyBody, &req); err != nil {
		httpx.WriteError(w, r, err)
		return
	}
	v, err := s.PutOrgSettings(r.Context(), owner.Org, store.OrgSettingsPatch{PersonalKeys: req.PersonalKeys, Email: req.Email})
	httpx.Respond(w, r, http.StatusOK, v, err)
}
