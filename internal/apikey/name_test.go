package apikey

import (
	"strings"
	"testing"
)

func TestCheckNameAcceptsVisibleNamesAndRefusesInvisibleOrControlCharacters(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		wantErr string // "" for none
	}{
		{"plain", "CI/CD Pipeline", ""},
		{"unicode letters and symbols", "Ünïcode ✓ — 鍵", ""},
		{"quotes", `quote ' " and <b>`, ""},
		{"inner spaces of every kind", "a b\u00a0c\u3000d", ""},
		{"emoji with a variation selector (Mn, not Cf)", "ok \u2764\ufe0f", ""},
		{"one character", "x", ""},
		{"100 characters of two bytes", strings.Repeat("é", 100), ""},

		{"empty", "", "must not be empty"},
		{"ASCII spaces only", "   ", "must not be empty"},
		{"no-break space only", "\u00a0", "must not be empty"},
		{"ideographic space only", "\u3000\u3000", "must not be empty"},
		{"mixed white space only", " \u2003\u00a0 ", "must not be empty"},
		{"101 characters", strings.Repeat("n", 101), "must be at most 100 characters, not 101"},
		{"invalid UTF-8", "a\xffb", "must be valid UTF-8"},
		{"newline", "a\nb", "must not hold control characters (U+000A)"},
		{"tab", "a\tb", "must not hold control characters (U+0009)"},
		{"escape", "a\x1bb", "must not hold control characters (U+001B)"},
		{"delete", "a\x7fb", "must not hold control characters (U+007F)"},
		{"C1 next line", "a\u0085b", "must not hold control characters (U+0085)"},
		{"C1 control sequence introducer", "a\u009bb", "must not hold control characters (U+009B)"},
		{"right-to-left override", "abc\u202etxt.exe", "must not hold format characters (U+202E)"},
		{"zero-width space", "a\u200bb", "must not hold format characters (U+200B)"},
		{"zero-width joiner", "a\u200db", "must not hold format characters (U+200D)"},
		{"byte order mark", "\ufeffname", "must not hold format characters (U+FEFF)"},
		{"zero-width space only", "\u200b", "must not hold format characters (U+200B)"},
		{"soft hyphen", "a\u00adb", "must not hold format characters (U+00AD)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckName(tc.in)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("CheckName(%q) = %v, want nil", tc.in, err)
			case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
				t.Errorf("CheckName(%q) = %v, want %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestCheckNameErrorsNeverQuoteTheName(t *testing.T) {
	secretish := "dk_0123456789abcdefghijklmnopqrstuv"
	for _, in := range []string{secretish + "\u202e", secretish + "\n", strings.Repeat(secretish, 4)} {
		if err := CheckName(in); err == nil || strings.Contains(err.Error(), "dk_0123") {
			t.Errorf("CheckName(%q) = %v, want an error that does not quote the name", in, err)
		}
	}
}
