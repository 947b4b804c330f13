// funcd's Go runtime server (docs/runtime-contract.md). build.sh compiles it together with the function
// into one binary per revision; it is never run on its own.
module funcd.dev/runtime

go 1.19
