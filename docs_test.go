package keygate

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// caddyfileBlock is a fenced Caddyfile snippet in a Markdown file.
var caddyfileBlock = regexp.MustCompile("(?s)```caddyfile\n(.*?)```")

// TestDocumentedCaddyfilesAreFormatted checks every Caddyfile we ship or
// show against Caddy's own formatter (what `keygate fmt` runs): a snippet
// copied from the README must not draw "Caddyfile input is not formatted"
// when it is run.
func TestDocumentedCaddyfilesAreFormatted(t *testing.T) {
	docs, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files := append([]string{"README.md", "xcaddy.md"}, docs...)
	var checked int
	for _, name := range files {
		if name == "docs/DESIGN.md" {
			// Its blocks are syntax sketches ("store sqlite [<path>]"),
			// aligned for reading, not configurations to run.
			continue
		}
		text, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range caddyfileBlock.FindAllSubmatch(text, -1) {
			checked++
			if got := caddyfile.Format(m[1]); !bytes.Equal(got, m[1]) {
				t.Errorf("%s: Caddyfile snippet %d is not formatted; keygate fmt makes it:\n%s", name, i+1, got)
			}
		}
	}
	for _, name := range []string{"Caddyfile.example", "docs/Caddyfile.saas"} {
		text, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		if got := caddyfile.Format(text); !bytes.Equal(got, text) {
			t.Errorf("%s is not formatted; keygate fmt makes it:\n%s", name, got)
		}
	}
	if checked < 10 {
		t.Errorf("checked %d Caddyfiles; the README alone has more: is the fence still ```caddyfile?", checked)
	}
}
