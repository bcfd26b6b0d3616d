package jsondec

import (
	"errors"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// A reused decoder starts afresh: no names, state or options carried over
// from the document before.
func TestReuseStartsAfresh(t *testing.T) {
	var p Pool
	for range 3 {
		d := p.Get([]byte(`{"a":1,"b":[1,2`))
		d.ReadToken()
		d.ReadToken()
		d.ReadValue()
		p.Release(d) // mid-document
		d = p.Get([]byte(`{"a":2,"a":3}`))
		if _, err := d.ReadValue(); !errors.Is(err, jsontext.ErrDuplicateName) {
			t.Fatalf("duplicate names: %v, want ErrDuplicateName (options from before must not linger)", err)
		}
		p.Release(d)
		d = p.Get([]byte(`{"a":2,"a":3}`), jsontext.AllowDuplicateNames(true))
		v, err := d.ReadValue()
		if err != nil || string(v) != `{"a":2,"a":3}` {
			t.Fatalf("with AllowDuplicateNames: %s, %v", v, err)
		}
		p.Release(d)
		d = p.Get([]byte(`{"a":1}`)) // "a" was seen by the decoders before
		if v, err := d.ReadValue(); err != nil || string(v) != `{"a":1}` {
			t.Fatalf("after reuse: %s, %v", v, err)
		}
		p.Release(d)
	}
}

func TestValuesOutliveRelease(t *testing.T) {
	var p Pool
	doc := []byte(`{"k":"value"}`)
	d := p.Get(doc)
	v, err := d.ReadValue()
	if err != nil {
		t.Fatal(err)
	}
	p.Release(d)
	d = p.Get([]byte(`{"other":"document!"}`))
	d.ReadValue()
	p.Release(d)
	if string(v) != `{"k":"value"}` {
		t.Fatalf("a value read before Release changed: %s", v)
	}
}

func TestNilPool(t *testing.T) {
	var p *Pool
	d := p.Get([]byte(`[1]`))
	if v, err := d.ReadValue(); err != nil || string(v) != `[1]` {
		t.Fatal(v, err)
	}
	p.Release(d)
}
