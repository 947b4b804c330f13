// Package functions holds the types of Kubeless's Go function contract:
//
//	func Handler(event functions.Event, context functions.Context) (string, error)
//
// The fields Kubeless defines keep their names and types, so Kubeless functions compile unchanged; the
// fields after them are funcd's additions (see templates/go1.x/README.md).
package functions

import (
	"context"
	"net/http"
	"time"
)

// Extension gives the handler the HTTP request and response behind the event.
type Extension struct {
	// Request is the invocation's request; its body has been read already (it is Event.Data).
	Request *http.Request
	// Response lets the handler set headers and a status (WriteHeader) before its result is written.
	Response http.ResponseWriter
	// Context is done when the invocation times out or its client goes away.
	Context context.Context
}

// Event is one invocation.
type Event struct {
	// Data is the request body as it was sent (a JSON body is checked, not decoded).
	Data           string
	EventID        string
	EventType      string
	EventTime      string
	EventNamespace string
	Extensions     Extension

	// Method, Path (without the query), Query and Headers (lower-case names, repeated values joined with
	// ", ") of the request, and the CloudEvents attributes from its ce-* headers (without the prefix).
	Method  string
	Path    string
	Query   map[string][]string
	Headers map[string]string
	CE      map[string]string
}

// Context describes the function.
type Context struct {
	FunctionName string
	// Timeout in seconds, as Kubeless gives it.
	Timeout string
	Runtime string
	// MemoryLimit like "128Mi".
	MemoryLimit string

	TimeoutMs int
	RequestID string
	Revision  string
	// Deadline is when the invocation times out.
	Deadline time.Time
}

// RemainingTimeInMillis is how long the invocation has left before it times out.
func (c Context) RemainingTimeInMillis() int64 {
	left := time.Until(c.Deadline).Milliseconds()
	if left < 0 {
		return 0
	}
	return left
}
