package server

import (
	"net/http"
	"sync"
)

// response is the http.ResponseWriter a handler gets in Event.Extensions.Response. Its headers, status
// and writes are kept until the handler returns and then sent with the result (writes first), so a
// failed or timed-out invocation can still answer a clean problem; after that, it takes nothing more
// (a late handler cannot touch a finished response).
type response struct {
	mu     sync.Mutex
	header http.Header
	status int
	body   []byte
	closed bool
}

func newResponse() *response { return &response{header: http.Header{}, status: http.StatusOK} }

func (r *response) Header() http.Header { return r.header }

func (r *response) WriteHeader(status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.status = status
	}
}

func (r *response) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, http.ErrHandlerTimeout
	}
	r.body = append(r.body, p...)
	return len(p), nil
}

func (r *response) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// result is what the handler set.
func (r *response) result() (int, http.Header, []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, r.header.Clone(), r.body
}
