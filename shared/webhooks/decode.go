package webhooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/synthstack/byok/shared/apperr"
	"github.com/synthstack/byok/shared/httpx"
)

// decodeStrict reads a JSON body of at most limit bytes into dst with
// httpx.DecodeJSON's checks, refusing a repeated member name first: which
// of two "url"s counts must not be left to the decoder.
func decodeStrict(w http.ResponseWriter, r *http.Request, limit int64, dst any) error {
	if r.ContentLength > limit {
		return apperr.New(apperr.RequestTooLarge, "request body exceeds %d bytes", limit)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return apperr.New(apperr.RequestTooLarge, "request body exceeds %d bytes", limit)
	}
	if err != nil {
		return apperr.Wrap(err, apperr.InvalidRequest, "request body could not be read")
	}
	if name, dup := duplicateKey(raw); dup {
		return apperr.New(apperr.InvalidRequest, "field %q appears more than once", clip(name, 40))
	}
	r.Body = io.NopCloser(bytes.NewReader(raw))
	r.ContentLength = int64(len(raw))
	return httpx.DecodeJSON(w, r, limit, dst)
}

// duplicateKey reports the first member name repeated within one object,
// at any depth. Malformed JSON reports none (the decoder explains it).
func duplicateKey(raw []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	type frame struct {
		seen   map[string]bool
		object bool
		key    bool // the next string token is a member name
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{seen: map[string]bool{}, object: true, key: true})
			case '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.key {
				if top.seen[t] {
					return t, true
				}
				top.seen[t] = true
				top.key = false
				continue
			}
		}
		if top != nil && top.object {
			top.key = true
		}
	}
}
