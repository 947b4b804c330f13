// Kubeless's Go function package, provided by funcd: a function importing
// github.com/kubeless/kubeless/pkg/functions compiles against this module (the build wires it with a
// replace directive), so no Kubeless source or network is needed.
module github.com/kubeless/kubeless

go 1.19
