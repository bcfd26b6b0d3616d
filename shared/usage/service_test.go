package usage_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/auth"
	"github.com/synthstack/byok/shared/httpx"
	"github.com/synthstack/byok/shared/usage"
)

// fakeDB answers the two queries the usage service makes over in-memory
// rows: pk equality, sk BETWEEN, the settle/release filter, Limit and
// ExclusiveStartKey. failOn makes the n-th Query (1-based) fail.
type fakeDB struct {
	mu     sync.Mutex
	tables map[string][]map[string]types.AttributeValue
	calls  int
	failOn int
}

func s(m map[string]types.AttributeValue, k string) string {
	v, _ := m[k].(*types.AttributeValueMemberS)
	if v == nil {
		return ""
	}
	return v.Value
}

func (f *fakeDB) put(table string, item map[string]types.AttributeValue) {
	f.tables[table] = append(f.tables[table], item)
	sort.Slice(f.tables[table], func(i, j int) bool {
		a, b := f.tables[table][i], f.tables[table][j]
		return s(a, "pk") < s(b, "pk") || s(a, "pk") == s(b, "pk") && s(a, "sk") < s(b, "sk")
	})
}

func (f *fakeDB) Query(_ context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls == f.failOn {
		return nil, errors.New("storage down")
	}
	v := in.ExpressionAttributeValues
	pk, lo, hi := s(v, ":pk"), s(v, ":lo"), s(v, ":hi")
	start := ""
	if in.ExclusiveStartKey != nil {
		start = s(in.ExclusiveStartKey, "sk")
	}
	out := &dynamodb.QueryOutput{}
	scanned := int32(0)
	for _, it := range f.tables[*in.TableName] {
		sk := s(it, "sk")
		if s(it, "pk") != pk || sk < lo || sk > hi || (start != "" && sk <= start) {
			continue
		}
		if scanned == aws.ToInt32(in.Limit) {
			out.LastEvaluatedKey = map[string]types.AttributeValue{"pk": v[":pk"], "sk": &types.AttributeValueMemberS{Value: start}}
			break
		}
		scanned++
		start = sk
		if in.FilterExpression != nil {
			if k := s(it, "kind"); (k != "settle" && k != "release") || it["meta"] == nil {
				continue
			}
		}
		out.Items = append(out.Items, it)
	}
	return out, nil
}

const prefix = "t-"

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// newFake holds alice's rows: BYOK at +1h, +3h (an error) and +5h; ledger
// reserve and settle at +2h, a release at +4h, a grant at +6h; and one BYOK
// row of bob at +2h.
func newFake(t *testing.T) *fakeDB {
	f := &fakeDB{tables: map[string][]map[string]types.AttributeValue{}}
	byok := func(user, id string, at time.Time, model string, status int, in, out int64, cost float64) {
		r := usage.Record{RequestID: id, UserID: user, At: at, Route: "byok", Endpoint: "/v1/chat/completions",
			Provider: "openai", Model: model, InputTokens: in, OutputTokens: out, CostUSD: cost, Status: status, LatencyMS: 12.5}
		if status >= 400 {
			r.ErrorClass = "request"
		}
		it, err := attributevalue.MarshalMap(r)
		if err != nil {
			t.Fatal(err)
		}
		it["pk"] = &types.AttributeValueMemberS{Value: "USER#" + user}
		it["sk"] = &types.AttributeValueMemberS{Value: usage.SortKey(at, id)}
		f.put(prefix+"api_key_usage", it)
	}
	ledger := func(id, kind string, at time.Time, charged int64, meta map[string]any) {
		row := map[string]any{"pk": "USER#alice", "sk": "TX#" + at.Format("2006-01-02T15:04:05.000000000Z") + "#" + id + "#" + kind + "#abc",
			"request_id": id, "kind": kind, "amount": -5, "at": at.Format(time.RFC3339Nano)}
		if charged > 0 {
			row["charged"] = charged
		}
		if meta != nil {
			row["meta"] = meta
		}
		it, err := attributevalue.MarshalMap(row)
		if err != nil {
			t.Fatal(err)
		}
		f.put(prefix+"credit_transactions", it)
	}
	byok("alice", "b1", t0.Add(1*time.Hour), "gpt-4o", 200, 100, 10, 0.5)
	byok("alice", "b2", t0.Add(3*time.Hour), "gpt-4o-mini", 400, 7, 0, 0)
	byok("alice", "b3", t0.Add(5*time.Hour), "gpt-4o", 200, 200, 20, 1.25)
	byok("bob", "x1", t0.Add(2*time.Hour), "gpt-4o", 200, 999, 999, 9)
	ledger("c1", "reserve", t0.Add(2*time.Hour), 0, nil)
	ledger("c1", "settle", t0.Add(2*time.Hour), 30, usage.Record{Route: "credits", Provider: "anthropic",
		Model: "claude-3-5-haiku", InputTokens: 50, OutputTokens: 5, CostUSD: 0.25, Status: 200, FallbackReason: "provider_unavailable"}.Meta())
	ledger("c2", "release", t0.Add(4*time.Hour), 0, usage.Record{Route: "credits", Provider: "anthropic",
		Model: "claude-3-5-haiku", InputTokens: 40, Status: 502, ErrorClass: "unavailable"}.Meta())
	ledger("g1", "grant", t0.Add(6*time.Hour), 0, nil)
	return f
}

func serve(svc *usage.Service, user string) http.Handler {
	mux := http.NewServeMux()
	svc.Register(mux)
	return httpx.Middleware(slog.New(slog.NewTextHandler(io.Discard, nil)), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), auth.Principal{UserID: user})))
	}))
}

func get(h http.Handler, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	return w
}

func svcOf(f *fakeDB, page int32) *usage.Service {
	return &usage.Service{DB: f, TablePrefix: prefix, PageSize: page, Now: func() time.Time { return t0.Add(10 * time.Hour) }}
}

func TestExportMergesTablesOldestFirst(t *testing.T) {
	for _, page := range []int32{1, 2, 1000} {
		h := serve(svcOf(newFake(t), page), "alice")
		w := get(h, "/v1/usage/export?format=csv&from=2026-11-20&to=2026-11-20")
		if w.Code != 200 || w.Header().Get("Content-Disposition") == "" {
			t.Fatalf("page %d: %d %s", page, w.Code, w.Body)
		}
		recs, err := csv.NewReader(w.Body).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range recs[1:] {
			ids = append(ids, r[0]+"/"+r[2]+"/"+r[10])
		}
		if got := strings.Join(ids, " "); got != "b1/byok/0 c1/credits/30 b2/byok/0 c2/credits/0 b3/byok/0" {
			t.Fatalf("page %d: rows %s", page, got)
		}
	}
	// A range that excludes the first and last rows: [t0+2h, t0+4h).
	h := serve(svcOf(newFake(t), 1), "alice")
	w := get(h, "/v1/usage/export?format=json&from=2026-11-20T12:00:00Z&to=2026-11-20T14:00:00Z")
	var rows []usage.Row
	if err := json.Unmarshal(w.Body.Bytes(), &rows); err != nil || len(rows) != 2 || rows[0].RequestID != "c1" || rows[1].RequestID != "b2" {
		t.Fatalf("json export: %v %s", err, w.Body)
	}
	if rows[0].FallbackReason != "provider_unavailable" || rows[0].Credits != 30 || rows[0].Provider != "anthropic" {
		t.Fatalf("credit row %+v", rows[0])
	}
}

func TestSummary(t *testing.T) {
	h := serve(svcOf(newFake(t), 2), "alice")
	w := get(h, "/v1/usage?days=3")
	var sum usage.Summary
	if err := json.Unmarshal(w.Body.Bytes(), &sum); err != nil || w.Code != 200 {
		t.Fatalf("%d %v %s", w.Code, err, w.Body)
	}
	b, c := sum.BYOK, sum.Credits
	if b.Requests != 3 || b.InputTokens != 307 || b.OutputTokens != 30 || b.CostUSD != 1.75 || b.Errors != 1 {
		t.Fatalf("byok %+v", b)
	}
	if c.Requests != 2 || c.InputTokens != 90 || c.OutputTokens != 5 || c.CostUSD != 0.25 || c.Errors != 1 || c.CreditsCharged != 30 {
		t.Fatalf("credits %+v", c)
	}
	if len(sum.ByDay) != 3 || sum.ByDay[2].Date != "2026-11-20" || sum.ByDay[2].BYOK.Requests != 3 || sum.ByDay[0].BYOK.Requests != 0 {
		t.Fatalf("by_day %+v", sum.ByDay)
	}
	if sum.ByModel["gpt-4o"].BYOK.Requests != 2 || sum.ByProvider["anthropic"].Credits.Requests != 2 || len(sum.ByProvider) != 2 {
		t.Fatalf("breakdowns %+v %+v", sum.ByModel, sum.ByProvider)
	}
	// bob sees only his own row.
	w = get(serve(svcOf(newFake(t), 2), "bob"), "/v1/usage")
	sum = usage.Summary{}
	if err := json.Unmarshal(w.Body.Bytes(), &sum); err != nil || sum.BYOK.Requests != 1 || sum.Credits.Requests != 0 {
		t.Fatalf("bob: %v %s", err, w.Body)
	}
}

func TestBadParameters(t *testing.T) {
	h := serve(svcOf(newFake(t), 2), "alice")
	for _, p := range []string{"/v1/usage?days=0", "/v1/usage?days=401", "/v1/usage?days=x", "/v1/usage?user_id=bob",
		"/v1/usage/export?format=xml", "/v1/usage/export?from=yesterday", "/v1/usage/export?to=2026-02-30",
		"/v1/usage/export?from=2026-11-20&to=2026-11-19", "/v1/usage/export?from=2025-01-01&to=2026-11-20"} {
		if w := get(h, p); w.Code != 400 || !strings.Contains(w.Body.String(), `"invalid_request"`) {
			t.Errorf("%s: %d %s", p, w.Code, w.Body)
		}
	}
	if w := get(h, "/v1/usage/export?from=2025-10-17&to=2026-11-20"); w.Code != 200 { // 400 days, inclusive
		t.Errorf("400 days: %d %s", w.Code, w.Body)
	}
}

// A storage failure before the first byte is a 503 envelope; after it, the
// transfer is aborted (the client sees a broken body, never a complete-
// looking file) and the failure is logged.
func TestExportStorageFailure(t *testing.T) {
	f := newFake(t)
	f.failOn = 1
	h := serve(svcOf(f, 1), "alice")
	if w := get(h, "/v1/usage/export"); w.Code != 503 || !strings.Contains(w.Body.String(), "service_unavailable") {
		t.Fatalf("first page failure: %d %s", w.Code, w.Body)
	}
	if w := get(h, "/v1/usage?days=1"); w.Code != 200 { // the 1st call only failed
		t.Fatalf("summary: %d", w.Code)
	}
	f = newFake(t)
	f.failOn = 4
	srv := httptest.NewServer(serve(svcOf(f, 1), "alice"))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/usage/export?format=json&from=2026-11-20")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || err == nil || strings.HasSuffix(strings.TrimSpace(string(body)), "]") {
		t.Fatalf("mid-stream failure: %d, read err %v, body %q", resp.StatusCode, err, body)
	}
}
