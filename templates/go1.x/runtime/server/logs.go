package server

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Output written by a function goes to file descriptors 1 and 2, whoever writes it (fmt, log, a raw
// write): Go has no way to know which goroutine wrote a byte. So the server puts a pipe behind each and
// marks where invocations begin and end in that same pipe; a reader copies the pipe to the real output,
// prefixing each line that starts while exactly one invocation runs with that invocation's tag
// (\x1e<request-id>\x1f, docs/runtime-contract.md). The pipe keeps the writes and the marks in order,
// so a line is tagged by what ran when it was written, not when it was read. A line written while
// several invocations of one instance run is left untagged: it cannot be told whose it is.

// marker framing: NUL, 'B', the invocation's number, ':', its tag, NUL; or NUL, 'E', the number, NUL.
const markBegin, markEnd = 'B', 'E'

type capture struct {
	streams []*stream
	done    sync.WaitGroup
}

type stream struct {
	fd   int
	real *os.File // the original descriptor, where tagged lines go
	pipe *os.File // the write end, now also behind fd
	// Only the reader touches these.
	tags   map[uint64]string
	active []uint64
}

// startCapture replaces descriptors 1 and 2 by pipes; without it (an error), output stays untagged.
func startCapture() *capture {
	c := &capture{}
	for _, fd := range []int{1, 2} {
		orig, err := syscall.Dup(fd)
		if err != nil {
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			syscall.Close(orig)
			continue
		}
		if err := syscall.Dup2(int(w.Fd()), fd); err != nil {
			syscall.Close(orig)
			r.Close()
			w.Close()
			continue
		}
		s := &stream{fd: fd, real: os.NewFile(uintptr(orig), "real-"+strconv.Itoa(fd)), pipe: w, tags: map[uint64]string{}}
		c.streams = append(c.streams, s)
		c.done.Add(1)
		go func() {
			defer c.done.Done()
			s.copy(r)
		}()
	}
	return c
}

func (c *capture) mark(kind byte, n uint64, tag string) {
	frame := append([]byte{0, kind}, strconv.FormatUint(n, 10)...)
	if kind == markBegin {
		frame = append(append(frame, ':'), tag...)
	}
	frame = append(frame, 0)
	for _, s := range c.streams {
		s.pipe.Write(frame)
	}
}

// begin marks invocation n, tagged with tag (which holds no NUL), as running.
func (c *capture) begin(n uint64, tag string) { c.mark(markBegin, n, tag) }

func (c *capture) end(n uint64) { c.mark(markEnd, n, "") }

// writeTagged writes the server's own lines about invocation `tag` straight to the real stderr.
func (c *capture) writeTagged(tag string, text string) {
	out := os.Stderr
	for _, s := range c.streams {
		if s.fd == 2 {
			out = s.real
		}
	}
	var b bytes.Buffer
	for _, line := range bytes.Split(bytes.TrimRight([]byte(text), "\n"), []byte("\n")) {
		b.WriteString(tag)
		b.Write(line)
		b.WriteByte('\n')
	}
	out.Write(b.Bytes())
}

// stop puts the real descriptors back and waits until everything written has been copied.
func (c *capture) stop() {
	for _, s := range c.streams {
		syscall.Dup2(int(s.real.Fd()), s.fd)
		s.pipe.Close()
	}
	c.done.Wait()
}

func (s *stream) current() string {
	if len(s.active) == 1 {
		return s.tags[s.active[0]]
	}
	return ""
}

func (s *stream) copy(r io.Reader) {
	var pending []byte // unparsed input
	var line []byte    // the line being assembled, its tag already in front
	started := false
	lineTag := ""
	flush := func() {
		if started {
			line = append(line, '\n')
			s.real.Write(line)
		}
		line, started, lineTag = line[:0], false, ""
	}
	buf := make([]byte, 64*1024)
	for {
		n, err := r.Read(buf)
		pending = append(pending, buf[:n]...)
		i := 0
		for i < len(pending) {
			b := pending[i]
			if b == 0 {
				// A marker, or a NUL the function wrote; an incomplete one waits for more input.
				end := bytes.IndexByte(pending[i+1:], 0)
				if end < 0 && err == nil && len(pending)-i < 512 {
					break
				}
				if end >= 1 && (pending[i+1] == markBegin || pending[i+1] == markEnd) {
					body := string(pending[i+2 : i+1+end])
					tag := ""
					if colon := strings.IndexByte(body, ':'); colon >= 0 && pending[i+1] == markBegin {
						body, tag = body[:colon], body[colon+1:]
					}
					if id, perr := strconv.ParseUint(body, 10, 64); perr == nil {
						if pending[i+1] == markBegin {
							s.tags[id] = tag
							s.active = append(s.active, id)
						} else {
							if started && lineTag == s.tags[id] && lineTag != "" {
								flush() // a partial line the invocation left behind is its own
							}
							for k, a := range s.active {
								if a == id {
									s.active = append(s.active[:k], s.active[k+1:]...)
									break
								}
							}
							delete(s.tags, id)
						}
						i += end + 2
						continue
					}
				}
			}
			if b == '\n' {
				if !started {
					lineTag = s.current()
					line = append(line, lineTag...)
					started = true
				}
				flush()
			} else {
				if !started {
					lineTag = s.current()
					line = append(line, lineTag...)
					started = true
				}
				line = append(line, b)
			}
			i++
		}
		pending = append(pending[:0], pending[i:]...)
		if err != nil {
			if started {
				flush()
			}
			return
		}
	}
}
