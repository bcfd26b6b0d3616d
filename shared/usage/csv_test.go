package usage_test

import (
	"encoding/csv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/synthstack/byok/shared/usage"
)

// Text cells a spreadsheet would run as a formula (=, +, -, @, tab, CR
// first) are exported with a leading apostrophe; parsing the CSV gives the
// neutralised text back, and numbers stay numbers.
func TestCSVExportNeutralisesFormulas(t *testing.T) {
	f := &fakeDB{tables: map[string][]map[string]types.AttributeValue{}}
	cases := map[string]string{ // request id → model
		"r1": "=HYPERLINK(\"http://evil\",\"x\")",
		"r2": "+1+1",
		"r3": "-2+3",
		"r4": "@SUM(A1)",
		"r5": "\tcmd",
		"r6": "\rcmd",
		"r7": "gpt-4o",
	}
	i := 0
	for id, model := range cases {
		i++
		at := t0.Add(time.Duration(i) * time.Minute)
		r := usage.Record{RequestID: id, UserID: "alice", At: at, Route: "byok", Endpoint: "/v1/chat/completions",
			Provider: "openai", Model: model, Status: 200, InputTokens: 3}
		it, err := attributevalue.MarshalMap(r)
		if err != nil {
			t.Fatal(err)
		}
		it["pk"] = &types.AttributeValueMemberS{Value: "USER#alice"}
		it["sk"] = &types.AttributeValueMemberS{Value: usage.SortKey(at, id)}
		f.put(prefix+"api_key_usage", it)
	}
	// A request id the client chose (X-Request-Id allows a leading '-').
	at := t0.Add(time.Hour)
	it, _ := attributevalue.MarshalMap(usage.Record{RequestID: "-1+1", UserID: "alice", At: at, Route: "byok", Model: "gpt-4o", Status: 200})
	it["pk"] = &types.AttributeValueMemberS{Value: "USER#alice"}
	it["sk"] = &types.AttributeValueMemberS{Value: usage.SortKey(at, "-1+1")}
	f.put(prefix+"api_key_usage", it)

	w := get(serve(svcOf(f, 100), "alice"), "/v1/usage/export?format=csv&from=2026-11-20&to=2026-11-20")
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	recs, err := csv.NewReader(w.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, rec := range recs[1:] {
		id, model := rec[0], rec[5]
		if id == "'-1+1" {
			seen++
			continue
		}
		want, ok := cases[id]
		if !ok {
			t.Fatalf("unexpected row %q", rec)
		}
		seen++
		if want != "gpt-4o" {
			want = "'" + want
		}
		if model != want {
			t.Errorf("%s: model cell %q, want %q", id, model, want)
		}
		if rec[7] != "3" {
			t.Errorf("%s: input_tokens cell %q", id, rec[7])
		}
	}
	if seen != len(cases)+1 {
		t.Fatalf("rows %d, want %d: %q", seen, len(cases)+1, recs)
	}
}
