package webhooks

import "testing"

func TestDuplicateKey(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		`{"url":"a","url":"b"}`:                     "url",
		`{"url":"a","events":["x"],"events":["y"]}`: "events",
		`{"a":{"b":1,"b":2}}`:                       "b",
		`{"a":[{"c":1},{"c":2,"c":3}]}`:             "c",
		`{"a":{"b":1},"b":{"a":1}}`:                 "",
		`{"a":["url","url"],"url":"x"}`:             "",
		`{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}`: "",
		`{"a":`: "",
	} {
		got, dup := duplicateKey([]byte(raw))
		if got != want || dup != (want != "") {
			t.Errorf("%s: got %q %v, want %q", raw, got, dup, want)
		}
	}
}
