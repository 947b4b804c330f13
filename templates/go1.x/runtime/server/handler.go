package server

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kubeless/kubeless/pkg/functions"
)

// Handler is Kubeless's Go function signature.
type Handler = func(functions.Event, functions.Context) (string, error)

// Package is what build.sh generates for the function's package: its top-level functions by name (of
// any signature: the one FUNCD_HANDLER names is checked when the server starts), and the file each is in.
type Package struct {
	Functions map[string]any
	Files     map[string]string
}

// loadError is a handler that cannot be served: the server says why and exits with code 3.
type loadError struct{ msg string }

func (e loadError) Error() string { return e.msg }

// resolve finds FUNCD_HANDLER (`file.Function`) in the compiled package. The file must exist in the
// function's folder (it is where a reader looks for the function); the function may be written as
// exported (`handler.Handler`) or as the contract's lower-case default (`handler.main` finds `main`,
// else `Main`; the default handler.main also finds Kubeless's conventional `Handler`).
func resolve(c config, pkg Package) (Handler, error) {
	spec := c.handler
	dot := strings.LastIndex(spec, ".")
	if dot <= 0 || dot == len(spec)-1 {
		return nil, loadError{fmt.Sprintf("Cannot load handler %q: it must be file.Function, e.g. handler.Handler", spec)}
	}
	file, name := spec[:dot], spec[dot+1:]
	source := file + ".go"
	path := filepath.Join(c.functionDir, source)
	if info, err := os.Stat(path); err != nil || info.IsDir() {
		return nil, loadError{fmt.Sprintf("Cannot load handler %q: none of %s exists in %s", spec, source, c.functionDir)}
	}
	if strings.Contains(file, "/") {
		return nil, loadError{fmt.Sprintf(
			"Cannot load handler %q: %s is in a sub-folder, but a Go function is the package at the root of its folder; name a file there (sub-folders are packages it imports)", spec, path)}
	}
	candidates := []string{name}
	if r, size := utf8.DecodeRuneInString(name); unicode.IsLower(r) {
		candidates = append(candidates, string(unicode.ToUpper(r))+name[size:])
	}
	if spec == "handler.main" {
		// funcd's default handler, for a function deployed without one: Kubeless's Go functions are
		// conventionally called Handler.
		candidates = append(candidates, "Handler")
	}
	for _, candidate := range candidates {
		fn, ok := pkg.Functions[candidate]
		if !ok {
			continue
		}
		handler, ok := fn.(Handler)
		if !ok {
			return nil, loadError{fmt.Sprintf(
				"Cannot load handler %q: the function %q of %s is a %T, not a func(functions.Event, functions.Context) (string, error)",
				spec, candidate, filepath.Join(c.functionDir, pkg.Files[candidate]), fn)}
		}
		return handler, nil
	}
	names := make([]string, 0, len(pkg.Functions))
	for n := range pkg.Functions {
		names = append(names, n)
	}
	sort.Strings(names)
	listed, hint := "(none)", ""
	if len(names) > 0 {
		listed = strings.Join(names, ", ")
		hint = fmt.Sprintf("; deploy with --handler %s.%s", strings.TrimSuffix(pkg.Files[names[0]], ".go"), names[0])
	}
	return nil, loadError{fmt.Sprintf("Cannot load handler %q: the function %q of %s is missing; its functions are: %s%s",
		spec, name, path, listed, hint)}
}
