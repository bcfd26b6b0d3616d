package schema

import (
	"bufio"
	"bytes"
	"io"
)

// MaxEventBytes bounds one SSE event read by ReadSSE.
const MaxEventBytes = 4 << 20

// ReadSSE reads Server-Sent Events (https://html.spec.whatwg.org/multipage/server-sent-events.html)
// from r and calls fn with each event's name and data (data lines joined by
// "\n"). Comments and retry/id lines are skipped. It stops at the first error
// from fn or r; io.EOF at an event boundary is a clean end (nil).
func ReadSSE(r io.Reader, fn func(name string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxEventBytes)
	var name string
	var data []byte
	have := false
	for sc.Scan() {
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(line) == 0 {
			if have {
				if err := fn(name, data); err != nil {
					return err
				}
			}
			name, data, have = "", data[:0], false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			name = string(value)
		case "data":
			if have {
				data = append(data, '\n')
			}
			data = append(data, value...)
			have = true
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if have {
		return fn(name, data)
	}
	return nil
}
