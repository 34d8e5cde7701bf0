package apikey

import (
	"fmt"
	"strings"
	"testing"
)

func TestCheckOwnerAcceptsTheOwnerAlphabetOnly(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		wantErr string // "" for none
	}{
		{"organisation ID", "org_42", ""},
		{"every allowed character", "Az09._:@-", ""},
		{"128 characters", strings.Repeat("o", 128), ""},
		{"one character", "x", ""},

		{"empty", "", "must not be empty"},
		{"129 characters", strings.Repeat("o", 129), "must be at most 128 characters, not 129"},
		{"space", "org 42", "not byte 0x20 at 3"},
		{"slash", "org/42", "not byte 0x2f at 3"},
		{"newline", "org\n", "not byte 0x0a at 3"},
		{"non-ASCII", "örg", "not byte 0xc3 at 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckOwner(tc.in)
			checkErr(t, err, tc.wantErr)
		})
	}
}

func TestCheckMetadataAppliesTheNameValueAndCountRules(t *testing.T) {
	many := map[string]string{}
	for i := range 17 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	sixteen := map[string]string{}
	for i := range 16 {
		sixteen[fmt.Sprintf("k%d", i)] = "v"
	}
	for _, tc := range []struct {
		name    string
		in      map[string]string
		wantErr string
	}{
		{"nil", nil, ""},
		{"empty", map[string]string{}, ""},
		{"plain", map[string]string{"plan": "pro", "tier_2": "eu-west"}, ""},
		{"empty value", map[string]string{"plan": ""}, ""},
		{"256-byte value", map[string]string{"v": strings.Repeat("é", 128)}, ""},
		{"32-character name", map[string]string{strings.Repeat("n", 32): "x"}, ""},
		{"16 entries", sixteen, ""},

		{"17 entries", many, "must hold at most 16 entries, not 17"},
		{"empty name", map[string]string{"": "x"}, "names must be 1 to 32 characters, not 0"},
		{"33-character name", map[string]string{strings.Repeat("n", 33): "x"}, "names must be 1 to 32 characters, not 33"},
		{"upper-case name", map[string]string{"Plan": "x"}, "names must match [a-z][a-z0-9_]{0,31}"},
		{"name starting with a digit", map[string]string{"1plan": "x"}, "names must match"},
		{"name starting with _", map[string]string{"_plan": "x"}, "names must match"},
		{"name with a dash", map[string]string{"a-b": "x"}, "names must match"},
		{"257-byte value", map[string]string{"v": strings.Repeat("x", 257)}, "value of v must be at most 256 bytes, not 257"},
		{"newline in a value", map[string]string{"v": "a\nb"}, "value of v must not hold control characters (U+000A)"},
		{"format character in a value", map[string]string{"v": "a\u202eb"}, "value of v must not hold format characters (U+202E)"},
		{"invalid UTF-8 value", map[string]string{"v": "\xff"}, "value of v must be valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, CheckMetadata(tc.in), tc.wantErr)
		})
	}
}

func TestCheckActorAcceptsTheThreeTypesAndAPrintableID(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      Actor
		wantErr string
	}{
		{"admin without ID", Actor{Type: ActorAdmin}, ""},
		{"console user", Actor{Type: ActorConsole, ID: "alice@example.com"}, ""},
		{"system", Actor{Type: ActorSystem}, ""},
		{"128-byte ID", Actor{Type: ActorAdmin, ID: strings.Repeat("a", 128)}, ""},

		{"no type", Actor{}, `type must be "admin", "console" or "system"`},
		{"unknown type", Actor{Type: "root"}, `type must be`},
		{"129-byte ID", Actor{Type: ActorAdmin, ID: strings.Repeat("a", 129)}, "id must be at most 128 bytes, not 129"},
		{"control character in the ID", Actor{Type: ActorAdmin, ID: "a\x00"}, "id must not hold control characters (U+0000)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, CheckActor(tc.in), tc.wantErr)
		})
	}
}

func TestCheckPolicyListBoundsEntries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []string
		wantErr string
	}{
		{"nil", nil, ""},
		{"two entries", []string{"https://example.com", "10.0.0.0/8"}, ""},
		{"33 entries", make([]string, 33), "must hold at most 32 entries, not 33"},
		{"empty entry", []string{"a", ""}, "entry 1 must not be empty"},
		{"control character", []string{"a\tb"}, "entry 0 must not hold control characters (U+0009)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, CheckPolicyList(tc.in), tc.wantErr)
		})
	}
}

// checkErr fails unless err is nil and want is "", or err holds want.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("error %q, want none", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q, want it to hold %q", err, want)
	}
}
