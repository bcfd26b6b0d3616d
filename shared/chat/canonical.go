package chat

import (
	"bytes"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/jsondec"
)

// jsonObject is a request body parsed once: its top-level members in
// order, each value kept as raw JSON that was checked for syntax, UTF-8 and
// duplicate names at every depth.
// What we bill, limit, route and log is read from it, and the body sent
// upstream is re-encoded from it, so a provider that takes the last of two
// keys (most do) cannot read something other than what we charged for.
type jsonObject struct {
	members []jsonMember
}

type jsonMember struct {
	name  string
	value []byte // raw JSON, a slice of the body it came from
}

// parseObject parses body as one JSON object, with a decoder from p.
// jsontext rejects duplicate names at any depth and invalid UTF-8 by
// default.
func parseObject(p *jsondec.Pool, body []byte) (jsonObject, error) {
	var o jsonObject
	if len(bytes.TrimSpace(body)) == 0 {
		return o, apperr.New(apperr.InvalidRequest, "request body is empty; a JSON object is required")
	}
	dec := p.Get(body)
	defer p.Release(dec)
	if dec.PeekKind() != '{' {
		if _, err := dec.ReadValue(); err != nil {
			return o, jsonError(err)
		}
		return o, apperr.New(apperr.InvalidRequest, "request body must be a JSON object")
	}
	if _, err := dec.ReadToken(); err != nil {
		return o, jsonError(err)
	}
	o.members = make([]jsonMember, 0, 8)
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return o, jsonError(err)
		}
		name := tok.String()
		v, err := dec.ReadValue()
		if err != nil {
			return o, jsonError(err)
		}
		end := dec.InputOffset()
		o.members = append(o.members, jsonMember{name: name, value: body[end-int64(len(v)) : end]})
	}
	if _, err := dec.ReadToken(); err != nil {
		return o, jsonError(err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return o, apperr.New(apperr.InvalidRequest, "request body is not valid JSON: unexpected data after the top-level object")
	}
	if err := o.checkFolded(); err != nil {
		return o, err
	}
	return o, nil
}

// checkFolded refuses top-level names that differ only in case from
// another, or from a field we bill on: Go's encoding/json (our translators,
// and any provider written with it) matches names case-insensitively and
// would read "MAX_TOKENS" as max_tokens where we did not.
func (o jsonObject) checkFolded() error {
	// The members we bill, limit and route on: spelled exactly.
	billedFields := [...]string{"model", "stream", "max_tokens", "max_completion_tokens", "n", "best_of", "stream_options", "messages", "input"}
	for i := range o.members {
		name := o.members[i].name
		for _, f := range billedFields {
			if name != f && strings.EqualFold(name, f) {
				return apperr.New(apperr.InvalidRequest, "unknown field %q: did you mean %q? (field names are case-sensitive)", clip(name), f)
			}
		}
		for j := range i {
			if strings.EqualFold(o.members[i].name, o.members[j].name) {
				return apperr.New(apperr.InvalidRequest, "request body has both %q and %q: keys may appear once, in one spelling", clip(o.members[j].name), clip(o.members[i].name))
			}
		}
	}
	return nil
}

// jsonError turns a jsontext error into a 400 naming what is wrong (the
// duplicated key and where it is).
func jsonError(err error) error {
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		if errors.Is(se.Err, jsontext.ErrDuplicateName) {
			return apperr.New(apperr.InvalidRequest, "duplicate key %q in the request body (at %q): each key may appear once", clip(se.JSONPointer.LastToken()), clip(string(se.JSONPointer)))
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return apperr.New(apperr.InvalidRequest, "request body is not valid JSON: it ends early")
		}
		return apperr.New(apperr.InvalidRequest, "request body is not valid JSON (at byte %d)", se.ByteOffset)
	}
	return apperr.New(apperr.InvalidRequest, "request body is not valid JSON")
}

func (o jsonObject) get(name string) ([]byte, bool) {
	for _, m := range o.members {
		if m.name == name {
			return m.value, true
		}
	}
	return nil, false
}

func isNull(v []byte) bool { return string(v) == "null" }

// str reads a string field; present is false when absent or null.
func (o jsonObject) str(name string) (s string, present bool, err error) {
	v, ok := o.get(name)
	if !ok || isNull(v) {
		return "", false, nil
	}
	if v[0] != '"' {
		return "", true, apperr.New(apperr.InvalidRequest, "field %q must be a string", name)
	}
	t, err := jsontext.AppendUnquote(nil, v)
	if err != nil {
		return "", true, apperr.New(apperr.InvalidRequest, "field %q must be a string", name)
	}
	return string(t), true, nil
}

func (o jsonObject) boolean(name string) (bool, error) {
	v, ok := o.get(name)
	switch {
	case !ok || isNull(v):
		return false, nil
	case string(v) == "true":
		return true, nil
	case string(v) == "false":
		return false, nil
	}
	return false, apperr.New(apperr.InvalidRequest, "field %q must be a boolean", name)
}

// posInt reads a positive integer field (0 when absent or null). 2.0 is 2;
// 2.5, 0, negatives, strings and numbers past 2^53 are refused.
func (o jsonObject) posInt(name string) (int64, error) {
	v, ok := o.get(name)
	if !ok || isNull(v) {
		return 0, nil
	}
	if v[0] >= '1' && v[0] <= '9' {
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil && n <= 1<<53 {
			return n, nil // the common case: a plain integer
		}
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if (v[0] != '-' && (v[0] < '0' || v[0] > '9')) || err != nil || f < 1 || f != math.Trunc(f) || f > 1<<53 {
		return 0, apperr.New(apperr.InvalidRequest, "field %q must be a positive integer", name)
	}
	return int64(f), nil
}

// nonEmptyArray reports whether v is an array with at least one element.
func nonEmptyArray(v []byte) bool {
	if len(v) == 0 || v[0] != '[' {
		return false
	}
	rest := bytes.TrimLeft(v[1:], " \t\r\n")
	return len(rest) > 0 && rest[0] != ']'
}

// encode writes the object back with set's members replacing those of the
// same name (or appended), names re-quoted in one canonical spelling.
func (o jsonObject) encode(set ...jsonMember) []byte {
	n := 2
	for _, m := range o.members {
		n += len(m.name) + len(m.value) + 4
	}
	for _, m := range set {
		n += len(m.name) + len(m.value) + 4
	}
	out := make([]byte, 0, n)
	out = append(out, '{')
	done := make([]bool, len(set))
	first := true
	add := func(name string, v []byte) {
		if !first {
			out = append(out, ',')
		}
		first = false
		out, _ = jsontext.AppendQuote(out, name)
		out = append(out, ':')
		out = append(out, v...)
	}
	for _, m := range o.members {
		v := m.value
		for i, s := range set {
			if s.name == m.name {
				v, done[i] = s.value, true
			}
		}
		if v != nil {
			add(m.name, v)
		}
	}
	for i, s := range set {
		if !done[i] && s.value != nil {
			add(s.name, s.value)
		}
	}
	return append(out, '}')
}

func jsonString(s string) []byte {
	b, _ := jsontext.AppendQuote(nil, s)
	return b
}

func jsonInt(n int64) []byte { return strconv.AppendInt(nil, n, 10) }

func jsonBool(b bool) []byte {
	if b {
		return []byte("true")
	}
	return []byte("false")
}
