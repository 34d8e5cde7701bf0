package leakreport_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v3"

	"github.com/docana/keygate/internal/apikey"
)

// scanningDoc is docs/SECRET_SCANNING.md, which users copy rules from.
var scanningDoc = filepath.Join("..", "..", "docs", "SECRET_SCANNING.md")

// fencedBlocks returns the bodies of the doc's fenced code blocks of
// language lang, in order.
func fencedBlocks(t *testing.T, doc, lang string) []string {
	t.Helper()
	re := regexp.MustCompile("(?ms)^```" + regexp.QuoteMeta(lang) + "\n(.*?)^```$")
	var blocks []string
	for _, m := range re.FindAllStringSubmatch(doc, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// documentedPattern returns the one ```regex block of the doc.
func documentedPattern(t *testing.T) (doc, pattern string) {
	t.Helper()
	data, err := os.ReadFile(scanningDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc = string(data)
	blocks := fencedBlocks(t, doc, "regex")
	if len(blocks) != 1 {
		t.Fatalf("%s has %d regex blocks, want exactly 1", scanningDoc, len(blocks))
	}
	return doc, strings.TrimSpace(blocks[0])
}

func TestDocumentedPatternMatchesGeneratedKeysAndNothingLonger(t *testing.T) {
	_, pattern := documentedPattern(t)
	if !strings.Contains(pattern, "dk_") {
		t.Fatalf("pattern %q is not written for the default prefix dk", pattern)
	}
	for _, prefix := range []string{"dk", "acme", "k9", "abcdefghij"} {
		t.Run(prefix, func(t *testing.T) {
			// The doc says: write your prefix in place of dk.
			re := regexp.MustCompile(strings.Replace(pattern, "dk_", prefix+"_", 1))
			format, err := apikey.NewFormat(prefix)
			if err != nil {
				t.Fatal(err)
			}
			for range 500 {
				key, err := format.Generate()
				if err != nil {
					t.Fatal(err)
				}
				for _, text := range []string{
					key,
					"API_KEY=" + key + "\n",
					`{"api_key":"` + key + `"}`,
					"Authorization: ApiKey " + key + "\r\n",
					"https://api.example.com/v1?key=" + key + "&x=1",
					"const k = '" + key + "';",
					"key: " + key + "-old",
				} {
					got := re.FindAllStringSubmatch(text, -1)
					if len(got) != 1 || got[0][0] != key || got[0][len(got[0])-1] != key {
						t.Fatalf("pattern on %q found %q, want the key %s once (whole match and group)", text, got, key)
					}
				}
				// Anchored: nothing longer or shorter, nothing glued on.
				for _, text := range []string{
					key + "x",        // a character more
					key[:len(key)-1], // a character less
					"x" + key,        // a longer prefix
					"_" + key,        // glued to a name
					key + "_v2",      // glued after
					strings.Replace(key, "_", "-", 1),
					strings.ToUpper(key[:len(prefix)]) + key[len(prefix):],
				} {
					if re.MatchString(text) {
						t.Fatalf("pattern matches %q, which is not a key", text)
					}
				}
				// The checksum is out of the pattern's reach: a wrong one
				// still matches, and keygate's own check refuses it.
				last := key[len(key)-1]
				wrong := key[:len(key)-1] + string(map[bool]byte{true: 'b', false: 'a'}[last == 'a'])
				if !re.MatchString(wrong) {
					t.Fatalf("pattern does not match %q, a key with its last character changed", wrong)
				}
				if err := format.Check(wrong); err == nil {
					t.Fatalf("Format.Check accepts %q, whose checksum is wrong", wrong)
				}
				if err := format.Check(key); err != nil {
					t.Fatalf("Format.Check refuses a generated key: %v", err)
				}
			}
		})
	}
}

func TestGitleaksAndTrufflehogSnippetsHoldTheDocumentedPattern(t *testing.T) {
	doc, pattern := documentedPattern(t)

	tomls := fencedBlocks(t, doc, "toml")
	if len(tomls) != 1 {
		t.Fatalf("%d toml blocks, want 1 (the gitleaks rule)", len(tomls))
	}
	var gitleaks struct {
		Extend struct {
			UseDefault bool `toml:"useDefault"`
		} `toml:"extend"`
		Rules []struct {
			ID          string   `toml:"id"`
			Description string   `toml:"description"`
			Regex       string   `toml:"regex"`
			Keywords    []string `toml:"keywords"`
		} `toml:"rules"`
	}
	md, err := toml.Decode(tomls[0], &gitleaks)
	if err != nil {
		t.Fatalf("the gitleaks rule is not TOML: %v", err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		t.Errorf("the gitleaks rule has keys the test does not know: %v", undecoded)
	}
	if len(gitleaks.Rules) != 1 || gitleaks.Rules[0].Regex != pattern || gitleaks.Rules[0].ID == "" {
		t.Fatalf("gitleaks rules = %+v, want one rule with regex %q", gitleaks.Rules, pattern)
	}
	if kw := gitleaks.Rules[0].Keywords; len(kw) != 1 || kw[0] != "dk_" {
		t.Errorf("gitleaks keywords = %q, want [dk_]: gitleaks runs a rule only on text holding a keyword", kw)
	}

	yamls := fencedBlocks(t, doc, "yaml")
	if len(yamls) != 1 {
		t.Fatalf("%d yaml blocks, want 1 (the trufflehog detector)", len(yamls))
	}
	var trufflehog struct {
		Detectors []struct {
			Name     string            `yaml:"name"`
			Keywords []string          `yaml:"keywords"`
			Regex    map[string]string `yaml:"regex"`
		} `yaml:"detectors"`
	}
	dec := yaml.NewDecoder(strings.NewReader(yamls[0]))
	dec.KnownFields(true)
	if err := dec.Decode(&trufflehog); err != nil {
		t.Fatalf("the trufflehog detector is not YAML of that shape: %v", err)
	}
	if len(trufflehog.Detectors) != 1 {
		t.Fatalf("%d trufflehog detectors, want 1", len(trufflehog.Detectors))
	}
	d := trufflehog.Detectors[0]
	if len(d.Regex) != 1 || d.Name == "" {
		t.Fatalf("trufflehog detector %+v, want a name and one regex", d)
	}
	for name, re := range d.Regex {
		if re != pattern {
			t.Errorf("trufflehog regex %s = %q, want %q", name, re, pattern)
		}
	}
	if len(d.Keywords) != 1 || d.Keywords[0] != "dk_" {
		t.Errorf("trufflehog keywords = %q, want [dk_]", d.Keywords)
	}
}

// TestGitleaksFindsGeneratedKeysWithTheDocumentedRule runs the real
// gitleaks, if installed, with the documented rule over a directory of
// generated keys in the contexts they are pasted in, and near misses: it
// must report every key, whole, and none of the near misses.
func TestGitleaksFindsGeneratedKeysWithTheDocumentedRule(t *testing.T) {
	bin, err := exec.LookPath("gitleaks")
	if err != nil {
		msg := "gitleaks is not installed (go install github.com/zricethezav/gitleaks/v8@v8.30.1): the rule is checked by TestGitleaksAndTrufflehogSnippetsHoldTheDocumentedPattern only"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (.ci/run installs it)")
		}
		t.Skip(msg)
	}
	doc, _ := documentedPattern(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "gitleaks.toml")
	if err := os.WriteFile(config, []byte(fencedBlocks(t, doc, "toml")[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o700); err != nil {
		t.Fatal(err)
	}
	format, _ := apikey.NewFormat("dk")
	var text strings.Builder
	want := map[string]bool{}
	contexts := []string{"API_KEY=%s\n", "{\"api_key\": \"%s\"}\n", "curl -H 'Authorization: ApiKey %s' https://api.example.com\n", "const key = '%s';\n"}
	for i := range 20 {
		key, _ := format.Generate()
		want[key] = true
		text.WriteString(strings.Replace(contexts[i%len(contexts)], "%s", key, 1))
	}
	near, _ := format.Generate()
	text.WriteString("too long: " + near + "X\nglued: x" + near + "\nshort: " + near[:len(near)-1] + "\n")
	if err := os.WriteFile(filepath.Join(src, "keys.txt"), []byte(text.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "report.json")
	cmd := exec.Command(bin, "dir", "--no-banner", "--config", config, "--report-format", "json", "--report-path", report, src)
	out, err := cmd.CombinedOutput()
	if exit, ok := err.(*exec.ExitError); err != nil && !(ok && exit.ExitCode() == 1) { // 1: leaks found
		t.Fatalf("gitleaks: %v\n%s", err, out)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var findings []struct {
		RuleID, Secret, Match string
	}
	if err := json.Unmarshal(data, &findings); err != nil {
		t.Fatalf("gitleaks report: %v", err)
	}
	found := map[string]bool{}
	for _, f := range findings {
		if f.RuleID != "keygate-api-key" {
			continue // a default rule of gitleaks
		}
		if !want[f.Secret] {
			t.Errorf("gitleaks reported %q (match %q), which is not a key written", f.Secret, f.Match)
		}
		found[f.Secret] = true
	}
	if len(found) != len(want) {
		t.Errorf("gitleaks found %d of the %d keys", len(found), len(want))
	}
	t.Logf("gitleaks found %d of %d keys and none of the 3 near misses (%d findings in all)", len(found), len(want), len(findings))
}
