package pathcheck

import (
	"net/url"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name, path string
		want       Problem
	}{
		{"root", "/", OK},
		{"empty", "", OK},
		{"asterisk of OPTIONS *", "*", OK},
		{"plain path", "/api/users/42", OK},
		{"trailing slash", "/api/users/", OK},
		{"dot inside a segment", "/api/file.json", OK},
		{"three dots", "/api/...", OK},
		{"dots and a letter", "/api/..a", OK},
		{"encoded letter", "/api/%41bc", OK},
		{"encoded dot inside a segment", "/api/file%2ejson", OK},
		{"encoded space", "/api/a%20b", OK},
		{"encoded non-ASCII", "/api/caf%C3%A9", OK},
		{"raw non-ASCII", "/api/caf\xc3\xa9", OK},
		{"encoded colon and at", "/api/a%3Ab%40c", OK},

		{"Tomcat dot-dot with a parameter", "/api/..;/admin", Parameter},
		{"path parameter", "/api/users;jsessionid=1/42", Parameter},
		{"encoded semicolon", "/api/users%3bx", Parameter},
		{"encoded semicolon, upper case", "/api/users%3Bx", Parameter},
		{"backslash", `/api/..\admin`, Backslash},
		{"encoded backslash", "/api/..%5cadmin", Backslash},
		{"encoded backslash, upper case", "/api/..%5Cadmin", Backslash},
		{"encoded slash", "/api/a%2fb", EncodedSlash},
		{"encoded slash, upper case", "/api/a%2Fb", EncodedSlash},
		{"double-encoded dot", "/api/%252e%252e/admin", EncodedPercent},
		{"double-encoded slash", "/api/a%252fb", EncodedPercent},
		{"encoded percent sign", "/api/100%25", EncodedPercent},
		{"encoded dot-dot segment", "/api/%2e%2e/admin", DotSegment},
		{"encoded dot-dot segment, upper case", "/api/%2E%2E/admin", DotSegment},
		{"half-encoded dot-dot segment", "/api/.%2E/admin", DotSegment},
		{"encoded dot segment", "/api/%2e/admin", DotSegment},
		{"dot-dot segment", "/api/../admin", DotSegment},
		{"dot segment", "/api/./admin", DotSegment},
		{"final dot-dot segment", "/api/..", DotSegment},
		{"final encoded dot segment", "/api/%2e", DotSegment},
		{"relative dot-dot", "../admin", DotSegment},
		{"empty segment", "/api//admin", EmptySegment},
		{"leading empty segment", "//admin", EmptySegment},
		{"final empty segment", "/api//", EmptySegment},
		{"encoded NUL", "/api/admin%00.json", Control},
		{"encoded line feed", "/api/a%0a", Control},
		{"encoded DEL", "/api/a%7F", Control},
		{"raw tab", "/api/a\tb", Control},
		{"percent at the end", "/api/a%", BadEscape},
		{"percent and one digit", "/api/a%2", BadEscape},
		{"percent and non-hex", "/api/a%zz", BadEscape},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Check(tt.path); got != tt.want {
				t.Errorf("Check(%q) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestCheckDecoded(t *testing.T) {
	tests := []struct {
		name, path string
		want       Problem
	}{
		{"plain path", "/api/users/42", OK},
		{"decoded space", "/api/a b", OK},
		{"decoded non-ASCII", "/api/caf\xc3\xa9", OK},
		{"percent sign, sent as %25", "/api/100%", EncodedPercent},
		{"what %252e decodes to once", "/api/%2e%2e/admin", EncodedPercent},
		{"semicolon", "/api/..;/admin", Parameter},
		{"backslash, sent as %5C", `/api/..\admin`, Backslash},
		{"dot-dot segment", "/api/../admin", DotSegment},
		{"empty segment", "/api//admin", EmptySegment},
		{"NUL, sent as %00", "/api/a\x00", Control},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CheckDecoded(tt.path); got != tt.want {
				t.Errorf("CheckDecoded(%q) = %v, want %v", tt.path, got, tt.want)
			}
			if got := Check((&url.URL{Path: tt.path}).EscapedPath()); got != tt.want {
				t.Errorf("Check of its escaped form = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProblemsAreDescribedWithoutThePath(t *testing.T) {
	for _, p := range Problems {
		if s := p.String(); s == "" || s == OK.String() || strings.Contains(s, "unknown") {
			t.Errorf("problem %d is described as %q", p, s)
		}
	}
	if s := Problem(200).String(); s != "an unknown problem" {
		t.Errorf("Problem(200) = %q", s)
	}
}

func TestCheckAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = Check("/api/widget/chat/history%20x/file.json") }); n != 0 {
		t.Errorf("Check allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = CheckDecoded("/api/widget/chat/history x/file.json") }); n != 0 {
		t.Errorf("CheckDecoded allocates %v times", n)
	}
}

// FuzzCheck feeds arbitrary paths to Check and CheckDecoded. Neither may
// panic; CheckDecoded must answer as Check does for the path escaped as
// url.URL escapes it; and a path Check accepts must have a single reading:
// it decodes once, to the same segments, with no dot segment, no inner
// empty segment, no ';', '\' or control character, and decoding it again
// changes nothing.
func FuzzCheck(f *testing.F) {
	for _, p := range []string{
		"/api/users/42", "/api/..;/admin", `/api/..\x`, "/api/%2e%2e/x", "/api/%252e",
		"/api/a%2fb", "//x", "/api/x%00", "/api/%", "/api/file%2ejson", "*", "",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		if got, want := CheckDecoded(path), Check((&url.URL{Path: path}).EscapedPath()); got != want {
			t.Fatalf("CheckDecoded(%q) = %v, but Check of its escaped form = %v", path, got, want)
		}
		problem := Check(path)
		if problem != OK {
			if problem.String() == "" || strings.Contains(problem.String(), "unknown") {
				t.Fatalf("Check(%q) = %d, a problem without a description", path, problem)
			}
			return
		}
		decoded, err := url.PathUnescape(path)
		if err != nil {
			t.Fatalf("Check accepted %q, which does not decode: %v", path, err)
		}
		if strings.Count(decoded, "/") != strings.Count(path, "/") {
			t.Fatalf("Check accepted %q, which decodes to other segments: %q", path, decoded)
		}
		if strings.ContainsAny(decoded, ";\\%") {
			t.Fatalf("Check accepted %q, which decodes to %q", path, decoded)
		}
		for _, c := range []byte(decoded) {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("Check accepted %q, which decodes to a control character: %q", path, decoded)
			}
		}
		segments := strings.Split(decoded, "/")
		for i, seg := range segments {
			if seg == "." || seg == ".." {
				t.Fatalf("Check accepted %q, which has the dot segment %q", path, seg)
			}
			if seg == "" && i != 0 && i != len(segments)-1 {
				t.Fatalf("Check accepted %q, which has an empty segment", path)
			}
		}
		if again, err := url.PathUnescape(decoded); err != nil || again != decoded {
			t.Fatalf("Check accepted %q, which decodes twice to %q", path, again)
		}
	})
}
