package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/synthstack/byok/shared/jsondec"
)

// The claims and header decoder reads a token exactly as encoding/json read
// it into the claim structs before (docs/performance.md, row 1): the same
// tokens are accepted and refused, with the same claim values.
func FuzzDecodeSegmentMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`{"sub":"alice","iat":1,"exp":2}`,
		`{"sub":"alice","sub":"bob"}`,               // repeated: the last
		`{"SUB":"alice","exp":2}`,                   // other case: matched
		`{"sub":"alice","Sub":"bob","sUb":"carol"}`, // all three: the last
		`{"s\u0075b":"alice"}`,                      // escaped name
		`{"ſub":"alice"}`,                           // Unicode folding
		`{"sub":"al\u0069ce","role":"admin"}`,       // escaped value
		`{"sub":"alice","crit":null}`,               // null crit is present
		`{"sub":"a","org":{"x":[1,2,{"y":null}]}}`,  // nested value
		"{\"sub\":\"al\xffice\"}",                   // invalid UTF-8
		`{"sub":"alice"} `,                          // trailing space
		`{"sub":"alice"}{}`,                         // trailing data
		`{"sub":"alice",}`,                          // bad syntax
		`{"sub":}`, `{"exp":01}`, `{"exp":1e400}`, `{`, `{}`, `[]`, `"x"`, ``,
		`{"alg":"HS256","typ":"JWT"}`, `{"alg":1}`, `{"alg":null,"kid":"k"}`, `{"kid":["k"]}`,
	} {
		f.Add([]byte(s))
	}
	pool := &jsondec.Pool{} // reused across inputs, as the Verifier reuses it across tokens
	f.Fuzz(func(t *testing.T, raw []byte) {
		seg := base64.RawURLEncoding.EncodeToString(raw)
		var want tokenClaims
		wantErr := len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &want) != nil
		var got tokenClaims
		gotErr := decodeSegment(pool, seg, got.fields()) != nil
		if gotErr != wantErr {
			t.Fatalf("%q: error %v, encoding/json %v", raw, gotErr, wantErr)
		}
		if wantErr {
			return
		}
		wf, gf := want.fields(), got.fields()
		for i := range wf {
			if !bytes.Equal(*wf[i].dst, *gf[i].dst) || (*wf[i].dst == nil) != (*gf[i].dst == nil) {
				t.Fatalf("%q: claim %s = %q, encoding/json %q", raw, wf[i].name, *gf[i].dst, *wf[i].dst)
			}
		}
		var wh header
		whErr := json.Unmarshal(raw, &wh) != nil
		gh, ghErr := decodeHeader(pool, seg)
		if (ghErr != nil) != whErr {
			t.Fatalf("%q: header error %v, encoding/json %v", raw, ghErr, whErr)
		}
		if !whErr && (gh.Alg != wh.Alg || gh.Kid != wh.Kid || !bytes.Equal(gh.Crit, wh.Crit) || (gh.Crit == nil) != (wh.Crit == nil)) {
			t.Fatalf("%q: header %+v, encoding/json %+v", raw, gh, wh)
		}
	})
}
