package server

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// config is the contract's FUNCD_* variables, read once at start-up.
type config struct {
	listen       string
	functionDir  string
	handler      string
	functionName string
	revision     string
	runtime      string
	timeoutMs    int
	memoryMb     int
}

// configError is an invalid FUNCD_* value: the server says which and exits with code 1.
type configError struct{ msg string }

func (e configError) Error() string { return e.msg }

func readConfig() (config, error) {
	dir := os.Getenv("FUNCD_FUNCTION_DIR")
	if dir == "" {
		dir = "."
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	c := config{
		listen:       envOr("FUNCD_LISTEN", "8080"),
		functionDir:  abs,
		handler:      envOr("FUNCD_HANDLER", "handler.main"),
		functionName: envOr("FUNCD_FUNCTION_NAME", filepath.Base(abs)),
		revision:     os.Getenv("FUNCD_REVISION"),
		runtime:      envOr("FUNCD_RUNTIME", "go1.x"),
	}
	if c.timeoutMs, err = positiveInt("FUNCD_TIMEOUT_MS", 30000); err != nil {
		return c, err
	}
	if c.memoryMb, err = positiveInt("FUNCD_MEMORY_LIMIT_MB", 256); err != nil {
		return c, err
	}
	switch style := os.Getenv("FUNCD_HANDLER_STYLE"); style {
	case "", "auto", "kubeless":
	case "lambda":
		return c, configError{`FUNCD_HANDLER_STYLE "lambda" is not supported by the Go runtime: its handlers are Kubeless's (func(functions.Event, functions.Context) (string, error))`}
	default:
		return c, configError{fmt.Sprintf("FUNCD_HANDLER_STYLE %q is not one of auto, kubeless", style)}
	}
	return c, nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

var digits = regexp.MustCompile(`^[0-9]{1,9}$`)

func positiveInt(name string, fallback int) (int, error) {
	raw, set := os.LookupEnv(name)
	if !set || raw == "" {
		return fallback, nil
	}
	n, err := strconv.Atoi(raw)
	if !digits.MatchString(raw) || err != nil || n <= 0 {
		return 0, configError{fmt.Sprintf("%s %q is not a positive integer", name, raw)}
	}
	return n, nil
}

// listenAddress turns FUNCD_LISTEN into a network and an address: an absolute path is a unix socket, a
// port or host:port is TCP.
func listenAddress(listen string) (network, address string, err error) {
	if strings.HasPrefix(listen, "/") {
		return "unix", listen, nil
	}
	host, port := "", listen
	if i := strings.LastIndex(listen, ":"); i >= 0 {
		host, port = listen[:i], listen[i+1:]
	}
	n, convErr := strconv.Atoi(port)
	if convErr != nil || n < 0 || n > 65535 || !regexp.MustCompile(`^\d{1,5}$`).MatchString(port) {
		return "", "", configError{fmt.Sprintf("FUNCD_LISTEN %q is not a socket path, port or host:port", listen)}
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "tcp", host + ":" + port, nil
}
