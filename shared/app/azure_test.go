package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	anthropic "github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/chromedp/chromedp"
	openai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/synthstack/byok/shared/fakeprovider"
)

func azureKey(t testing.TB) string { return randomHex(t, 16) }

// newAzureEnv is newEnv with the fake's Azure routes served over TLS at
// https://127.0.0.1:<port> (the endpoint returned), the suffix list set to
// suffixes and the app's upstream transport trusting that server.
func newAzureEnv(t *testing.T, suffixes string) (*testEnv, string) {
	e := newEnv(t, func(v map[string]string) { v["AZURE_OPENAI_ALLOWED_SUFFIXES"] = suffixes })
	ts := httptest.NewTLSServer(e.fake.NativeHandler())
	t.Cleanup(ts.Close)
	e.clients.Upstream = ts.Client().Transport.(*http.Transport)
	e.restart()
	e.setTier("alice", "premium")
	return e, ts.URL
}

type azureEntry struct {
	Status      string            `json:"status"`
	Reason      *string           `json:"reason"`
	Detail      *string           `json:"detail"`
	Endpoint    string            `json:"endpoint"`
	APIVersion  string            `json:"api_version"`
	Deployments map[string]string `json:"deployments"`
}

func azureEntries(t *testing.T, r response) []azureEntry {
	t.Helper()
	var v struct {
		Entries []azureEntry `json:"entries"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("not a key view (%d): %s", r.Status, r.Body)
	}
	return v.Entries
}

// azureListed returns the azure_openai entries of GET /v1/keys.
func azureListed(t *testing.T, e *testEnv, token string) []azureEntry {
	t.Helper()
	var l struct {
		Keys []struct {
			Provider string       `json:"provider"`
			Entries  []azureEntry `json:"entries"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(e.do("GET", "/v1/keys", token, nil).Body, &l); err != nil {
		t.Fatal(err)
	}
	for _, v := range l.Keys {
		if v.Provider == "azure_openai" {
			return v.Entries
		}
	}
	t.Fatal("no azure_openai in GET /v1/keys")
	return nil
}

// noKeyInURLs fails when any request the fake saw carries key in its path
// or query, or reached it other than in the api-key header.
func noKeyInURLs(t *testing.T, fake *fakeprovider.Server, key string) int {
	t.Helper()
	n := 0
	for _, rq := range fake.Requests() {
		if strings.Contains(rq.Path, key) || strings.Contains(rq.RawQuery, key) {
			t.Fatalf("the key reached a URL: %s?%s", rq.Path, rq.RawQuery)
		}
		if rq.Protocol == fakeprovider.ProtocolAzure {
			if rq.Header.Get("api-key") != key || rq.Header.Get("Authorization") != "" {
				t.Fatalf("azure request not authorised by api-key alone: %v", rq.Header)
			}
			n++
		}
	}
	return n
}

// Saving an Azure key: the endpoint normalised, api_version defaulted, a
// list of deployments read as name→name, validated with a 1-token call on
// a deployment through the guarded client, listed, tested again; the key
// never in a URL or an answer.
func TestAzureKeySaveListTest(t *testing.T) {
	e, ep := newAzureEnv(t, "127.0.0.1")
	alice := e.token("alice", "")
	k := azureKey(t)
	e.fake.SetKey(k, fakeprovider.OK())
	r := e.do("PUT", "/v1/keys/azure_openai", alice, map[string]any{"api_key": k, "endpoint": ep + "/", "deployments": []string{"gpt4o", "emb"}})
	wantStatus(t, r, 200, "")
	if strings.Contains(string(r.Body), k) {
		t.Fatal("the key came back")
	}
	en := azureEntries(t, r)
	if len(en) != 1 || en[0].Status != "valid" || en[0].Endpoint != ep || en[0].APIVersion != "2024-10-21" ||
		en[0].Deployments["gpt4o"] != "gpt4o" || en[0].Deployments["emb"] != "emb" || len(en[0].Deployments) != 2 {
		t.Fatalf("saved: %s", r.Body)
	}
	last := e.fake.LastRequest()
	if last.Path != "/openai/deployments/emb/chat/completions" || last.RawQuery != "api-version=2024-10-21" {
		t.Fatalf("validation request: %s?%s", last.Path, last.RawQuery)
	}
	if v := e.listed("/v1", alice, "azure_openai"); !v.Configured || v.Entries[0].Status != "valid" {
		t.Fatalf("listed: %+v", v)
	}
	wantStatus(t, e.do("POST", "/v1/keys/azure_openai/test", alice, nil), 200, "")
	if n := noKeyInURLs(t, e.fake, k); n != 2 {
		t.Fatalf("azure calls = %d, want 2 (save, test)", n)
	}
	// A map of model to deployment and an explicit preview api_version.
	r = e.do("POST", "/v1/keys/azure_openai", alice, map[string]any{"api_key": k, "endpoint": ep, "api_version": "2025-04-01-preview",
		"deployments": map[string]string{"gpt-4o": "prod-4o"}})
	wantStatus(t, r, 201, "")
	if last := e.fake.LastRequest(); last.Path != "/openai/deployments/prod-4o/chat/completions" || last.RawQuery != "api-version=2025-04-01-preview" {
		t.Fatalf("validation request: %s?%s", last.Path, last.RawQuery)
	}
	// No deployments: GET /openai/models.
	wantStatus(t, e.do("PUT", "/v1/orgs/acme/keys/azure_openai", e.orgToken("olga", "acme", "", "owner"), map[string]any{"api_key": k, "endpoint": ep}), 200, "")
	if last := e.fake.LastRequest(); last.Method != "GET" || last.Path != "/openai/models" {
		t.Fatalf("validation request: %s %s", last.Method, last.Path)
	}
}

// Bad Azure configuration is a 400 naming the field, before any network
// call and with nothing stored; Azure's fields on other providers too.
func TestAzureKeyRefusals(t *testing.T) {
	e, ep := newAzureEnv(t, "127.0.0.1")
	alice := e.token("alice", "")
	k := azureKey(t)
	e.fake.SetDefault(fakeprovider.OK())
	many := map[string]string{}
	for i := range 51 {
		many[fmt.Sprintf("m%d", i)] = fmt.Sprintf("d%d", i)
	}
	cases := []struct {
		name, prov string
		body       map[string]any
		field      string
	}{
		{"no endpoint", "azure_openai", map[string]any{"api_key": k}, "endpoint"},
		{"http endpoint", "azure_openai", map[string]any{"api_key": k, "endpoint": strings.Replace(ep, "https:", "http:", 1)}, "https"},
		{"host outside the suffixes", "azure_openai", map[string]any{"api_key": k, "endpoint": "https://evil.example.com"}, "end in one of 127.0.0.1"},
		{"endpoint with a path", "azure_openai", map[string]any{"api_key": k, "endpoint": ep + "/openai"}, "without credentials, path or query"},
		{"endpoint with credentials", "azure_openai", map[string]any{"api_key": k, "endpoint": strings.Replace(ep, "https://", "https://u:p@", 1)}, "endpoint"},
		{"bad api_version", "azure_openai", map[string]any{"api_key": k, "endpoint": ep, "api_version": "latest"}, "api_version"},
		{"bad deployment name", "azure_openai", map[string]any{"api_key": k, "endpoint": ep, "deployments": []string{"a/b"}}, "deployments"},
		{"repeated deployment", "azure_openai", map[string]any{"api_key": k, "endpoint": ep, "deployments": []string{"a", "a"}}, "twice"},
		{"deployments of the wrong type", "azure_openai", map[string]any{"api_key": k, "endpoint": ep, "deployments": "gpt4o"}, "deployments"},
		{"too many deployments", "azure_openai", map[string]any{"api_key": k, "endpoint": ep, "deployments": many}, "at most 50"},
		{"bad key format", "azure_openai", map[string]any{"api_key": "sk-" + randomHex(t, 20), "endpoint": ep}, "hexadecimal"},
		{"endpoint on openai", "openai", map[string]any{"api_key": openAIKey(t), "endpoint": ep}, `\"endpoint\" is only for azure_openai`},
		{"deployments on google", "google", map[string]any{"api_key": googleKey(t), "deployments": []string{"x"}}, `\"deployments\" is only for azure_openai`},
		{"api_version on mistral", "mistral", map[string]any{"api_key": mistralKey(t), "api_version": "2024-10-21"}, `\"api_version\" is only for azure_openai`},
	}
	for _, tc := range cases {
		for _, method := range []string{"PUT", "POST"} {
			r := e.do(method, "/v1/keys/"+tc.prov, alice, tc.body)
			if r.Status != 400 || !strings.Contains(string(r.Body), tc.field) {
				t.Fatalf("%s %s: %d %s", tc.name, method, r.Status, r.Body)
			}
			if c := r.errCode(t); c != "invalid_request" && c != "invalid_key_format" {
				t.Fatalf("%s: code %s", tc.name, c)
			}
		}
	}
	if n := e.fake.TotalCalls(); n != 0 {
		t.Fatalf("refused saves reached the provider %d times", n)
	}
	for _, p := range []string{"azure_openai", "openai", "google", "mistral"} {
		if e.keyItem("alice", p) != nil {
			t.Fatalf("a refused %s save stored a row", p)
		}
	}
}

// The endpoint is a request forgery surface: a name under an allowed
// suffix that resolves to a loopback address is refused when dialling
// (400 on save, nothing stored, nothing sent), and a redirect is never
// followed (the fake behind it sees nothing).
func TestAzureEndpointSSRF(t *testing.T) {
	e, ep := newAzureEnv(t, "localhost")
	alice := e.token("alice", "")
	k := azureKey(t)
	e.fake.SetDefault(fakeprovider.OK())
	port := ep[strings.LastIndexByte(ep, ':'):]
	r := e.do("PUT", "/v1/keys/azure_openai", alice, map[string]any{"api_key": k, "endpoint": "https://localhost" + port})
	if r.Status != 400 || !strings.Contains(string(r.Body), "address that is not public") || strings.Contains(string(r.Body), "127.0.0.1") {
		t.Fatalf("inward endpoint: %d %s", r.Status, r.Body)
	}
	if e.fake.TotalCalls() != 0 || e.keyItem("alice", "azure_openai") != nil {
		t.Fatal("an inward endpoint was called or stored")
	}

	e2, ep2 := newAzureEnv(t, "127.0.0.1")
	e2.fake.SetDefault(fakeprovider.OK())
	redir := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, ep2+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer redir.Close()
	e2.clients.Upstream.TLSClientConfig.RootCAs.AddCert(redir.Certificate())
	e2.restart()
	r = e2.do("PUT", "/v1/keys/azure_openai", e2.token("alice", ""), map[string]any{"api_key": k, "endpoint": redir.URL, "deployments": []string{"d"}})
	if en := azureEntries(t, r); r.Status != 200 || en[0].Status != "unchecked" || en[0].Reason == nil || *en[0].Reason != "unexpected_status" {
		t.Fatalf("redirecting endpoint: %d %s", r.Status, r.Body)
	}
	if n := e2.fake.TotalCalls(); n != 0 {
		t.Fatalf("a redirect was followed: the fake saw %d requests", n)
	}
}

// Whoever can edit a key row cannot redirect its key: the endpoint is bound
// into the ciphertext, so a row whose endpoint was changed fails to open
// (test and chat answer 500) and nothing reaches any host.
func TestAzureEndpointRowEditFailsClosed(t *testing.T) {
	e, ep := newAzureEnv(t, "127.0.0.1")
	alice := e.token("alice", "")
	k := azureKey(t)
	e.fake.SetKey(k, fakeprovider.OK())
	wantStatus(t, e.do("PUT", "/v1/keys/azure_openai", alice, map[string]any{"api_key": k, "endpoint": ep, "deployments": []string{"gpt4o"}}), 200, "")
	row := e.keyItem("alice", "azure_openai")
	if row["endpoint"].(*types.AttributeValueMemberS).Value != ep {
		t.Fatalf("stored endpoint: %v", row["endpoint"])
	}
	for _, edited := range []string{"https://127.0.0.1:1", ""} {
		if edited == "" {
			delete(row, "endpoint")
		} else {
			row["endpoint"] = &types.AttributeValueMemberS{Value: edited}
		}
		if _, err := e.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(e.vars["TABLE_PREFIX"] + "byok"), Item: row}); err != nil {
			t.Fatal(err)
		}
		before := e.fake.TotalCalls()
		wantStatus(t, e.do("POST", "/v1/keys/azure_openai/test", alice, nil), 500, "internal")
		r := e.do("POST", "/v1/chat/completions", alice, map[string]any{"model": "azure/gpt4o", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
		if r.Status != 500 || e.fake.TotalCalls() != before {
			t.Fatalf("edited endpoint %q: chat %d %s, fake calls %d→%d", edited, r.Status, r.Body, before, e.fake.TotalCalls())
		}
	}
}

// Chat end to end on an Azure key: openai-go non-stream, stream, tools and
// embeddings, and an Anthropic caller through anthropic-sdk-go; every call
// to the mapped deployment with api-version, the key only in api-key; one
// BYOK usage row per call.
func TestAzureChatSDKs(t *testing.T) {
	e, ep := newAzureEnv(t, "127.0.0.1")
	alice := e.token("alice", "")
	k := azureKey(t)
	e.fake.SetKey(k, fakeprovider.OK())
	wantStatus(t, e.do("PUT", "/v1/keys/azure_openai", alice, map[string]any{"api_key": k, "endpoint": ep,
		"deployments": map[string]string{"gpt-4o": "prod-4o", "emb": "emb-small"}}), 200, "")
	ctx := context.Background()
	oc := openai.NewClient(option.WithBaseURL(e.srv.URL+"/v1/"), option.WithAPIKey(alice), option.WithMaxRetries(0))
	var hr *http.Response
	cc, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "azure/gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")}}, option.WithResponseInto(&hr))
	if err != nil || len(cc.Choices) != 1 || !strings.HasPrefix(cc.Choices[0].Message.Content, "Fake reply") || cc.Usage.TotalTokens == 0 || cc.Model != "azure/gpt-4o" {
		t.Fatalf("chat: %v %+v", err, cc)
	}
	if hr.Header.Get("X-Byok-Route") != "byok" || hr.Header.Get("X-Byok-Key") == "" {
		t.Fatalf("headers: %v", hr.Header)
	}
	if last := e.fake.LastRequest(); last.Path != "/openai/deployments/prod-4o/chat/completions" || last.RawQuery != "api-version=2024-10-21" {
		t.Fatalf("upstream: %s?%s", last.Path, last.RawQuery)
	}
	st := oc.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "azure/gpt-4o",
		Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
	var text strings.Builder
	var usage int64
	for st.Next() {
		ch := st.Current()
		if len(ch.Choices) > 0 {
			text.WriteString(ch.Choices[0].Delta.Content)
		}
		usage = max(usage, ch.Usage.TotalTokens)
	}
	if err := st.Err(); err != nil || !strings.HasPrefix(text.String(), "Fake reply") || usage == 0 {
		t.Fatalf("stream: %v %q %d", err, text.String(), usage)
	}
	e.fake.SetKey(k, fakeprovider.Behavior{Status: 200, ToolCall: true})
	tc, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "azure/gpt-4o",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris?")},
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "get_weather",
			Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}}})}})
	if err != nil || len(tc.Choices) != 1 || len(tc.Choices[0].Message.ToolCalls) != 1 || tc.Choices[0].Message.ToolCalls[0].Function.Name != "get_weather" ||
		tc.Choices[0].FinishReason != "tool_calls" {
		t.Fatalf("tools: %v %+v", err, tc)
	}
	if !strings.Contains(string(e.fake.LastRequest().Body), `"get_weather"`) {
		t.Fatal("the tool was not sent upstream")
	}
	e.fake.SetKey(k, fakeprovider.OK())
	emb, err := oc.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "azure/emb", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}}})
	if err != nil || len(emb.Data) != 2 || len(emb.Data[0].Embedding) == 0 {
		t.Fatalf("embeddings: %v %+v", err, emb)
	}
	if last := e.fake.LastRequest(); last.Path != "/openai/deployments/emb-small/embeddings" {
		t.Fatalf("embeddings upstream: %s", last.Path)
	}
	ac := anthropic.NewClient(aoption.WithBaseURL(e.srv.URL), aoption.WithAPIKey(alice), aoption.WithMaxRetries(0))
	msg, err := ac.Messages.New(ctx, anthropic.MessageNewParams{Model: "azure/gpt-4o", MaxTokens: 64,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Say hello"))}})
	if err != nil || len(msg.Content) == 0 || !strings.HasPrefix(msg.Content[0].Text, "Fake reply") || msg.Usage.OutputTokens == 0 {
		t.Fatalf("anthropic caller: %v %+v", err, msg)
	}
	if n := noKeyInURLs(t, e.fake, k); n != 6 { // save + five calls
		t.Fatalf("azure calls = %d, want 6", n)
	}
	e.waitUsage("alice", 5, 0) // rows are written after the answer
	byok := 0
	for _, row := range e.usageRows("alice") {
		if p, ok := row["provider"].(*types.AttributeValueMemberS); ok && p.Value == "azure_openai" {
			if rt := row["route"].(*types.AttributeValueMemberS).Value; rt != "byok" {
				t.Fatalf("usage row route %s", rt)
			}
			byok++
		}
	}
	if byok != 5 {
		t.Fatalf("azure usage rows = %d, want 5", byok)
	}
}

// The failure table (docs/api.md §8) for Azure in byok_first with credits:
// there is no platform Azure key, so a fallback-class failure ends in the
// credits route's 503 naming the key's failure; a 401 marks the key
// invalid with Azure's explanation kept in detail; a rate limit comes back
// as 429 with Retry-After, a missing deployment as 404.
func TestAzureFailureTable(t *testing.T) {
	e, ep := newAzureEnv(t, "127.0.0.1")
	e.setMode("byok_first")
	e.grant("alice", 1_000_000)
	alice := e.token("alice", "")
	cases := []struct {
		name     string
		b        fakeprovider.Behavior
		status   int
		fallback string
		invalid  bool
	}{
		{"auth 401", fakeprovider.Unauthorized(), 503, "unauthorized", true},
		{"quota", fakeprovider.Behavior{Status: 429, Body: fakeprovider.AzureError("insufficient_quota", "You exceeded your current quota.")}, 503, "quota_exceeded", false},
		{"unavailable 500", fakeprovider.ServerError(), 503, "provider_unavailable", false},
		{"rate limit", fakeprovider.RateLimited(), 429, "", false},
		{"deployment not found", fakeprovider.AzureDeploymentNotFound(), 404, "", false},
		{"request 400", fakeprovider.Behavior{Status: 400}, 400, "", false},
	}
	for _, tc := range cases {
		k := azureKey(t)
		e.fake.SetKey(k, fakeprovider.OK())
		wantStatus(t, e.do("PUT", "/v1/keys/azure_openai", alice, map[string]any{"api_key": k, "endpoint": ep, "deployments": []string{"d"}}), 200, "")
		e.fake.SetKey(k, tc.b)
		r := e.do("POST", "/v1/chat/completions", alice, map[string]any{"model": "azure/d", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
		if r.Status != tc.status || r.Header.Get("X-Byok-Fallback") != tc.fallback || strings.Contains(string(r.Body), k) {
			t.Fatalf("%s: %d fallback %q %s", tc.name, r.Status, r.Header.Get("X-Byok-Fallback"), r.Body)
		}
		if tc.status == 503 && !strings.Contains(string(r.Body), "your azure_openai key failed ("+tc.fallback+") and platform credits do not cover") {
			t.Fatalf("%s: %s", tc.name, r.Body)
		}
		if tc.name == "rate limit" && r.Header.Get("Retry-After") == "" {
			t.Fatalf("rate limit without Retry-After: %v", r.Header)
		}
		en := azureListed(t, e, alice)
		if got := en[0].Status == "invalid"; got != tc.invalid {
			t.Fatalf("%s: key status %s", tc.name, en[0].Status)
		}
		if tc.invalid && (en[0].Detail == nil || !strings.Contains(*en[0].Detail, "Access denied")) {
			t.Fatalf("%s: detail %v", tc.name, en[0].Detail)
		}
	}
	// A deployment that does not exist, found on save: invalid with Azure's words.
	k := azureKey(t)
	e.fake.SetKey(k, fakeprovider.AzureDeploymentNotFound())
	en := azureEntries(t, e.do("PUT", "/v1/keys/azure_openai", alice, map[string]any{"api_key": k, "endpoint": ep, "deployments": []string{"gone"}}))
	if en[0].Status != "invalid" || *en[0].Reason != "deployment_not_found" || en[0].Detail == nil || !strings.Contains(*en[0].Detail, "does not exist") {
		t.Fatalf("deployment not found on save: %+v", en[0])
	}
}

// The Azure card in a real browser: endpoint, api_version and a
// `model=deployment` textarea saved through the form, shown back on the
// entry; a refusal's detail shown under its reason; the key never on the page.
func TestSettingsPageAzureCard(t *testing.T) {
	e, ep := newAzureEnv(t, "127.0.0.1")
	alice := e.token("alice", "")
	good, forbidden := azureKey(t), azureKey(t)
	e.fake.SetKey(good, fakeprovider.OK())
	e.fake.SetKey(forbidden, fakeprovider.Forbidden())
	b := newTab(t)
	b.open(e.srv.URL + "/settings/#token=" + alice)
	card := `[data-provider="azure_openai"]`
	b.waitFor("the Azure card", `!!document.querySelector('`+card+` form.save textarea[name="deployments"]')`)
	fill := func(key string) {
		b.do(chromedp.SendKeys(chromedp.CSS(card+` form.save input[name="api_key"]`), key),
			chromedp.SetValue(chromedp.CSS(card+` form.save input[name="endpoint"]`), ep),
			chromedp.SetValue(chromedp.CSS(card+` form.save textarea[name="deployments"]`), "gpt-4o=prod-4o\nemb"),
			chromedp.Click(chromedp.CSS(card+` form.save button[type="submit"]`)))
	}
	fill(good)
	b.waitFor("the saved key", `!!document.querySelector('`+card+` li.entry [data-status="valid"]')`)
	text := b.text(card)
	for _, want := range []string{ep, "2024-10-21", "gpt-4o → prod-4o", "emb"} {
		if !strings.Contains(text, want) {
			t.Fatalf("Azure card lacks %q:\n%s", want, text)
		}
	}
	if en := azureListed(t, e, alice); len(en) != 1 || en[0].Deployments["gpt-4o"] != "prod-4o" || en[0].Deployments["emb"] != "emb" {
		t.Fatalf("stored: %+v", en)
	}
	fill(forbidden)
	b.waitFor("the refused key", `!!document.querySelector('`+card+` li.entry [data-status="invalid"]')`)
	if got := b.text(card + ` li.entry:has([data-status="invalid"]) .detail`); !strings.Contains(got, "Traffic is not from an approved private endpoint") {
		t.Fatalf("detail under the reason = %q", got)
	}
	b.assertSecret(alice, good, forbidden)
	b.checkClean()
}

// Validation detail is kept on the key row and shown at the top level and
// on the entry, whoever judged the key: save (a network failure:
// provider_unreachable, the cause in detail, in words that blame the
// network), test (a 403 with Azure's explanation), the schedule (valid
// again: detail cleared) and use (a 401 with Azure's words).
func TestValidationDetailStored(t *testing.T) {
	e, ep := newAzureEnv(t, "127.0.0.1")
	alice := e.token("alice", "")
	k := azureKey(t)
	e.fake.SetKey(k, fakeprovider.Behavior{DropConn: true})
	body := map[string]any{"api_key": k, "endpoint": ep, "deployments": []string{"d"}}
	r := e.do("PUT", "/v1/keys/azure_openai", alice, body)
	wantStatus(t, r, 200, "")
	top := r.json(t)
	en := azureEntries(t, r)
	if top["reason"] != "provider_unreachable" || top["detail"] != "the network failed, not the key: connection failed" ||
		en[0].Detail == nil || *en[0].Detail != top["detail"] {
		t.Fatalf("save on a broken network: %s", r.Body)
	}
	e.fake.SetKey(k, fakeprovider.Forbidden())
	en = azureEntries(t, e.do("POST", "/v1/keys/azure_openai/test", alice, nil))
	if en[0].Status != "invalid" || *en[0].Reason != "forbidden" || en[0].Detail == nil || *en[0].Detail != "Traffic is not from an approved private endpoint." {
		t.Fatalf("test on a 403: %+v", en[0])
	}
	e.fake.SetKey(k, fakeprovider.OK())
	if sum, err := e.runner(1, &lockedBuffer{}).Run(context.Background()); err != nil || sum.Valid != 1 {
		t.Fatalf("pass: %+v %v", sum, err)
	}
	if en = azureListed(t, e, alice); en[0].Status != "valid" || en[0].Detail != nil {
		t.Fatalf("after the schedule: %+v", en[0])
	}
	e.fake.SetKey(k, fakeprovider.Unauthorized())
	e.setMode("byok_only")
	r = e.do("POST", "/v1/chat/completions", alice, map[string]any{"model": "azure/d", "messages": []map[string]string{{"role": "user", "content": "hi"}}})
	if r.Status != 401 {
		t.Fatalf("use on a 401: %d %s", r.Status, r.Body)
	}
	if en = azureListed(t, e, alice); en[0].Status != "invalid" || en[0].Detail == nil || !strings.Contains(*en[0].Detail, "Access denied due to invalid subscription key") {
		t.Fatalf("after use: %+v", en[0])
	}
	raw := e.keyItem("alice", "azure_openai")["detail"].(*types.AttributeValueMemberS).Value
	if raw != *en[0].Detail || strings.Contains(raw, k) {
		t.Fatalf("stored detail %q", raw)
	}
}

// PATCH changes an Azure key's api_version and deployments in place (they
// are not secret); its endpoint is sealed with the key, so changing it is a
// 400 that says to replace the key. Other providers have neither field.
func TestAzurePatchDeployments(t *testing.T) {
	e, ep := newAzureEnv(t, "127.0.0.1")
	alice := e.token("alice", "")
	k := azureKey(t)
	e.fake.SetKey(k, fakeprovider.OK())
	r := e.do("PUT", "/v1/keys/azure_openai", alice, map[string]any{"api_key": k, "endpoint": ep,
		"deployments": map[string]string{"gpt-4o": "prod-4o"}})
	wantStatus(t, r, 200, "")
	var v struct {
		Entries []struct {
			KeyID string `json:"key_id"`
		} `json:"entries"`
	}
	_ = json.Unmarshal(r.Body, &v)
	if len(v.Entries) != 1 {
		t.Fatalf("entries: %s", r.Body)
	}
	path := "/v1/keys/azure_openai/" + v.Entries[0].KeyID

	r = e.do("PATCH", path, alice, map[string]any{"api_version": "2025-04-01-preview", "deployments": map[string]string{"gpt-4o": "prod-4o-v2", "emb": "emb-small"}})
	wantStatus(t, r, 200, "")
	if got := azureListed(t, e, alice); len(got) != 1 || got[0].APIVersion != "2025-04-01-preview" || got[0].Deployments["gpt-4o"] != "prod-4o-v2" ||
		got[0].Deployments["emb"] != "emb-small" || got[0].Endpoint != ep {
		t.Fatalf("after PATCH: %+v", got)
	}
	wantStatus(t, e.do("POST", "/v1/chat/completions", alice, map[string]any{"model": "azure/gpt-4o",
		"messages": []map[string]string{{"role": "user", "content": "hi"}}}), 200, "")
	if last := e.fake.LastRequest(); last.Path != "/openai/deployments/prod-4o-v2/chat/completions" || last.RawQuery != "api-version=2025-04-01-preview" {
		t.Fatalf("upstream after PATCH: %s?%s", last.Path, last.RawQuery)
	}

	for name, body := range map[string]map[string]any{
		"endpoint":          {"endpoint": "https://other.openai.azure.com"},
		"bad api_version":   {"api_version": "latest"},
		"bad deployment":    {"deployments": map[string]string{"gpt-4o": "a/b"}},
		"deployments shape": {"deployments": "prod"},
	} {
		r := e.do("PATCH", path, alice, body)
		if r.Status != 400 {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	if r := e.do("PATCH", path, alice, map[string]any{"endpoint": "https://other.openai.azure.com"}); !strings.Contains(string(r.Body), "replace the key") {
		t.Errorf("endpoint change: %s", r.Body)
	}
	if got := azureListed(t, e, alice); got[0].Deployments["gpt-4o"] != "prod-4o-v2" || got[0].APIVersion != "2025-04-01-preview" {
		t.Fatalf("a refused PATCH changed the key: %+v", got)
	}
	// Removing every deployment: chat then names the deployment itself.
	wantStatus(t, e.do("PATCH", path, alice, map[string]any{"deployments": map[string]string{}}), 200, "")
	if got := azureListed(t, e, alice); len(got[0].Deployments) != 0 {
		t.Fatalf("deployments not removed: %+v", got)
	}

	// Other providers have no api_version or deployments.
	ok := "sk-" + randomHex(t, 24)
	e.fake.SetKey(ok, fakeprovider.OK())
	r = e.do("PUT", "/v1/keys/openai", alice, map[string]any{"api_key": ok})
	wantStatus(t, r, 200, "")
	_ = json.Unmarshal(r.Body, &v)
	r = e.do("PATCH", "/v1/keys/openai/"+v.Entries[0].KeyID, alice, map[string]any{"deployments": map[string]string{"a": "b"}})
	if r.Status != 400 || !strings.Contains(string(r.Body), "deployments") {
		t.Errorf("deployments on an openai key: %d %s", r.Status, r.Body)
	}
}
