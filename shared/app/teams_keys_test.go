package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/golang-jwt/jwt/v5"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/keys"
	"github.com/synthstack/byok/shared/store"
	"github.com/synthstack/byok/shared/vault"
)

// orgToken mints a token for user naming org (and project) with orgRole.
func (e *testEnv) orgToken(user, org, project, orgRole string) string {
	e.t.Helper()
	now := time.Now()
	c := jwt.MapClaims{"sub": user, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "org": org}
	if project != "" {
		c["project"] = project
	}
	if orgRole != "" {
		c["org_role"] = orgRole
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(e.secret)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type keyEntry struct {
	KeyID      string   `json:"key_id"`
	Label      string   `json:"label"`
	Priority   int      `json:"priority"`
	Models     []string `json:"models"`
	Status     string   `json:"status"`
	Hint       string   `json:"hint"`
	LastUsedAt *string  `json:"last_used_at"`
	Stale      bool     `json:"stale"`
	Scope      string   `json:"scope"`
}

type keyView struct {
	Provider   string     `json:"provider"`
	Configured bool       `json:"configured"`
	Status     *string    `json:"status"`
	Hint       *string    `json:"hint"`
	KeyID      string     `json:"key_id"`
	Entries    []keyEntry `json:"entries"`
}

func (r response) keyView(t *testing.T) keyView {
	t.Helper()
	var v keyView
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("not a key view (%d): %s", r.Status, r.Body)
	}
	return v
}

// listed returns the provider's view from GET <prefix>/keys.
func (e *testEnv) listed(prefix, token, provider string) keyView {
	e.t.Helper()
	r := e.do("GET", prefix+"/keys", token, nil)
	if r.Status != 200 {
		e.t.Fatalf("list %s: %d %s", prefix, r.Status, r.Body)
	}
	var l struct {
		Keys []keyView `json:"keys"`
	}
	if err := json.Unmarshal(r.Body, &l); err != nil {
		e.t.Fatal(err)
	}
	for _, v := range l.Keys {
		if v.Provider == provider {
			return v
		}
	}
	e.t.Fatalf("no %s in %s", provider, r.Body)
	return keyView{}
}

func hints(v keyView) []string {
	out := []string{}
	for _, e := range v.Entries {
		out = append(out, e.Hint)
	}
	return out
}

func wantStatus(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %d %s, want %d %s", r.Status, r.Body, status, code)
	}
	if code != "" && r.errCode(t) != code {
		t.Fatalf("got code %s, want %s: %s", r.errCode(t), code, r.Body)
	}
}

// Several keys per provider: add, order (priority, then oldest), the top
// level describing the first usable entry, patch, delete one, the 10-key
// limit, PUT replacing them all, and bad input refused with nothing stored.
func TestSeveralKeysPerProvider(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("kim", "premium")
	tok := e.token("kim", "")
	k1, k2, k3 := openAIKey(t), openAIKey(t), openAIKey(t)
	e.fake.SetKey(k1, fakeprovider.OK())
	e.fake.SetKey(k2, fakeprovider.Unauthorized())
	e.fake.SetKey(k3, fakeprovider.OK())

	r := e.do("PUT", "/v1/keys/openai", tok, map[string]any{"api_key": k1, "label": "main"})
	wantStatus(t, r, 200, "")
	first := r.keyView(t)
	if len(first.Entries) != 1 || first.Entries[0].Label != "main" || first.Entries[0].Scope != "user" || first.Entries[0].Stale {
		t.Fatalf("PUT view: %s", r.Body)
	}
	r = e.do("POST", "/v1/keys/openai", tok, map[string]any{"api_key": k2, "label": "broken", "priority": 0})
	wantStatus(t, r, 201, "")
	v := r.keyView(t)
	if v.KeyID == "" || v.KeyID == first.Entries[0].KeyID || len(v.Entries) != 2 || v.Entries[1].Status != "invalid" {
		t.Fatalf("POST view: %s", r.Body)
	}
	brokenID := v.KeyID
	r = e.do("POST", "/v1/keys/openai", tok, map[string]any{"api_key": k3, "label": "gpt-4 only", "priority": 5, "models": []string{"gpt-4o", "gpt-4.1*"}})
	wantStatus(t, r, 201, "")
	thirdID := r.keyView(t).KeyID

	// priority 0, 0 (oldest first), then 5
	got := e.listed("/v1", tok, "openai")
	if want := []string{hintOf(k1), hintOf(k2), hintOf(k3)}; fmt.Sprint(hints(got)) != fmt.Sprint(want) {
		t.Fatalf("order %v, want %v", hints(got), want)
	}
	if got.Entries[2].Models[1] != "gpt-4.1*" || len(got.Entries[0].Models) != 0 {
		t.Fatalf("models: %+v", got.Entries)
	}
	// Moving the invalid key first leaves the top level on the first usable one.
	r = e.do("PATCH", "/v1/keys/openai/"+brokenID, tok, map[string]any{"priority": 0})
	wantStatus(t, r, 200, "")
	r = e.do("PATCH", "/v1/keys/openai/"+thirdID, tok, map[string]any{"priority": 1, "label": "second", "models": []string{}})
	wantStatus(t, r, 200, "")
	r = e.do("PATCH", "/v1/keys/openai/"+first.Entries[0].KeyID, tok, map[string]any{"priority": 2})
	wantStatus(t, r, 200, "")
	got = r.keyView(t)
	if want := []string{hintOf(k2), hintOf(k3), hintOf(k1)}; fmt.Sprint(hints(got)) != fmt.Sprint(want) {
		t.Fatalf("order after patch %v, want %v", hints(got), want)
	}
	if *got.Hint != hintOf(k3) || *got.Status != "valid" || got.Entries[1].Label != "second" || len(got.Entries[1].Models) != 0 {
		t.Fatalf("top level is not the first usable entry: %+v", got)
	}
	// Bad input: nothing stored, no provider call.
	calls := e.fake.TotalCalls()
	for _, body := range []any{
		map[string]any{"api_key": openAIKey(t), "priority": -1},
		map[string]any{"api_key": openAIKey(t), "priority": 1001},
		map[string]any{"api_key": openAIKey(t), "label": strings.Repeat("x", 65)},
		map[string]any{"api_key": openAIKey(t), "models": []string{"gpt-*-mini"}},
		map[string]any{"api_key": openAIKey(t), "models": []string{"*"}},
		map[string]any{"api_key": openAIKey(t), "models": []string{"gpt-4o", "gpt-4o"}},
		map[string]any{"api_key": openAIKey(t), "models": "gpt-4o"},
		map[string]any{"api_key": openAIKey(t), "priority": "1"},
		map[string]any{"label": "no key"},
	} {
		wantStatus(t, e.do("POST", "/v1/keys/openai", tok, body), 400, "invalid_request")
	}
	wantStatus(t, e.do("PATCH", "/v1/keys/openai/"+thirdID, tok, map[string]any{}), 400, "invalid_request")
	wantStatus(t, e.do("PATCH", "/v1/keys/openai/"+thirdID, tok, map[string]any{"priority": 5000}), 400, "invalid_request")
	wantStatus(t, e.do("PATCH", "/v1/keys/openai/"+thirdID, tok, map[string]any{"api_key": openAIKey(t)}), 400, "invalid_request")
	wantStatus(t, e.do("PATCH", "/v1/keys/openai/no-such-key", tok, map[string]any{"label": "x"}), 404, "not_found")
	wantStatus(t, e.do("POST", "/v1/keys/gemini", tok, map[string]any{"api_key": openAIKey(t)}), 404, "unsupported_provider")
	if e.fake.TotalCalls() != calls {
		t.Fatal("bad input reached the provider")
	}
	// Another user sees none of them and cannot touch them.
	e.setTier("lee", "premium")
	lee := e.token("lee", "")
	if v := e.listed("/v1", lee, "openai"); v.Configured || len(v.Entries) != 0 {
		t.Fatalf("lee sees kim's keys: %+v", v)
	}
	wantStatus(t, e.do("PATCH", "/v1/keys/openai/"+thirdID, lee, map[string]any{"label": "mine"}), 404, "not_found")
	wantStatus(t, e.do("DELETE", "/v1/keys/openai/"+thirdID, lee, nil), 404, "not_found")
	wantStatus(t, e.do("POST", "/v1/keys/openai/"+thirdID+"/test", lee, nil), 404, "not_found")

	// Test one key, then every key.
	r = e.do("POST", "/v1/keys/openai/"+thirdID+"/test", tok, nil)
	wantStatus(t, r, 200, "")
	if r.keyView(t).KeyID != thirdID {
		t.Fatalf("test one: %s", r.Body)
	}
	before := e.fake.Calls(k1) + e.fake.Calls(k2) + e.fake.Calls(k3)
	wantStatus(t, e.do("POST", "/v1/keys/openai/test", tok, nil), 200, "")
	if after := e.fake.Calls(k1) + e.fake.Calls(k2) + e.fake.Calls(k3); after != before+3 {
		t.Fatalf("test all made %d provider calls, want 3", after-before)
	}

	// Delete one; then fill up to 10 and refuse the 11th.
	wantStatus(t, e.do("DELETE", "/v1/keys/openai/"+brokenID, tok, nil), 204, "")
	wantStatus(t, e.do("DELETE", "/v1/keys/openai/"+brokenID, tok, nil), 404, "not_found")
	e.fake.SetDefault(fakeprovider.OK())
	for i := 2; i < store.MaxKeysPerProvider; i++ {
		wantStatus(t, e.do("POST", "/v1/keys/openai", tok, map[string]any{"api_key": openAIKey(t), "priority": 9}), 201, "")
	}
	if n := len(e.listed("/v1", tok, "openai").Entries); n != store.MaxKeysPerProvider {
		t.Fatalf("%d keys, want %d", n, store.MaxKeysPerProvider)
	}
	calls = e.fake.TotalCalls()
	wantStatus(t, e.do("POST", "/v1/keys/openai", tok, map[string]any{"api_key": openAIKey(t)}), 409, "conflict")
	if e.fake.TotalCalls() != calls {
		t.Fatal("an 11th key was validated with the provider")
	}
	// PUT replaces all ten with one.
	k4 := openAIKey(t)
	r = e.do("PUT", "/v1/keys/openai", tok, map[string]any{"api_key": k4})
	wantStatus(t, r, 200, "")
	if got := e.listed("/v1", tok, "openai"); fmt.Sprint(hints(got)) != fmt.Sprint([]string{hintOf(k4)}) {
		t.Fatalf("after PUT: %v", hints(got))
	}
	if items := e.scanAll(); strings.Count(items, "entity=provider_keys") != 1 {
		t.Fatalf("rows left after PUT:\n%s", items)
	}
	// DELETE of the provider removes every key.
	wantStatus(t, e.do("POST", "/v1/keys/openai", tok, map[string]any{"api_key": openAIKey(t)}), 201, "")
	wantStatus(t, e.do("DELETE", "/v1/keys/openai", tok, nil), 204, "")
	if v := e.listed("/v1", tok, "openai"); v.Configured || len(v.Entries) != 0 {
		t.Fatalf("after DELETE: %+v", v)
	}
	for _, k := range []string{k1, k2, k3, k4} {
		assertNoLeak(t, "responses", e.transcript.String(), k, len("sk-proj-"))
		assertNoLeak(t, "logs", e.logs.String(), k, len("sk-proj-"))
	}
}

// A key row stored before several keys existed (sk KEY#<provider>, no
// scope, label, priority or models) is read as it is: the first entry of its
// provider, followed by keys added later; it is never rewritten.
func TestSingleKeyRowsReadAsFirstEntry(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("old", "premium")
	ctx := context.Background()
	legacy := openAIKey(t)
	e.fake.SetKey(legacy, fakeprovider.OK())
	keyID := "legacy-key-id"
	blob, err := e.app.Vault.Seal(ctx, vault.Context{UserID: "old", Provider: "openai", KeyID: keyID}, []byte(legacy))
	if err != nil {
		t.Fatal(err)
	}
	wid, _ := e.app.Vault.WrapperID(blob)
	created := time.Now().UTC().Add(-100 * 24 * time.Hour).Format(time.RFC3339Nano)
	item := map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "USER#old"}, "sk": &types.AttributeValueMemberS{Value: "KEY#openai"},
		"entity":  &types.AttributeValueMemberS{Value: "provider_keys"},
		"user_id": &types.AttributeValueMemberS{Value: "old"}, "provider": &types.AttributeValueMemberS{Value: "openai"},
		"key_id": &types.AttributeValueMemberS{Value: keyID}, "ciphertext": &types.AttributeValueMemberB{Value: blob},
		"wrapper_id": &types.AttributeValueMemberS{Value: wid}, "hint": &types.AttributeValueMemberS{Value: hintOf(legacy)},
		"status": &types.AttributeValueMemberS{Value: "valid"}, "reason": &types.AttributeValueMemberS{Value: ""},
		"validated_at": &types.AttributeValueMemberS{Value: created}, "created_at": &types.AttributeValueMemberS{Value: created},
		"updated_at": &types.AttributeValueMemberS{Value: created},
	}
	if _, err := e.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(e.vars["TABLE_PREFIX"] + "byok"), Item: item}); err != nil {
		t.Fatal(err)
	}
	tok := e.token("old", "")
	v := e.listed("/v1", tok, "openai")
	if len(v.Entries) != 1 || v.Entries[0].KeyID != keyID || v.Entries[0].Scope != "user" || !v.Entries[0].Stale || v.Entries[0].LastUsedAt != nil {
		t.Fatalf("legacy row: %+v", v)
	}
	added := openAIKey(t)
	e.fake.SetKey(added, fakeprovider.OK())
	wantStatus(t, e.do("POST", "/v1/keys/openai", tok, map[string]any{"api_key": added}), 201, "")
	v = e.listed("/v1", tok, "openai")
	if fmt.Sprint(hints(v)) != fmt.Sprint([]string{hintOf(legacy), hintOf(added)}) || v.Entries[1].Stale {
		t.Fatalf("after add: %+v", v)
	}
	// It still opens (its AAD is unchanged) and can be tested, patched and deleted by id.
	r := e.do("POST", "/v1/keys/openai/"+keyID+"/test", tok, nil)
	wantStatus(t, r, 200, "")
	wantStatus(t, e.do("PATCH", "/v1/keys/openai/"+keyID, tok, map[string]any{"label": "old one"}), 200, "")
	raw := e.keyItem("old", "openai")
	if raw == nil || raw["label"].(*types.AttributeValueMemberS).Value != "old one" {
		t.Fatalf("legacy row not updated in place: %v", raw)
	}
	wantStatus(t, e.do("DELETE", "/v1/keys/openai/"+keyID, tok, nil), 204, "")
	if e.keyItem("old", "openai") != nil {
		t.Fatal("legacy row survived its delete")
	}
}

// Org and project keys: managed only by the org's owners and admins (a
// member, an admin of another org and a plain user get 403), stored in their
// own rows, listed per scope; org settings likewise.
func TestOrgAndProjectKeysManagement(t *testing.T) {
	e := newEnv(t, nil)
	q := e.subscribeEvents()
	owner := e.orgToken("olga", "acme", "", "owner")
	admin := e.orgToken("adam", "acme", "web", "admin")
	member := e.orgToken("mia", "acme", "web", "member")
	stranger := e.orgToken("sam", "globex", "", "owner")
	plain := e.token("pat", "")
	orgKey, projKey := openAIKey(t), anthropicKey(t)
	e.fake.SetKey(orgKey, fakeprovider.OK())
	e.fake.SetKey(projKey, fakeprovider.Unauthorized())

	// Settings first: the org's e-mail receives its key events.
	r := e.do("GET", "/v1/orgs/acme/settings", owner, nil)
	wantStatus(t, r, 200, "")
	if m := r.json(t); m["personal_keys"] != true || m["email"] != "" || m["org"] != "acme" {
		t.Fatalf("default settings: %s", r.Body)
	}
	r = e.do("PUT", "/v1/orgs/acme/settings", owner, map[string]any{"email": "it@acme.example", "personal_keys": false})
	wantStatus(t, r, 200, "")
	if m := r.json(t); m["personal_keys"] != false || m["email"] != "it@acme.example" {
		t.Fatalf("settings after PUT: %s", r.Body)
	}
	wantStatus(t, e.do("PUT", "/v1/orgs/acme/settings", owner, map[string]any{"email": "not-an-address"}), 400, "invalid_request")
	wantStatus(t, e.do("PUT", "/v1/orgs/acme/settings", owner, map[string]any{}), 400, "invalid_request")
	wantStatus(t, e.do("PUT", "/v1/orgs/acme/settings", owner, map[string]any{"personal_keys": "no"}), 400, "invalid_request")

	// Org key by the owner (no tier needed), project key by an admin.
	r = e.do("PUT", "/v1/orgs/acme/keys/openai", owner, map[string]any{"api_key": orgKey, "label": "acme shared"})
	wantStatus(t, r, 200, "")
	if v := r.keyView(t); v.Entries[0].Scope != "org" || v.Entries[0].Label != "acme shared" {
		t.Fatalf("org key view: %s", r.Body)
	}
	r = e.do("POST", "/v1/orgs/acme/projects/web/keys/anthropic", admin, map[string]any{"api_key": projKey})
	wantStatus(t, r, 201, "")
	projID := r.keyView(t).KeyID
	if v := r.keyView(t); v.Entries[0].Scope != "project" || v.Entries[0].Status != "invalid" {
		t.Fatalf("project key view: %s", r.Body)
	}
	evs := q.drain()
	if len(evs) != 1 || evs[0].Type != "byok.key_invalid" || evs[0].Ev.Email != "it@acme.example" || evs[0].Ev.UserID != "adam" ||
		!strings.Contains(evs[0].Body, `"scope":"project"`) || !strings.Contains(evs[0].Body, `"org":"acme"`) ||
		!strings.Contains(evs[0].Body, `"project":"web"`) || !strings.Contains(evs[0].Ev.Subject, "project web") {
		t.Fatalf("project key event: %+v", evs)
	}

	// Listed per scope, and never in anyone's own keys.
	if v := e.listed("/v1/orgs/acme", owner, "openai"); len(v.Entries) != 1 || v.Entries[0].Hint != hintOf(orgKey) {
		t.Fatalf("org list: %+v", v)
	}
	if v := e.listed("/v1/orgs/acme", owner, "anthropic"); len(v.Entries) != 0 {
		t.Fatalf("a project key is listed as an org key: %+v", v)
	}
	if v := e.listed("/v1/orgs/acme/projects/web", admin, "anthropic"); len(v.Entries) != 1 || v.Entries[0].KeyID != projID {
		t.Fatalf("project list: %+v", v)
	}
	if v := e.listed("/v1/orgs/acme/projects/other", admin, "anthropic"); len(v.Entries) != 0 {
		t.Fatalf("another project lists web's key: %+v", v)
	}
	for _, tok := range []string{owner, admin, member} {
		if v := e.listed("/v1", tok, "openai"); len(v.Entries) != 0 {
			t.Fatalf("org key in a user's own list: %+v", v)
		}
	}

	// Who may not manage them: 403 for each, and nothing changes.
	calls := e.fake.TotalCalls()
	for _, tok := range []string{member, stranger, plain} {
		for _, x := range []struct {
			method, path string
			body         any
		}{
			{"GET", "/v1/orgs/acme/keys", nil},
			{"PUT", "/v1/orgs/acme/keys/openai", map[string]any{"api_key": openAIKey(t)}},
			{"POST", "/v1/orgs/acme/keys/openai", map[string]any{"api_key": openAIKey(t)}},
			{"DELETE", "/v1/orgs/acme/keys/openai", nil},
			{"POST", "/v1/orgs/acme/keys/openai/test", nil},
			{"GET", "/v1/orgs/acme/projects/web/keys", nil},
			{"PATCH", "/v1/orgs/acme/projects/web/keys/anthropic/" + projID, map[string]any{"label": "x"}},
			{"DELETE", "/v1/orgs/acme/projects/web/keys/anthropic/" + projID, nil},
			{"POST", "/v1/orgs/acme/projects/web/keys/anthropic/" + projID + "/test", nil},
			{"GET", "/v1/orgs/acme/settings", nil},
			{"PUT", "/v1/orgs/acme/settings", map[string]any{"personal_keys": true}},
		} {
			wantStatus(t, e.do(x.method, x.path, tok, x.body), 403, "forbidden")
		}
	}
	if e.fake.TotalCalls() != calls {
		t.Fatal("a refused request reached the provider")
	}
	wantStatus(t, e.do("GET", "/v1/orgs/acme/keys", "", nil), 401, "unauthorized")
	wantStatus(t, e.do("GET", "/v1/orgs/ac%23me/keys", e.orgToken("x", "acme", "", "owner"), nil), 400, "invalid_request")
	wantStatus(t, e.do("GET", "/v1/orgs/acme/projects/a%23b/keys", owner, nil), 400, "invalid_request")
	// A token naming a project but no org is refused outright.
	now := time.Now()
	bad, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "z", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "project": "web"}).SignedString(e.secret)
	wantStatus(t, e.do("GET", "/v1/keys", bad, nil), 401, "unauthorized")

	// Patch, test and delete by the owner.
	wantStatus(t, e.do("PATCH", "/v1/orgs/acme/projects/web/keys/anthropic/"+projID, owner, map[string]any{"priority": 3}), 200, "")
	e.fake.SetKey(projKey, fakeprovider.OK())
	r = e.do("POST", "/v1/orgs/acme/projects/web/keys/anthropic/"+projID+"/test", owner, nil)
	wantStatus(t, r, 200, "")
	if v := r.keyView(t); v.Entries[0].Status != "valid" || v.Entries[0].Priority != 3 {
		t.Fatalf("after test: %s", r.Body)
	}
	if evs := q.drain(); len(evs) != 1 || evs[0].Type != "byok.key_valid" || evs[0].Ev.Email != "it@acme.example" || evs[0].Ev.UserID != "olga" {
		t.Fatalf("key_valid event: %+v", evs)
	}
	wantStatus(t, e.do("POST", "/v1/orgs/acme/keys/openai/test", owner, nil), 200, "")
	wantStatus(t, e.do("DELETE", "/v1/orgs/acme/projects/web/keys/anthropic/"+projID, owner, nil), 204, "")
	wantStatus(t, e.do("DELETE", "/v1/orgs/acme/keys/openai", owner, nil), 204, "")
	wantStatus(t, e.do("DELETE", "/v1/orgs/acme/keys/openai", owner, nil), 404, "not_found")
	for _, k := range []string{orgKey, projKey} {
		assertNoLeak(t, "responses", e.transcript.String(), k, 13)
		assertNoLeak(t, "logs", e.logs.String(), k, 13)
		assertNoLeak(t, "rows", e.scanAll(), k, 13)
	}
}

// A ciphertext copied from an org or project row into another scope's row
// (or another org's) fails to decrypt; no provider call is made with it.
func TestOrgKeyRowSwapFailsClosed(t *testing.T) {
	e := newEnv(t, nil)
	owner := e.orgToken("olga", "acme", "", "owner")
	rival := e.orgToken("rita", "globex", "", "owner")
	k := openAIKey(t)
	e.fake.SetKey(k, fakeprovider.OK())
	wantStatus(t, e.do("PUT", "/v1/orgs/acme/keys/openai", owner, map[string]any{"api_key": k}), 200, "")
	wantStatus(t, e.do("PUT", "/v1/orgs/globex/keys/openai", rival, map[string]any{"api_key": openAIKey(t)}), 200, "")
	wantStatus(t, e.do("PUT", "/v1/orgs/globex/projects/p/keys/openai", rival, map[string]any{"api_key": openAIKey(t)}), 200, "")
	ctx := context.Background()
	table := aws.String(e.vars["TABLE_PREFIX"] + "byok")
	get := func(pk, sk string) map[string]types.AttributeValue {
		out, err := e.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: table, ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: sk}}})
		if err != nil || len(out.Item) == 0 {
			t.Fatalf("row %s %s: %v", pk, sk, err)
		}
		return out.Item
	}
	src := get("ORG#acme", "KEY#openai")
	for _, dst := range [][2]string{{"ORG#globex", "KEY#openai"}, {"ORG#globex", "PROJECT#p#KEY#openai"}} {
		row := get(dst[0], dst[1])
		row["ciphertext"], row["key_id"] = src["ciphertext"], src["key_id"]
		if _, err := e.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: table, Item: row}); err != nil {
			t.Fatal(err)
		}
	}
	before := e.fake.Calls(k)
	wantStatus(t, e.do("POST", "/v1/orgs/globex/keys/openai/test", rival, nil), 500, "internal")
	wantStatus(t, e.do("POST", "/v1/orgs/globex/projects/p/keys/openai/test", rival, nil), 500, "internal")
	if e.fake.Calls(k) != before {
		t.Fatal("a moved ciphertext reached the provider")
	}
}

// The rewrap command covers every key of every scope.
func TestRewrapCoversEveryScope(t *testing.T) {
	oldKey, newKey := randomHex(t, 32), randomHex(t, 32)
	e := newEnv(t, func(v map[string]string) { v["ENCRYPTION_KEY"] = oldKey })
	e.fake.SetDefault(fakeprovider.OK())
	e.setTier("uma", "premium")
	owner := e.orgToken("uma", "acme", "", "owner")
	paths := map[string]string{ // where each key is saved, with the token that may test it
		"/v1/keys/openai":                        e.token("uma", ""),
		"/v1/orgs/acme/keys/openai":              owner,
		"/v1/orgs/acme/projects/web/keys/openai": owner,
	}
	for path, tok := range paths {
		wantStatus(t, e.do("PUT", path, tok, map[string]string{"api_key": openAIKey(t)}), 200, "")
		wantStatus(t, e.do("POST", path, tok, map[string]string{"api_key": openAIKey(t)}), 201, "")
	}
	e.vars["ENCRYPTION_KEY"], e.vars["ENCRYPTION_KEY_PREVIOUS"] = newKey, oldKey
	v, err := app.NewVault(app.ConfigFromEnv(func(k string) string { return e.vars[k] }), app.Clients{})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := keys.RewrapAll(context.Background(), store.New(e.db, e.vars["TABLE_PREFIX"]), v, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil || sum.Scanned != 6 || sum.Rewrapped != 6 || sum.Errors != 0 {
		t.Fatalf("rewrap: %+v %v", sum, err)
	}
	e.vars["ENCRYPTION_KEY_PREVIOUS"] = ""
	e.restart()
	for path, tok := range paths {
		r := e.do("POST", path+"/test", tok, nil)
		wantStatus(t, r, 200, "")
		for _, en := range r.keyView(t).Entries {
			if en.Status != "valid" {
				t.Fatalf("%s after rewrap: %s", path, r.Body)
			}
		}
	}
}

// The daily revalidation checks org and project keys too; their events go
// to the org's e-mail and name the scope.
func TestRevalidatorChecksOrgKeys(t *testing.T) {
	e := newEnv(t, nil)
	q := e.subscribeEvents()
	owner := e.orgToken("olga", "acme", "", "owner")
	wantStatus(t, e.do("PUT", "/v1/orgs/acme/settings", owner, map[string]any{"email": "it@acme.example"}), 200, "")
	orgKey, projKey := openAIKey(t), anthropicKey(t)
	e.fake.SetKey(orgKey, fakeprovider.OK())
	e.fake.SetKey(projKey, fakeprovider.OK())
	wantStatus(t, e.do("PUT", "/v1/orgs/acme/keys/openai", owner, map[string]any{"api_key": orgKey}), 200, "")
	wantStatus(t, e.do("PUT", "/v1/orgs/acme/projects/web/keys/anthropic", owner, map[string]any{"api_key": projKey}), 200, "")
	e.fake.SetKey(projKey, fakeprovider.Unauthorized())
	sum, err := e.runner(2, &lockedBuffer{}).Run(context.Background())
	if err != nil || sum.Checked != 2 || sum.Valid != 1 || sum.Invalid != 1 || sum.Errors != 0 {
		t.Fatalf("pass: %+v %v", sum, err)
	}
	evs := q.drain()
	if len(evs) != 1 || evs[0].Type != "byok.key_invalid" || evs[0].Ev.Email != "it@acme.example" || evs[0].Ev.Scope != "project" ||
		evs[0].Ev.Org != "acme" || evs[0].Ev.Project != "web" || evs[0].Ev.DetectedBy != "schedule" {
		t.Fatalf("events: %+v", evs)
	}
	if v := e.listed("/v1/orgs/acme/projects/web", owner, "anthropic"); v.Entries[0].Status != "invalid" {
		t.Fatalf("project key after the pass: %+v", v)
	}
}
