package app_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/synthstack/byok/shared/app"
)

func TestEndBeforeDeadline(t *testing.T) {
	var cause error
	var left time.Duration
	h := app.EndBeforeDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dl, _ := r.Context().Deadline()
		left = time.Until(dl)
		<-r.Context().Done()
		cause = context.Cause(r.Context())
	}), 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+200*time.Millisecond)
	defer cancel()
	req := httptest.NewRequest("POST", "/v1/chat/completions", nil).WithContext(ctx)
	h.ServeHTTP(httptest.NewRecorder(), req)
	if left > 300*time.Millisecond {
		t.Errorf("handler had %s left, want the invocation's deadline minus the margin", left)
	}
	if !errors.Is(cause, app.ErrInvocationEnding) {
		t.Errorf("cause = %v, want ErrInvocationEnding", cause)
	}
	// No deadline (dev server): untouched.
	h = app.EndBeforeDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.Context().Deadline(); ok {
			t.Error("a request without a deadline got one")
		}
	}), 10*time.Second)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
}
