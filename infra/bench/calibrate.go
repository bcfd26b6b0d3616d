package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"
)

// Calibration is what one HTTP round trip on loopback costs this machine
// with nothing of ours in it: a handler that reads a small body and
// answers "ok". After an idle pause the CPUs have gone to sleep and wake
// on the request; on virtual machines that wake-up can cost more than the
// gateway itself, and it is paid by every row that waits (rows 3 and 9).
type Calibration struct {
	Busy, After1ms, After4ms time.Duration // p50 of the whole round trip
}

func calibrate() (Calibration, error) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer client.CloseIdleConnections()
	body := []byte(`{"model":"gpt-4o-mini"}`)
	once := func() (time.Duration, error) {
		t0 := time.Now()
		resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(t0), err
	}
	measure := func(pause time.Duration, n int) (time.Duration, error) {
		var d []time.Duration
		for range n {
			if pause > 0 {
				time.Sleep(pause)
			}
			t, err := once()
			if err != nil {
				return 0, fmt.Errorf("calibration round trip: %w", err)
			}
			d = append(d, t)
		}
		return percentile(d, 0.5), nil
	}
	var c Calibration
	var err error
	if _, err = measure(0, 200); err != nil { // warm up
		return c, err
	}
	if c.Busy, err = measure(0, 2000); err != nil {
		return c, err
	}
	if c.After1ms, err = measure(time.Millisecond, 1000); err != nil {
		return c, err
	}
	c.After4ms, err = measure(4*time.Millisecond, 500)
	return c, err
}

func (c Calibration) String() string {
	return fmt.Sprintf("a bare net/http round trip on loopback (small POST, \"ok\" answer) takes %s at p50 back to back, "+
		"%s after 1 ms idle and %s after 4 ms idle", us(c.Busy), us(c.After1ms), us(c.After4ms))
}
