package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildPrefersLdflagsThenTheModuleVersionGoRecorded(t *testing.T) {
	stamped := &debug.BuildInfo{Main: debug.Module{Path: Module, Version: "v0.0.0-20261130071517-0b21718abcde"}}
	asDependency := &debug.BuildInfo{
		Main: debug.Module{Path: "caddy", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: "github.com/caddyserver/caddy/v2", Version: "v2.11.9"},
			{Path: Module, Version: "v1.3.0"},
		},
	}
	replaced := &debug.BuildInfo{
		Main: debug.Module{Path: "caddy", Version: "(devel)"},
		Deps: []*debug.Module{{Path: Module, Version: "v0.0.0-00010101000000-000000000000", Replace: &debug.Module{Path: "./keygate"}}},
	}
	for _, tc := range []struct {
		name string
		set  string
		bi   *debug.BuildInfo
		want string
	}{
		{"ldflags win over everything", "v9.9.9", stamped, "v9.9.9"},
		{"a checkout build carries its commit", "", stamped, "v0.0.0-20261130071517-0b21718abcde"},
		{"an xcaddy build carries the required version", "", asDependency, "v1.3.0"},
		{"a build against a local checkout has none", "", replaced, "(devel)"},
		{"no build info", "", nil, "(devel)"},
		{"a binary without keygate in it", "", &debug.BuildInfo{Main: debug.Module{Path: "other", Version: "v1.0.0"}}, "(devel)"},
		{"a test binary", "", &debug.BuildInfo{Main: debug.Module{Path: Module, Version: "(devel)"}}, "(devel)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fromBuild(tc.set, tc.bi); got != tc.want {
				t.Errorf("fromBuild = %q, want %q", got, tc.want)
			}
		})
	}
}
