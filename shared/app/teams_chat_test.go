package app_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/synthstack/byok/shared/app"
	"github.com/synthstack/byok/shared/awstest"
	"github.com/synthstack/byok/shared/fakeprovider"
	"github.com/synthstack/byok/shared/store"
)

// teamKey is one key of a failover case: where it is stored and how the
// fake upstream answers it.
type teamKey struct {
	name  string // how the case refers to it
	scope string // user, org, project
	b     fakeprovider.Behavior
}

// saveTeamKey stores an OpenAI key of scope for user in org/project (the
// fake accepts it while it is saved) and returns its key id.
func (e *testEnv) saveTeamKey(user, org, project, scope string, b fakeprovider.Behavior) (key, id string) {
	e.t.Helper()
	key = openAIKey(e.t)
	e.fake.SetKey(key, fakeprovider.OK())
	path, tok := "/v1/keys/openai", e.token(user, "")
	switch scope {
	case "org":
		path, tok = "/v1/orgs/"+org+"/keys/openai", e.orgToken("owner-"+org, org, "", "owner")
	case "project":
		path, tok = "/v1/orgs/"+org+"/projects/"+project+"/keys/openai", e.orgToken("owner-"+org, org, "", "owner")
	}
	r := e.do("POST", path, tok, map[string]any{"api_key": key})
	wantStatus(e.t, r, 201, "")
	e.fake.SetKey(key, b)
	return key, r.keyView(e.t).KeyID
}

// chatKeysSeen returns, in arrival order, the keys of the chat requests the
// fake received after seq.
func (e *testEnv) chatKeysSeen(after int) []string {
	var out []string
	for _, rq := range e.fake.Requests() {
		if rq.Seq > after && strings.HasSuffix(rq.Path, "/chat/completions") {
			out = append(out, rq.Key)
		}
	}
	return out
}

// scanUsage returns every usage row as name=value lines.
func (e *testEnv) scanUsage() string {
	e.t.Helper()
	var sb strings.Builder
	p := dynamodb.NewScanPaginator(e.db, &dynamodb.ScanInput{TableName: aws.String(store.UsageTable.Name(e.vars["TABLE_PREFIX"]))})
	for p.HasMorePages() {
		out, err := p.NextPage(context.Background())
		if err != nil {
			e.t.Fatal(err)
		}
		for _, it := range out.Items {
			for k, v := range it {
				if sv, ok := v.(*types.AttributeValueMemberS); ok {
					sb.WriteString(k + "=" + sv.Value + "\n")
				}
			}
		}
	}
	return sb.String()
}

func (e *testEnv) lastSeq() int {
	n := 0
	for _, rq := range e.fake.Requests() {
		n = max(n, rq.Seq)
	}
	return n
}

// docs/teams.md: a request walks project → org → personal keys; a
// fallback-class failure or a provider rate limit moves to the next key
// before the routing table applies; the answer names the key it used.
func TestTeamKeyFailover(t *testing.T) {
	e := newEnv(t, nil)
	ok, s500, s401, s402, s429, s400 := fakeprovider.OK(), fakeprovider.ServerError(), fakeprovider.Unauthorized(),
		fakeprovider.PaymentRequired(), fakeprovider.RateLimited(), fakeprovider.Behavior{Status: http.StatusBadRequest}
	cases := []struct {
		name    string
		keys    []teamKey
		credits bool     // the member has platform credits
		saw     []string // keys the fake saw, in order
		status  int
		route   string
		used    string // X-Byok-Key names this key ("" none)
		scope   string
		code    string // error code when not 200
	}{
		{"one project key", []teamKey{{"P", "project", ok}}, false, []string{"P"}, 200, "byok", "P", "project", ""},
		{"project first", []teamKey{{"U", "user", ok}, {"O", "org", ok}, {"P", "project", ok}}, false, []string{"P"}, 200, "byok", "P", "project", ""},
		{"401 moves on", []teamKey{{"P", "project", s401}, {"O", "org", ok}}, false, []string{"P", "O"}, 200, "byok", "O", "org", ""},
		{"500 then 429 then personal", []teamKey{{"P", "project", s500}, {"O", "org", s429}, {"U", "user", ok}}, false, []string{"P", "O", "U"}, 200, "byok", "U", "user", ""},
		{"402 moves on", []teamKey{{"O", "org", s402}, {"U", "user", ok}}, false, []string{"O", "U"}, 200, "byok", "U", "user", ""},
		{"429 on the last key is 429", []teamKey{{"O", "org", s500}, {"U", "user", s429}}, true, []string{"O", "U"}, 429, "byok", "U", "user", "provider_rate_limited"},
		{"429 on the only key, never credits", []teamKey{{"P", "project", s429}}, true, []string{"P"}, 429, "byok", "P", "project", "provider_rate_limited"},
		{"request error stops the walk", []teamKey{{"P", "project", s400}, {"O", "org", ok}}, true, []string{"P"}, 400, "byok", "P", "project", ""},
		{"every key fails, credits", []teamKey{{"P", "project", s401}, {"O", "org", s500}, {"U", "user", s402}}, true, []string{"P", "O", "U", "internal"}, 200, "credits", "", "", ""},
		{"every key fails, no credits", []teamKey{{"O", "org", s500}, {"U", "user", s500}}, false, []string{"O", "U"}, 402, "byok", "U", "user", "payment_required"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			user, org := fmt.Sprintf("fo-user-%d", i), fmt.Sprintf("fo-org-%d", i)
			e.setTier(user, "premium")
			if tc.credits {
				e.grant(user, 10_000_000)
			}
			names := map[string]string{internalOpenAIKey: "internal"}
			ids := map[string]string{}
			for _, k := range tc.keys {
				key, id := e.saveTeamKey(user, org, "web", k.scope, k.b)
				names[key], ids[k.name] = k.name, id
			}
			before := e.lastSeq()
			r := e.do("POST", "/v1/chat/completions", e.orgToken(user, org, "web", "member"), string(chatBody("gpt-4o-mini", 10, "hi")))
			var saw []string
			for _, k := range e.chatKeysSeen(before) {
				saw = append(saw, names[k])
			}
			if !slices.Equal(saw, tc.saw) {
				t.Fatalf("upstream saw %v, want %v (%d %s)", saw, tc.saw, r.Status, r.Body)
			}
			if r.Status != tc.status || r.Header.Get("X-Byok-Route") != tc.route {
				t.Fatalf("got %d route %q, want %d %q: %s", r.Status, r.Header.Get("X-Byok-Route"), tc.status, tc.route, r.Body)
			}
			if tc.code != "" && r.errCode(t) != tc.code {
				t.Fatalf("code %q, want %q: %s", r.errCode(t), tc.code, r.Body)
			}
			if got, want := r.Header.Get("X-Byok-Key"), ids[tc.used]; got != want || r.Header.Get("X-Byok-Key-Scope") != tc.scope {
				t.Fatalf("X-Byok-Key %q scope %q, want %q %q", got, r.Header.Get("X-Byok-Key-Scope"), want, tc.scope)
			}
		})
	}
}

// A 401 on an org key marks that key (not the member's) invalid: the next
// request skips it; each try is its own usage row naming its key.
func TestTeamKeyInvalidOnUse(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("ivy", "premium")
	orgKey, orgID := e.saveTeamKey("ivy", "inv", "", "org", fakeprovider.Unauthorized())
	userKey, userID := e.saveTeamKey("ivy", "inv", "", "user", fakeprovider.OK())
	tok := e.orgToken("ivy", "inv", "", "member")
	for i := range 2 {
		before := e.lastSeq()
		r := e.do("POST", "/v1/chat/completions", tok, string(chatBody("gpt-4o-mini", 10, "hi")))
		wantStatus(t, r, 200, "")
		want := []string{orgKey, userKey}
		if i == 1 {
			want = []string{userKey} // the org key is invalid now
		}
		if saw := e.chatKeysSeen(before); !slices.Equal(saw, want) || r.Header.Get("X-Byok-Key") != userID {
			t.Fatalf("request %d: saw %d keys, X-Byok-Key %q", i, len(saw), r.Header.Get("X-Byok-Key"))
		}
	}
	if v := e.listed("/v1/orgs/inv", e.orgToken("owner-inv", "inv", "", "owner"), "openai"); v.Entries[0].KeyID != orgID || v.Entries[0].Status != "invalid" {
		t.Fatalf("org key after a 401 on use: %+v", v.Entries)
	}
	if v := e.listed("/v1", e.token("ivy", ""), "openai"); v.Entries[0].Status == "invalid" {
		t.Fatalf("the member's key was marked invalid: %+v", v.Entries)
	}
	waitFor(t, "three usage rows", func() bool { return strings.Count(e.scanUsage(), "key_scope=") == 3 })
	all := e.scanUsage()
	if !strings.Contains(all, "key_id="+orgID) || !strings.Contains(all, "key_id="+userID) || !strings.Contains(all, "key_scope=org") ||
		!strings.Contains(all, "org=inv") {
		t.Fatalf("usage rows do not name their keys:\n%s", all)
	}
}

// Only the org (and project) the token names lend their keys, and an org
// that forbids personal keys keeps its members' own keys out.
func TestTeamKeyIsolation(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("mo", "premium")
	acmeKey, _ := e.saveTeamKey("mo", "acme", "", "org", fakeprovider.OK())
	webKey, _ := e.saveTeamKey("mo", "acme", "web", "project", fakeprovider.OK())
	ownKey, ownID := e.saveTeamKey("mo", "", "", "user", fakeprovider.OK())
	body := string(chatBody("gpt-4o-mini", 10, "hi"))
	for _, tc := range []struct {
		name, tok string
		want      string
		status    int
	}{
		{"member of another org", e.orgToken("mo", "globex", "web", "member"), ownKey, 200},
		{"no org", e.token("mo", ""), ownKey, 200},
		{"member without the project", e.orgToken("mo", "acme", "", "member"), acmeKey, 200},
		{"member of the project", e.orgToken("mo", "acme", "web", "member"), webKey, 200},
	} {
		before := e.lastSeq()
		r := e.do("POST", "/v1/chat/completions", tc.tok, body)
		if saw := e.chatKeysSeen(before); r.Status != tc.status || !slices.Equal(saw, []string{tc.want}) {
			t.Fatalf("%s: %d, the upstream saw %d keys (want one): %s", tc.name, r.Status, len(saw), r.Body)
		}
	}
	// personal_keys false: the org's failing key is the only candidate.
	wantStatus(t, e.do("PUT", "/v1/orgs/acme/settings", e.orgToken("owner-acme", "acme", "", "owner"), map[string]any{"personal_keys": false}), 200, "")
	e.fake.SetKey(acmeKey, fakeprovider.ServerError())
	before := e.lastSeq()
	r := e.do("POST", "/v1/chat/completions", e.orgToken("mo", "acme", "", "member"), body)
	if saw := e.chatKeysSeen(before); r.Status != 402 || !slices.Equal(saw, []string{acmeKey}) {
		t.Fatalf("org forbidding personal keys: %d, the upstream saw %d keys: %s", r.Status, len(saw), r.Body)
	}
	// The same member without the org still uses their own key.
	before = e.lastSeq()
	r = e.do("POST", "/v1/chat/completions", e.token("mo", ""), body)
	if saw := e.chatKeysSeen(before); r.Status != 200 || !slices.Equal(saw, []string{ownKey}) || r.Header.Get("X-Byok-Key") != ownID ||
		r.Header.Get("X-Byok-Key-Scope") != "user" {
		t.Fatalf("personal request: %d %v", r.Status, r.Header)
	}
}

// docs/teams.md: a warm request whose token names an org and a project
// reads the user's partition and the org's (two Queries), writes one usage
// row and calls KMS never.
func TestWarmOrgProjectRequestIO(t *testing.T) {
	kc := kms.NewFromConfig(awstest.Config(t))
	kout, err := kc.CreateKey(t.Context(), &kms.CreateKeyInput{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(v map[string]string) {
		v["KMS_KEY_ID"], v["ENCRYPTION_KEY"] = aws.ToString(kout.KeyMetadata.KeyId), ""
		v["SETTINGS_CACHE_TTL"] = "10m"
	})
	e.setTier("wes", "premium")
	projKey, _ := e.saveTeamKey("wes", "warm", "web", "project", fakeprovider.OK())
	ct := &countingTransport{ops: map[string]int{}, next: http.DefaultTransport.(*http.Transport).Clone()}
	cfg := awstest.Config(t)
	cfg.HTTPClient = &http.Client{Transport: ct}
	e.startWith(app.NewClients(cfg))
	tok := e.orgToken("wes", "warm", "web", "member")
	body := string(chatBody("gpt-4o-mini", 10, "hi"))
	for i := range 3 {
		ct.take()
		before := e.lastSeq()
		r := e.do("POST", "/v1/chat/completions", tok, body)
		if r.Status != 200 || r.Header.Get("X-Byok-Key-Scope") != "project" || !slices.Equal(e.chatKeysSeen(before), []string{projKey}) {
			t.Fatalf("request %d: %d %v %s", i, r.Status, r.Header, r.Body)
		}
		ops := ct.take()
		waitFor(t, "the usage write", func() bool {
			for op, n := range ct.take() {
				ops[op] += n
			}
			return ops["DynamoDB_20120810.PutItem"]+ops["DynamoDB_20120810.TransactWriteItems"] >= 1
		})
		if i == 0 {
			continue // cold: settings read and one KMS Decrypt of the data key
		}
		reads, writes, kmsCalls := 0, 0, 0
		for op, n := range ops {
			switch {
			case strings.HasPrefix(op, "TrentService."):
				kmsCalls += n
			case strings.HasSuffix(op, ".Query"), strings.HasSuffix(op, ".GetItem"), strings.HasSuffix(op, ".Scan"), strings.HasSuffix(op, ".BatchGetItem"):
				reads += n
			default:
				writes += n
			}
		}
		if reads > 2 || writes != 1 || kmsCalls != 0 {
			t.Fatalf("warm request %d: %v (reads %d, writes %d, KMS %d)", i, ops, reads, writes, kmsCalls)
		}
	}
}

// docs/teams.md: last_used_at is written with the usage row, at most once an
// hour per key; every try still writes its usage row.
func TestLastUsedAtOncePerHour(t *testing.T) {
	e := newEnv(t, nil)
	e.setTier("lu", "premium")
	e.saveKey("lu", "openai", openAIKey(t))
	tok := e.token("lu", "")
	lastUsed := func() string {
		s, _ := e.keyItem("lu", "openai")["last_used_at"].(*types.AttributeValueMemberS)
		if s == nil {
			return ""
		}
		return s.Value
	}
	if lastUsed() != "" {
		t.Fatalf("a fresh key has last_used_at %q", lastUsed())
	}
	chat := func() {
		t.Helper()
		wantStatus(t, e.do("POST", "/v1/chat/completions", tok, string(chatBody("gpt-4o-mini", 10, "hi"))), 200, "")
	}
	chat()
	waitFor(t, "last_used_at", func() bool { return lastUsed() != "" })
	first := lastUsed()
	chat()
	waitFor(t, "two usage rows", func() bool { return strings.Count(e.scanUsage(), "key_scope=") == 2 })
	if lastUsed() != first {
		t.Fatalf("last_used_at rewritten within the hour: %q then %q", first, lastUsed())
	}
	if v := e.listed("/v1", tok, "openai"); v.Entries[0].LastUsedAt == nil {
		t.Fatalf("last_used_at not shown: %+v", v.Entries)
	}
	// An hour later (the stored value made two hours old) it is written again.
	old := "2000-01-01T00:00:00Z"
	it := e.keyItem("lu", "openai")
	if _, err := e.db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName: aws.String(e.vars["TABLE_PREFIX"] + "byok"), Key: map[string]types.AttributeValue{"pk": it["pk"], "sk": it["sk"]},
		UpdateExpression:          aws.String("SET last_used_at = :old"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":old": &types.AttributeValueMemberS{Value: old}},
	}); err != nil {
		t.Fatal(err)
	}
	chat()
	waitFor(t, "last_used_at again", func() bool { return lastUsed() > first })
	waitFor(t, "three usage rows", func() bool { return strings.Count(e.scanUsage(), "key_scope=") == 3 })
}
