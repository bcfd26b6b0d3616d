// Package jsondec lends jsontext decoders for reuse. A fresh decoder
// allocates its buffers and its duplicate-name sets anew for every
// document; a reused one keeps them, which halves the allocations of a
// request's token and body parse (docs/performance.md, row 1).
package jsondec

import (
	"bytes"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// Pool holds decoders for reuse; its zero value is ready, and a nil *Pool
// lends fresh decoders.
type Pool struct{ p sync.Pool }

// Decoder reads one in-memory document. Raw values (ReadValue) alias that
// document, so they stay valid after Release; tokens (ReadToken) may point
// into the decoder: use them before the next read.
type Decoder struct {
	jsontext.Decoder
	in bytes.Buffer
}

// Get returns a decoder reading b with opts.
func (p *Pool) Get(b []byte, opts ...jsontext.Options) *Decoder {
	var d *Decoder
	if p != nil {
		d, _ = p.p.Get().(*Decoder)
	}
	if d == nil {
		d = new(Decoder)
	}
	d.in = *bytes.NewBuffer(b)
	d.Reset(&d.in, opts...)
	return d
}

// Release gives d back; d must not be used after.
func (p *Pool) Release(d *Decoder) {
	if p == nil {
		return
	}
	d.in = bytes.Buffer{}
	d.Reset(&d.in) // let go of the document, keep the buffers
	p.p.Put(d)
}
