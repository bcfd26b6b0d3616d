package fakeprovider

import (
	"bytes"
	"encoding/json"
	"net/http"
)

// sse writes one Server-Sent Events stream, flushing after every event and
// applying the call's pacing behaviour.
type sse struct {
	s      *Server
	c      *call
	w      http.ResponseWriter
	rc     *http.ResponseController
	events int
}

func (s *Server) startSSE(w http.ResponseWriter, c *call) *sse {
	c.stream = true
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(c.status)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	return &sse{s: s, c: c, w: w, rc: rc}
}

// send writes "event: <name>" (when name is set) and "data: <v as JSON>" (or
// v itself when it is a string), after ChunkDelay for all but the first
// event. It returns false when the stream must be abandoned.
func (e *sse) send(name string, v any) bool {
	d := e.c.b.ChunkDelay
	if e.events == 0 {
		d = 0
	}
	if !e.s.pause(e.c, d) {
		return false
	}
	var data []byte
	if str, ok := v.(string); ok {
		data = []byte(str)
	} else {
		var err error
		if data, err = json.Marshal(v); err != nil {
			panic(err) // our own types; cannot happen
		}
	}
	buf := make([]byte, 0, len(name)+len(data)+16)
	if name != "" {
		buf = append(buf, "event: "...)
		buf = append(buf, name...)
		buf = append(buf, '\n')
	}
	if e.c.b.MultilineData && len(data) > 0 && data[0] == '{' {
		var ind bytes.Buffer
		if json.Indent(&ind, data, "", "  ") == nil {
			for _, line := range bytes.Split(ind.Bytes(), []byte("\n")) {
				buf = append(buf, "data: "...)
				buf = append(buf, line...)
				buf = append(buf, '\n')
			}
			buf = append(buf, '\n')
		}
	} else {
		buf = append(buf, "data: "...)
		buf = append(buf, data...)
		buf = append(buf, "\n\n"...)
	}
	if _, err := e.w.Write(buf); err != nil {
		e.gone()
		return false
	}
	if err := e.rc.Flush(); err != nil {
		e.gone()
		return false
	}
	e.events++
	return true
}

// gone notes a failed write: the client went away unless the server is closing.
func (e *sse) gone() {
	select {
	case <-e.s.done:
	default:
		e.c.cancelled = true
	}
}

// content sends each piece with send, counting deliveries, waiting
// FirstChunkThenWait after the first and cutting the connection after
// CutAfter pieces. It returns false when the stream was abandoned or cut.
func (e *sse) content(pieces []string, send func(piece string) bool) bool {
	b := e.c.b
	for i, p := range pieces {
		if !send(p) {
			return false
		}
		e.c.delivered++
		if b.StreamError {
			e.sendError()
			return false
		}
		if i == 0 && b.FirstChunkThenWait > 0 && !e.s.pause(e.c, b.FirstChunkThenWait) {
			return false
		}
		if b.CutAfter > 0 && i+1 == min(b.CutAfter, len(pieces)) {
			dropConn(e.w)
			return false
		}
	}
	return true
}

// sendError sends the protocol's in-stream error event (overloaded), with
// the presented key in it when EchoKey is set.
func (e *sse) sendError() {
	msg := "Overloaded"
	extra := ""
	if e.c.b.EchoKey {
		msg = "Overloaded; your key " + e.c.rec.Key + " (Bearer " + e.c.rec.Key + ") was throttled"
		extra = e.c.rec.Key
	}
	if e.c.rec.Protocol == ProtocolAnthropic {
		e.send("error", map[string]any{"type": "error", "key": extra, "error": map[string]any{"type": "overloaded_error", "message": msg, "detail": extra}})
		return
	}
	e.send("", map[string]any{"error": map[string]any{"message": msg, "type": "server_error", "param": extra, "code": "overloaded", "key": extra}})
}
