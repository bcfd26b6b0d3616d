package app

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// ErrInvocationEnding is the cause of a request context ended by
// EndBeforeDeadline: the Lambda invocation is about to be stopped, so the
// handler should end its answer (a final error event on a stream) and
// settle while it still can.
var ErrInvocationEnding = errors.New("the function's time limit is near: the answer was ended early")

// DefaultDeadlineMargin is how long before the invocation's deadline a
// request is ended: enough to write the last event, record usage and settle
// credits (bounded writes of a few seconds each).
const DefaultDeadlineMargin = 15 * time.Second

// EndBeforeDeadline ends each request's context margin before the deadline
// its context already has (the Lambda invocation's, under lambdaurl), with
// cause ErrInvocationEnding, so a long stream is cut and settled by the
// handler rather than killed with the process. Requests without a deadline
// (the dev server) are untouched.
func EndBeforeDeadline(next http.Handler, margin time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dl, ok := r.Context().Deadline(); ok {
			ctx, cancel := context.WithDeadlineCause(r.Context(), dl.Add(-margin), ErrInvocationEnding)
			defer cancel()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}
