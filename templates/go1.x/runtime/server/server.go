// Package server is funcd's Go runtime server: it serves one compiled Kubeless Go function over HTTP as
// docs/runtime-contract.md says (FUNCD_* environment, /healthz, /metrics, timeouts → 408, errors → 500,
// output tagged with request ids). build.sh generates the main package that calls Run.
package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kubeless/kubeless/pkg/functions"
)

const problemBase = "https://funcd.dev/errors#"

type server struct {
	cfg     config
	handler Handler
	metrics *metrics
	out     *capture
	seq     atomic.Uint64
}

// Run serves the function's package until SIGTERM; it never returns.
func Run(pkg Package) {
	cfg, err := readConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "funcd: %s\n", err)
		os.Exit(1)
	}
	network, address, err := listenAddress(cfg.listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "funcd: %s\n", err)
		os.Exit(1)
	}
	handler, err := resolve(cfg, pkg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "funcd: %s\n", err)
		os.Exit(3)
	}
	if network == "unix" {
		// A socket file left by a killed instance would make listening fail.
		os.Remove(address)
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "funcd: cannot listen on %s: %s\n", cfg.listen, err)
		os.Exit(1)
	}
	s := &server{cfg: cfg, handler: handler, metrics: newMetrics(), out: startCapture()}
	httpServer := &http.Server{Handler: s, ReadHeaderTimeout: time.Minute}
	stopped := make(chan struct{})
	go func() {
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
		<-signals
		// In-flight invocations finish (at most their timeout); idle kept-alive connections close now.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.timeoutMs)*time.Millisecond+5*time.Second)
		defer cancel()
		httpServer.Shutdown(ctx)
		close(stopped)
	}()
	if err := httpServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "funcd: %s\n", err)
		os.Exit(1)
	}
	<-stopped
	s.out.stop()
	os.Exit(0)
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID := r.Header.Get("x-request-id")
	if requestID == "" {
		requestID = uuid()
	}
	// Set by key, not Set(): written as sent, lower-case like the other runtimes' headers.
	w.Header()["x-request-id"] = []string{requestID}
	// Go leaves it implicit on HTTP/1.1; the other runtimes say it, and some clients look for it.
	w.Header().Set("Connection", "keep-alive")
	if r.Header.Get("x-funcd-invoke") != "1" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		switch r.URL.Path {
		case "/healthz":
			send(w, 200, "application/json", []byte(`{"status":"ready"}`))
			return
		case "/metrics":
			send(w, 200, "text/plain; version=0.0.4; charset=utf-8", []byte(s.metrics.render(s.cfg.functionName)))
			return
		}
	}
	s.invoke(w, r, requestID)
}

func send(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	if status == http.StatusNoContent || status == http.StatusNotModified {
		body = nil
	} else {
		h.Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(status)
	w.Write(body)
}

func problem(status int, slug, code, title, detail string) []byte {
	b, _ := json.Marshal(map[string]any{"type": problemBase + slug, "title": title, "status": status, "detail": detail, "code": code})
	return b
}

// result is how a handler call ended.
type result struct {
	body     string
	err      error
	panic    any
	stack    []byte
	panicked bool
}

func (s *server) invoke(w http.ResponseWriter, r *http.Request, requestID string) {
	started := time.Now()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client went away while sending: not a call
	}
	contentType := r.Header.Get("content-type")
	media, _, _ := mime.ParseMediaType(contentType)
	media = strings.ToLower(media)
	if len(body) > 0 && (media == "application/json" || strings.HasSuffix(media, "+json")) && !json.Valid(body) {
		send(w, 400, "application/problem+json", problem(400, "bad-request", "BAD_REQUEST", "Bad request", "The request body is not valid JSON"))
		return
	}
	timeout := time.Duration(s.cfg.timeoutMs) * time.Millisecond
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	tag := "\x1e" + logTag(requestID) + "\x1f"
	n := s.seq.Add(1)
	response := newResponse()
	event := s.event(r, body, requestID, media, response, ctx)
	fnContext := functions.Context{
		FunctionName: s.cfg.functionName,
		Timeout:      strconv.Itoa((s.cfg.timeoutMs + 999) / 1000),
		Runtime:      s.cfg.runtime,
		MemoryLimit:  strconv.Itoa(s.cfg.memoryMb) + "Mi",
		TimeoutMs:    s.cfg.timeoutMs,
		RequestID:    requestID,
		Revision:     s.cfg.revision,
		Deadline:     deadline,
	}
	done := make(chan result, 1)
	s.out.begin(n, tag)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{panicked: true, panic: p, stack: debug.Stack()}
			}
		}()
		out, err := s.handler(event, fnContext)
		done <- result{body: out, err: err}
	}()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		response.close()
		s.out.end(n)
		if r.Context().Err() != nil {
			s.metrics.record(time.Since(started), true)
			return // the client went away; nobody to answer
		}
		w.Header()["x-funcd-recycle"] = []string{"1"}
		detail := fmt.Sprintf("Function %q did not finish within its timeout of %d ms", s.cfg.functionName, s.cfg.timeoutMs)
		send(w, 408, "application/problem+json", problem(408, "function-timeout", "FUNCTION_TIMEOUT", "Function timed out", detail))
		s.metrics.record(time.Since(started), true)
		return
	}
	response.close()
	s.out.end(n)
	if res.panicked || res.err != nil {
		detail := describe(res)
		text := fmt.Sprintf("funcd: function %q failed: %s", s.cfg.functionName, detail)
		if res.panicked {
			text += "\n" + string(res.stack)
		}
		s.out.writeTagged(tag, text)
		send(w, 500, "application/problem+json", problem(500, "function-error", "FUNCTION_ERROR", "The function threw an error", detail))
		s.metrics.record(time.Since(started), true)
		return
	}
	status, headers, written := response.result()
	for name, values := range headers {
		w.Header()[name] = values
	}
	contentType = ""
	if headers.Get("Content-Type") == "" {
		contentType = "text/plain; charset=utf-8"
	}
	if r.Method == http.MethodHead {
		written, res.body = nil, ""
	}
	send(w, status, contentType, append(written, res.body...))
	s.metrics.record(time.Since(started), status >= 500)
}

// describe is a failure's detail: `<ErrorType>: <message>` for an error or panic value of a type the
// function declared (a `TypeError` struct answers "TypeError: …"), `Error: <message>` for the standard
// library's errors.New and fmt.Errorf, the value as text for anything else.
func describe(res result) string {
	value := any(res.err)
	if res.panicked {
		value = res.panic
	}
	message := fmt.Sprint(value)
	if err, ok := value.(error); ok {
		message = err.Error()
		t := reflect.TypeOf(err)
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Name() == "" || t.PkgPath() == "errors" || t.PkgPath() == "fmt" {
			return "Error: " + message
		}
		if t.PkgPath() == "runtime" {
			return "RuntimeError: " + strings.TrimPrefix(message, "runtime error: ")
		}
		return t.Name() + ": " + message
	}
	return message
}

// logTag is the request id as a log tag: at most 200 characters, control characters as '?'.
func logTag(id string) string {
	if len(id) > 200 {
		id = id[:200]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, id)
}

func (s *server) event(r *http.Request, body []byte, requestID, media string, response *response, ctx context.Context) functions.Event {
	headers := map[string]string{}
	ce := map[string]string{}
	for name, values := range r.Header {
		lower := strings.ToLower(name)
		joined := strings.Join(values, ", ")
		headers[lower] = joined
		if strings.HasPrefix(lower, "ce-") {
			ce[lower[3:]] = joined
		}
	}
	if r.Host != "" {
		headers["host"] = r.Host
	}
	eventType := r.Header.Get("event-type")
	if eventType == "" {
		eventType = r.Header.Get("content-type")
		if eventType == "" {
			eventType = "application/json"
		}
	}
	return functions.Event{
		Data:           string(body),
		EventID:        firstOf(r.Header.Get("event-id"), requestID),
		EventType:      eventType,
		EventTime:      firstOf(r.Header.Get("event-time"), time.Now().UTC().Format("2006-01-02T15:04:05.000Z")),
		EventNamespace: firstOf(r.Header.Get("event-namespace"), "funcd"),
		Extensions:     functions.Extension{Request: r, Response: response, Context: ctx},
		Method:         r.Method,
		Path:           r.URL.Path,
		Query:          r.URL.Query(),
		Headers:        headers,
		CE:             ce,
	}
}

func firstOf(value, fallback string) string {
	if value != "" {
		return value
	}
	return fallback
}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
