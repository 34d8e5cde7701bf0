package test

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// caddyVersion is the Caddy keygate is built on (go.mod).
const caddyVersion = "v2.11.9"

func TestKeygateVersionAndHelpNameKeygateNotStockCaddy(t *testing.T) {
	out, err := exec.Command(keygateBin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("keygate version: %v\n%s", err, out)
	}
	want := regexp.MustCompile(`^keygate \S+ on Caddy ` + regexp.QuoteMeta(caddyVersion) + `\b`)
	if !want.Match(out) {
		t.Errorf("keygate version printed %q, want it to match %s", out, want)
	}

	help, err := exec.Command(keygateBin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("keygate --help: %v\n%s", err, help)
	}
	first, _, _ := strings.Cut(string(help), "\n")
	if !strings.HasPrefix(first, "keygate ") || strings.Contains(first, "Caddy is an extensible server") {
		t.Errorf("keygate --help begins %q, want keygate and its version", first)
	}
	if !strings.Contains(string(help), "keygate [command]") {
		t.Errorf("keygate --help does not show its usage as keygate:\n%s", help)
	}
}

func TestKeygateVersionSetAtBuildTimeWithLdflags(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "keygate")
	build := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X github.com/docana/keygate/internal/version.override=v1.4.0-test",
		"github.com/docana/keygate/cmd/keygate")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("keygate version: %v\n%s", err, out)
	}
	if want := "keygate v1.4.0-test on Caddy " + caddyVersion + " "; !strings.HasPrefix(string(out), want) {
		t.Errorf("keygate version printed %q, want it to begin %q", out, want)
	}
	help, err := exec.Command(bin, "help").CombinedOutput()
	if err != nil {
		t.Fatalf("keygate help: %v\n%s", err, help)
	}
	if !strings.HasPrefix(string(help), "keygate v1.4.0-test is ") {
		t.Errorf("keygate help begins %.60q, want the version set at build time", help)
	}
}
