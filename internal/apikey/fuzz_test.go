package apikey

import (
	"hash/crc32"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzParseAuthorization feeds arbitrary header values to the parser. The
// seeds in testdata/fuzz/FuzzParseAuthorization are the header shapes of
// DESIGN.md's error table.
func FuzzParseAuthorization(f *testing.F) {
	f.Add("ApiKey dk_00000000000000000000000000000000" + "4G66jy")
	f.Add("")
	f.Add("ApiKey")
	f.Add("Bearer abc")
	f.Add("ApiKey a b")
	f.Fuzz(func(t *testing.T, value string) {
		key, err := ParseAuthorization(value)
		if err != nil {
			if key != "" {
				t.Fatalf("ParseAuthorization(%q) returned key %q with error %v", value, key, err)
			}
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not *Error", err)
			}
			return
		}
		if key == "" || strings.ContainsAny(key, " \t") {
			t.Fatalf("ParseAuthorization(%q) = %q: empty or holds white space", value, key)
		}
		if !strings.Contains(value, key) {
			t.Fatalf("key %q is not part of the header %q", key, value)
		}
		// HTTP's white space is SP and HTAB, its case folding ASCII: an
		// accepted value is the scheme in ASCII letters, spaces, and a
		// key of neither, with only SP and HTAB around them.
		scheme, _, _ := strings.Cut(strings.Trim(value, " \t"), " ")
		lower := strings.Map(func(r rune) rune {
			if 'A' <= r && r <= 'Z' {
				return r + 'a' - 'A'
			}
			return r
		}, scheme)
		if lower != "apikey" {
			t.Fatalf("accepted scheme %q", scheme)
		}
		if trimmed := strings.Trim(value, " \t"); !strings.HasSuffix(trimmed, key) {
			t.Fatalf("key %q is not what ends the header %q", key, value)
		}
	})
}

// FuzzCheck feeds arbitrary keys to the format check, and checks that a
// key that passes has exactly the documented shape and that no error
// message repeats the key.
func FuzzCheck(f *testing.F) {
	f.Add("dk_00000000000000000000000000000000" + "4G66jy")
	f.Add("dk_00000000000000000000000000000000" + "4G66jz")
	f.Add("dk_short")
	f.Add("xx_00000000000000000000000000000000" + "4G66jy")
	format, err := NewFormat("dk")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := format.Check(key)
		if err != nil {
			if e, ok := err.(*Error); !ok || e.Code() != CodeMalformed {
				t.Fatalf("Check(%q) = %v, want a malformed_api_key *Error", key, err)
			}
			if len(key) > 3 && strings.Contains(err.Error(), key) {
				t.Fatalf("error %q repeats the key", err)
			}
			return
		}
		if len(key) != 41 || !strings.HasPrefix(key, "dk_") {
			t.Fatalf("Check accepted %q", key)
		}
		for _, c := range key[3:] {
			if !strings.ContainsRune(base62Alphabet, c) {
				t.Fatalf("Check accepted %q with %q", key, c)
			}
		}
		var want [checksumLength]byte
		putChecksum(want[:], crc32IEEE(key[:35]))
		if string(want[:]) != key[35:] {
			t.Fatalf("Check accepted %q with a wrong checksum", key)
		}
	})
}

func crc32IEEE(s string) uint32 { return crc32.ChecksumIEEE([]byte(s)) }

// FuzzCheckName feeds arbitrary names to the name rule: an accepted name
// holds no control or format character and not only white space, and an
// error never repeats the name. The seeds in testdata/fuzz/FuzzCheckName
// are the invisible characters the rule exists for.
func FuzzCheckName(f *testing.F) {
	for _, seed := range []string{"CI/CD Pipeline", "", "\u3000", "a\u0085b", "abc\u202etxt", "a\u200db", "\ufeff", strings.Repeat("é", 101)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := CheckName(name)
		if err != nil {
			if len(name) > 3 && strings.Contains(err.Error(), name) {
				t.Fatalf("CheckName(%q) = %q: the error repeats the name", name, err)
			}
			return
		}
		if !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxNameLength {
			t.Fatalf("CheckName(%q) accepted invalid UTF-8 or over %d characters", name, MaxNameLength)
		}
		blank := true
		for _, r := range name {
			if unicode.In(r, unicode.Cc, unicode.Cf) {
				t.Fatalf("CheckName(%q) accepted %U", name, r)
			}
			if !unicode.IsSpace(r) {
				blank = false
			}
		}
		if blank {
			t.Fatalf("CheckName(%q) accepted a name of white space only", name)
		}
	})
}

// FuzzValidID feeds arbitrary strings to ValidID, which admin requests
// use to refuse garbage before it reaches a store or a log. It must never
// panic and must accept exactly "key_" followed by 22 base62 characters.
func FuzzValidID(f *testing.F) {
	f.Add("key_0123456789ABCDEFabcdef")
	f.Add("key_0123456789ABCDEFabcde")
	f.Add("key_0123456789ABCDEFabcdef0")
	f.Add("KEY_0123456789ABCDEFabcdef")
	f.Add("key_0123456789ABCDEFabcd-f")
	f.Add("key_0123456789ABCDEFabcd\xff")
	f.Add("")
	f.Fuzz(func(t *testing.T, id string) {
		got := ValidID(id)
		want := len(id) == 26 && strings.HasPrefix(id, "key_")
		for i := 4; want && i < len(id); i++ {
			c := id[i]
			want = '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
		}
		if got != want {
			t.Fatalf("ValidID(%q) = %v, want %v", id, got, want)
		}
	})
}
