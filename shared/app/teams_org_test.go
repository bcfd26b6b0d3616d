package app_test

import (
	"encoding/csv"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/synthstack/byok/shared/fakeprovider"
)

type orgSummaryJSON struct {
	Org string `json:"org"`
	summaryJSON
	ByProject map[string]struct {
		splitJSON
		ByProvider map[string]splitJSON `json:"by_provider"`
	} `json:"by_project"`
	ByMember map[string]splitJSON `json:"by_member"`
}

// docs/teams.md: an org admin's GET /v1/usage?org= and its export cover
// every member's tries with the org's or its projects' keys, per project
// the token named, and nothing else of the members; members and other
// orgs' admins get 403 and no data.
func TestOrgUsageView(t *testing.T) {
	e := newEnv(t, nil)
	for _, u := range []string{"amy", "bob"} {
		e.setTier(u, "premium")
	}
	e.saveTeamKey("amy", "chg", "web", "project", fakeprovider.OK())
	e.saveTeamKey("amy", "chg", "", "org", fakeprovider.OK())
	e.saveTeamKey("bob", "", "", "user", fakeprovider.OK())
	body := string(chatBody("gpt-4o-mini", 10, "hi"))
	for _, tc := range []struct {
		tok, scope string
	}{
		{e.orgToken("amy", "chg", "web", "member"), "project"}, // web's key
		{e.orgToken("bob", "chg", "api", "member"), "org"},     // api has no keys: the org's, charged to api
		{e.orgToken("amy", "chg", "", "member"), "org"},        // no project named
		{e.token("bob", ""), "user"},                           // bob's own key: not the org's business
	} {
		r := e.do("POST", "/v1/chat/completions", tc.tok, body)
		if r.Status != 200 || r.Header.Get("X-Byok-Key-Scope") != tc.scope {
			t.Fatalf("chat: %d scope %q, want %q: %s", r.Status, r.Header.Get("X-Byok-Key-Scope"), tc.scope, r.Body)
		}
	}
	waitFor(t, "four usage rows", func() bool { return strings.Count(e.scanUsage(), "key_scope=") == 4 })

	admin := e.orgToken("olive", "chg", "", "admin")
	r := e.do("GET", "/v1/usage?org=chg", admin, nil)
	wantStatus(t, r, 200, "")
	var s orgSummaryJSON
	if err := json.Unmarshal(r.Body, &s); err != nil {
		t.Fatal(err)
	}
	if s.Org != "chg" || s.BYOK.Requests != 3 || s.Credits.Requests != 0 || s.BYOK.InputTokens == 0 {
		t.Fatalf("org totals: %s", r.Body)
	}
	projects := map[string]int64{}
	for p, v := range s.ByProject {
		projects[p] = v.BYOK.Requests
		if v.ByProvider["openai"].BYOK.Requests != v.BYOK.Requests {
			t.Errorf("project %q per provider: %+v", p, v.ByProvider)
		}
	}
	if len(projects) != 3 || projects["web"] != 1 || projects["api"] != 1 || projects[""] != 1 {
		t.Fatalf("by_project = %v, want web 1, api 1, \"\" 1: %s", projects, r.Body)
	}
	if len(s.ByMember) != 2 || s.ByMember["amy"].BYOK.Requests != 2 || s.ByMember["bob"].BYOK.Requests != 1 {
		t.Fatalf("by_member: %s", r.Body)
	}
	if n := s.ByProvider["openai"].BYOK.Requests; n != 3 {
		t.Fatalf("by_provider openai = %d, want 3", n)
	}
	var perDay int64
	for _, d := range s.ByDay {
		perDay += d.BYOK.Requests
	}
	if len(s.ByDay) != 30 || perDay != 3 {
		t.Fatalf("by_day: %d days, %d requests", len(s.ByDay), perDay)
	}

	// CSV: one row per org try, naming the member, the key and the project.
	r = e.do("GET", "/v1/usage/export?org=chg&format=csv", admin, nil)
	wantStatus(t, r, 200, "")
	recs, err := csv.NewReader(strings.NewReader(string(r.Body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	var got []string
	for _, rec := range recs[1:] {
		got = append(got, rec[col["user_id"]]+"/"+rec[col["key_scope"]]+"/"+rec[col["for_project"]]+"/"+rec[col["route"]])
	}
	slices.Sort(got)
	if want := []string{"amy/org//byok", "amy/project/web/byok", "bob/org/api/byok"}; !slices.Equal(got, want) {
		t.Fatalf("CSV rows %v, want %v:\n%s", got, want, r.Body)
	}
	if cd := r.Header.Get("Content-Disposition"); !strings.Contains(cd, "usage-org-chg-") {
		t.Errorf("Content-Disposition %q", cd)
	}
	// JSON: the same rows.
	r = e.do("GET", "/v1/usage/export?org=chg&format=json", admin, nil)
	wantStatus(t, r, 200, "")
	var rows []map[string]any
	if err := json.Unmarshal(r.Body, &rows); err != nil {
		t.Fatalf("%v: %s", err, r.Body)
	}
	if len(rows) != 3 {
		t.Fatalf("%d JSON rows, want 3: %s", len(rows), r.Body)
	}
	for _, row := range rows {
		if row["org"] != "chg" || row["user_id"] == "bob" && row["key_scope"] == "user" {
			t.Fatalf("JSON row not of the org: %v", row)
		}
	}

	// Members, other orgs' admins and tokens without the org: 403, no data.
	for name, tok := range map[string]string{
		"member":            e.orgToken("amy", "chg", "web", "member"),
		"other org's admin": e.orgToken("oscar", "rival", "", "owner"),
		"no org":            e.token("olive", ""),
	} {
		for _, path := range []string{"/v1/usage?org=chg", "/v1/usage/export?org=chg&format=csv", "/v1/usage/export?org=chg&format=json"} {
			r := e.do("GET", path, tok, nil)
			if r.Status != 403 || r.errCode(t) != "forbidden" || strings.Contains(string(r.Body), "gpt-4o-mini") {
				t.Fatalf("%s GET %s: %d %s", name, path, r.Status, r.Body)
			}
		}
	}
	// Another org's admin sees their own org: nothing of chg.
	r = e.do("GET", "/v1/usage?org=rival", e.orgToken("oscar", "rival", "", "owner"), nil)
	wantStatus(t, r, 200, "")
	if strings.Contains(string(r.Body), `"amy"`) || strings.Contains(string(r.Body), `"requests":1`) {
		t.Fatalf("another org's view shows chg's usage: %s", r.Body)
	}
	if r := e.do("GET", "/v1/usage?org=bad%23id", admin, nil); r.Status != 400 {
		t.Fatalf("invalid org id: %d %s", r.Status, r.Body)
	}
	// The members' own views are unchanged: bob's holds his personal row too.
	r = e.do("GET", "/v1/usage", e.token("bob", ""), nil)
	var own summaryJSON
	if err := json.Unmarshal(r.Body, &own); err != nil || own.BYOK.Requests != 2 {
		t.Fatalf("bob's own usage: %s", r.Body)
	}
}

// docs/teams.md: byok.fallback and byok.quota_warning about an org's or a
// project's key name its scope, org and project, go to the org's e-mail
// (not the member's), and come at most once per key per hour, whichever
// member's request raised them.
func TestOrgKeyEventsGoToOrgEmail(t *testing.T) {
	e := newEnv(t, nil)
	q := e.subscribeEvents()
	wantStatus(t, e.do("PUT", "/v1/orgs/evo/settings", e.orgToken("owner-evo", "evo", "", "owner"),
		map[string]any{"email": "ops@evo.example"}), 200, "")
	for _, u := range []string{"mia", "max", "ned", "ola"} {
		e.setTier(u, "premium")
		e.grant(u, 1_000_000)
	}
	orgKey, _ := e.saveTeamKey("mia", "evo", "", "org", fakeprovider.ServerError())
	q.drain()
	body := string(chatBody("gpt-4o-mini", 10, "hi"))
	for _, u := range []string{"mia", "mia", "max"} {
		r := e.do("POST", "/v1/chat/completions", e.orgToken(u, "evo", "", "member"), body)
		if r.Status != 200 || r.Header.Get("X-Byok-Route") != "credits" {
			t.Fatalf("%s: %d route %q: %s", u, r.Status, r.Header.Get("X-Byok-Route"), r.Body)
		}
	}
	got := q.drain()
	expectEvents(t, "org fallback", got, eventBody{EventType: "byok.fallback", UserID: "mia", Provider: "openai",
		DetectedBy: "use", Email: "ops@evo.example", Hint: hintOf(orgKey)})
	if ev := got[0].Ev; ev.Scope != "org" || ev.Org != "evo" || ev.Project != "" || !strings.Contains(ev.Subject+ev.Text, "organisation evo") {
		t.Fatalf("org fallback event: %+v", ev)
	}

	// A project key's provider rate-limit headers run low for two members.
	projKey, _ := e.saveTeamKey("ned", "evo", "web", "project", fakeprovider.Behavior{Headers: map[string]string{
		"x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "42",
	}})
	q.drain()
	for _, u := range []string{"ned", "ola", "ned"} {
		r := e.do("POST", "/v1/chat/completions", e.orgToken(u, "evo", "web", "member"), body)
		if r.Status != 200 || r.Header.Get("X-Byok-Key-Scope") != "project" {
			t.Fatalf("%s: %d scope %q: %s", u, r.Status, r.Header.Get("X-Byok-Key-Scope"), r.Body)
		}
	}
	got = q.drain()
	expectEvents(t, "project quota warning", got, eventBody{EventType: "byok.quota_warning", UserID: "ned", Provider: "openai",
		DetectedBy: "use", Email: "ops@evo.example", Hint: hintOf(projKey)})
	if ev := got[0].Ev; ev.Scope != "project" || ev.Org != "evo" || ev.Project != "web" || !strings.Contains(strings.ToLower(ev.Subject), "project web") {
		t.Fatalf("project quota warning: %+v", ev)
	}
}

// GET /v1/models lists the models a member can use through the org's and
// the project's keys too, with route byok; a token without the org does
// not see them.
func TestModelsThroughOrgKeys(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("moe", "premium") // no key of his own, no credits
	e.saveTeamKey("moe", "mods", "", "org", fakeprovider.OK())
	models := func(tok string) map[string]string {
		t.Helper()
		r := e.do("GET", "/v1/models", tok, nil)
		var ml struct {
			Data []struct{ ID, Provider, Route string } `json:"data"`
		}
		if err := json.Unmarshal(r.Body, &ml); err != nil || r.Status != 200 {
			t.Fatalf("models: %d %s", r.Status, r.Body)
		}
		out := map[string]string{}
		for _, m := range ml.Data {
			out[m.Provider] = m.Route
			if m.Provider == "openai" && m.Route != "byok" {
				t.Fatalf("model %s route %s, want byok", m.ID, m.Route)
			}
		}
		return out
	}
	if got := models(e.token("moe", "")); len(got) != 0 {
		t.Fatalf("without the org moe can use %v", got)
	}
	if got := models(e.orgToken("moe", "mods", "", "member")); len(got) != 1 || got["openai"] != "byok" {
		t.Fatalf("with the org's OpenAI key moe sees %v, want openai models only, byok", got)
	}
	if got := models(e.orgToken("moe", "other", "", "member")); len(got) != 0 {
		t.Fatalf("another org's token sees %v", got)
	}
}
