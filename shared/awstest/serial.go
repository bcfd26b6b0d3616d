package awstest

import (
	"bytes"
	"io"
	"net/http"
	"sync"
)

// serialTransport sends one request at a time and reads each answer whole
// before the next request goes.
type serialTransport struct {
	mu   sync.Mutex
	next http.RoundTripper
}

func (s *serialTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp, err := s.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// SerialHTTPClient returns an HTTP client for AWS SDK clients that sends one
// request at a time to the emulator. moto_server handles requests on
// concurrent threads without making conditional writes and transactions
// atomic against each other (a cancelled TransactWriteItems restores a copy
// of the tables taken before it began, erasing a transaction that committed
// meanwhile), which DynamoDB guarantees. Concurrency tests use it so the
// emulator behaves like DynamoDB while their goroutines still race in our
// code between calls. Real DynamoDB needs no such thing.
func SerialHTTPClient() *http.Client {
	return &http.Client{Transport: &serialTransport{next: http.DefaultTransport.(*http.Transport).Clone()}}
}
