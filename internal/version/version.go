// Package version says which keygate a binary is: the version `keygate
// version` and `keygate --help` print, instances report to each other, and
// the admin API's User-Agent carries.
package version

import "runtime/debug"

// Module is keygate's module path.
const Module = "github.com/docana/keygate"

// override is set at build time, for a release build or a distribution's
// package:
//
//	go build -ldflags "-X github.com/docana/keygate/internal/version.override=v1.4.0" ./cmd/keygate
var override string

// String returns keygate's version: the one set at build time with
// -ldflags, else the one Go recorded in the binary (a release tag when
// keygate is built as a dependency, as xcaddy does; a pseudo-version with
// the commit when cmd/keygate is built in a git checkout), else "(devel)".
func String() string {
	bi, _ := debug.ReadBuildInfo()
	return fromBuild(override, bi)
}

// fromBuild is String's rule, given the -ldflags value and the build info.
func fromBuild(set string, bi *debug.BuildInfo) string {
	const devel = "(devel)"
	if set != "" {
		return set
	}
	if bi == nil {
		return devel
	}
	mod := &bi.Main
	if mod.Path != Module {
		mod = nil
		for _, dep := range bi.Deps {
			if dep.Path == Module {
				mod = dep
				break
			}
		}
	}
	if mod == nil {
		return devel
	}
	if mod.Replace != nil {
		// xcaddy --replace with a checkout: the directory has no version.
		if mod.Replace.Version != "" {
			return mod.Replace.Version
		}
		return devel
	}
	if mod.Version == "" {
		return devel
	}
	return mod.Version
}
