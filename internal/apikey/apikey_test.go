package apikey

import (
	"errors"
	"hash/crc32"
	"strings"
	"testing"
	"time"
)

func mustFormat(t testing.TB, prefix string) *Format {
	t.Helper()
	f, err := NewFormat(prefix)
	if err != nil {
		t.Fatalf("NewFormat(%q): %v", prefix, err)
	}
	return f
}

func TestGeneratedKeysHaveTheDocumentedShape(t *testing.T) {
	f := mustFormat(t, "dk")
	seen := map[string]bool{}
	for range 1000 {
		key, err := f.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if len(key) != len("dk_")+32+6 {
			t.Fatalf("len(%q) = %d, want 41", key, len(key))
		}
		if !strings.HasPrefix(key, "dk_") {
			t.Fatalf("key %q does not start with dk_", key)
		}
		if err := f.Check(key); err != nil {
			t.Fatalf("Check(generated key) = %v", err)
		}
		if seen[key] {
			t.Fatalf("key %q generated twice", key)
		}
		seen[key] = true
	}
}

// TestChecksumIsCRC32OfPrefixAndRandomInBase62 computes the checksum the way
// DESIGN.md describes it, independently of putChecksum.
func TestChecksumIsCRC32OfPrefixAndRandomInBase62(t *testing.T) {
	f := mustFormat(t, "dk")
	key, err := f.Generate()
	if err != nil {
		t.Fatal(err)
	}
	body, tail := key[:len(key)-6], key[len(key)-6:]
	var n uint64
	for _, c := range tail {
		n = n*62 + uint64(strings.IndexRune(base62Alphabet, c))
	}
	if want := uint64(crc32.ChecksumIEEE([]byte(body))); n != want {
		t.Errorf("checksum digits %q = %d, want CRC-32 %d", tail, n, want)
	}
}

func TestChecksumOfAKnownKey(t *testing.T) {
	// CRC-32/IEEE of "dk_" + 32 zeros is 0xE89A078A = 3902408586
	// (Python's zlib.crc32), which is "4G66jy" in base62:
	// 4*62^5 + 16*62^4 + 6*62^3 + 6*62^2 + 45*62 + 60 = 3902408586.
	key := "dk_" + strings.Repeat("0", 32) + "4G66jy"
	if err := mustFormat(t, "dk").Check(key); err != nil {
		t.Errorf("Check(%q) = %v, want nil", key, err)
	}
}

func TestCheckRejectsMalformedKeys(t *testing.T) {
	f := mustFormat(t, "dk")
	good, err := f.Generate()
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		name, key, wantMsg string
	}{
		{"empty", "", `does not start with "dk_"`},
		{"other prefix", "xx" + good[2:], `does not start with "dk_"`},
		{"prefix without underscore", "dk" + good[3:], `does not start with "dk_"`},
		{"uppercase prefix", "DK" + good[2:], `does not start with "dk_"`},
		{"one character short", good[:len(good)-1], "must be 41 characters long"},
		{"one character long", good + "0", "must be 41 characters long"},
		{"character outside base62", good[:10] + "-" + good[11:], "character that no key has"},
		{"second underscore", good[:10] + "_" + good[11:], "character that no key has"},
		{"non-ASCII", good[:10] + "é" + good[12:], "character that no key has"},
		{"typo in the random part", flip(good, 5), "checksum does not match"},
		{"typo in the checksum", flip(good, len(good)-1), "checksum does not match"},
		{"swapped halves", good[:3] + good[19:35] + good[3:19] + good[35:], "checksum does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := f.Check(tt.key)
			var ae *Error
			if !errors.As(err, &ae) || ae.Code() != CodeMalformed {
				t.Fatalf("Check(%q) = %v, want a %s error", tt.key, err, CodeMalformed)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("message %q, want it to contain %q", err, tt.wantMsg)
			}
			if tt.key != "" && strings.Contains(err.Error(), tt.key) {
				t.Errorf("message %q repeats the key", err)
			}
		})
	}
}

func TestOtherPrefixes(t *testing.T) {
	for _, prefix := range []string{"ab", "live", "0123456789", "k8s"} {
		f := mustFormat(t, prefix)
		key, err := f.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(key, prefix+"_") || f.Check(key) != nil {
			t.Errorf("prefix %q: key %q, Check = %v", prefix, key, f.Check(key))
		}
		if f.Prefix() != prefix {
			t.Errorf("Prefix() = %q, want %q", f.Prefix(), prefix)
		}
		if err := mustFormat(t, "dk").Check(key); err == nil {
			t.Errorf("a dk format accepted %q", key)
		}
	}
}

func TestNewFormatRejectsBadPrefixes(t *testing.T) {
	for _, prefix := range []string{"", "d", "abcdefghijk", "DK", "d-k", "d_k", "dé"} {
		if _, err := NewFormat(prefix); err == nil {
			t.Errorf("NewFormat(%q) = nil error, want one", prefix)
		}
	}
}

func TestParseAuthorization(t *testing.T) {
	const key = "dk_0123"
	tests := []struct {
		name, value, wantKey string
		wantErr              error
	}{
		{"canonical", "ApiKey " + key, key, nil},
		{"lowercase scheme", "apikey " + key, key, nil},
		{"uppercase scheme", "APIKEY " + key, key, nil},
		{"several spaces", "ApiKey   " + key, key, nil},
		{"surrounding white space", " \tApiKey " + key + " \t", key, nil},
		{"empty", "", "", ErrMissingKey},
		{"only white space", "   ", "", ErrMissingKey},
		{"scheme alone", "ApiKey", "", ErrMissingKey},
		{"scheme and spaces", "ApiKey    ", "", ErrMissingKey},
		{"bearer", "Bearer " + key, "", ErrAuthScheme},
		{"basic", "Basic dXNlcjpwYXNz", "", ErrAuthScheme},
		{"key without scheme", key, "", ErrAuthScheme},
		{"scheme glued to key", "ApiKey" + key, "", ErrAuthScheme},
		{"tab instead of space", "ApiKey\t" + key, "", ErrAuthScheme},
		{"scheme with colon", "ApiKey: " + key, "", ErrAuthScheme},
		{"two keys", "ApiKey " + key + " " + key, "", ErrExtraTokens},
		{"key and a tab token", "ApiKey " + key + "\tx", "", ErrExtraTokens},
		{"comma separated credentials", "ApiKey " + key + ", Bearer x", "", ErrExtraTokens},
		// HTTP's white space is SP and HTAB, its case folding ASCII. Other
		// characters are part of the value: after the key they make it
		// malformed (Format.Check), before or in the scheme unknown.
		{"key followed by U+00A0", "ApiKey " + key + "\u00a0", key + "\u00a0", nil},
		{"key followed by U+0085", "ApiKey " + key + "\u0085", key + "\u0085", nil},
		{"key followed by a vertical tab", "ApiKey " + key + "\v", key + "\v", nil},
		{"scheme led by U+3000", "\u3000ApiKey " + key, "", ErrAuthScheme},
		{"scheme led by U+0085", "\u0085ApiKey " + key, "", ErrAuthScheme},
		{"scheme led by a line feed", "\nApiKey " + key, "", ErrAuthScheme},
		{"scheme and key separated by U+00A0", "ApiKey\u00a0" + key, "", ErrAuthScheme},
		{"scheme spelled with the Kelvin sign", "Api\u212aey " + key, "", ErrAuthScheme},
		{"scheme spelled with a look-alike letter", "Api\ua4d8ey " + key, "", ErrAuthScheme},
		{"only U+00A0", "\u00a0", "", ErrAuthScheme},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAuthorization(tt.value)
			if got != tt.wantKey || err != tt.wantErr {
				t.Errorf("ParseAuthorization(%q) = %q, %v; want %q, %v", tt.value, got, err, tt.wantKey, tt.wantErr)
			}
		})
	}
}

func TestErrorCodes(t *testing.T) {
	tests := []struct {
		err  *Error
		want Code
	}{
		{ErrMissingKey, "missing_api_key"},
		{ErrAuthScheme, "invalid_auth_scheme"},
		{ErrExtraTokens, "malformed_api_key"},
		{errKeyAlphabet, "malformed_api_key"},
		{errKeyChecksum, "malformed_api_key"},
		{NewError(CodeRevoked, "x"), "api_key_revoked"},
	}
	for _, tt := range tests {
		if tt.err.Code() != tt.want {
			t.Errorf("%q: code %q, want %q", tt.err, tt.err.Code(), tt.want)
		}
	}
	if !strings.Contains(ErrAuthScheme.Error(), "Authorization: ApiKey <key>") {
		t.Errorf("scheme error %q does not say how to send a key", ErrAuthScheme)
	}
}

func TestDigestIsSHA256OfTheWholeKey(t *testing.T) {
	// SHA-256("abc") from FIPS 180-2, appendix B.1.
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := DigestOf("abc").String(); got != want {
		t.Errorf("DigestOf(abc) = %s, want %s", got, want)
	}
}

func TestHint(t *testing.T) {
	tests := []struct{ key, want string }{
		{"dk_" + strings.Repeat("0", 32) + "4G66jy", "dk_…66jy"},
		{"live_abcdefgh", "live_…efgh"},
		{"abc", "abc_…"},
	}
	for _, tt := range tests {
		if got := Hint(tt.key); got != tt.want {
			t.Errorf("Hint(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id, err := NewID()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(id, "key_") || !ValidID(id) || seen[id] {
			t.Fatalf("NewID() = %q: prefix, validity or uniqueness wrong", id)
		}
		seen[id] = true
	}
	for _, id := range []string{"", "key_", "key_abc", "KEY_" + strings.Repeat("a", 22), "key_" + strings.Repeat("a", 21) + "/", "key_" + strings.Repeat("a", 23)} {
		if ValidID(id) {
			t.Errorf("ValidID(%q) = true", id)
		}
	}
}

func TestScopes(t *testing.T) {
	tests := []struct {
		name  string
		route ScopeSet
		key   Scope
		want  bool
	}{
		{"full key on a full-only route", NewScopeSet(), ScopeFull, true},
		{"widget key on a full-only route", NewScopeSet(), ScopeWidget, false},
		{"routine key on a full-only route", NewScopeSet(), ScopeRoutine, false},
		{"full key on a widget route", NewScopeSet(ScopeWidget), ScopeFull, true},
		{"widget key on a widget route", NewScopeSet(ScopeWidget), ScopeWidget, true},
		{"routine key on a widget route", NewScopeSet(ScopeWidget), ScopeRoutine, false},
		{"routine key on a routine route", NewScopeSet(ScopeRoutine), ScopeRoutine, true},
		{"widget key on a widget and routine route", NewScopeSet(ScopeWidget, ScopeRoutine), ScopeWidget, true},
		{"no scope on any route", NewScopeSet(ScopeWidget, ScopeRoutine), 0, false},
		{"out of range scope", NewScopeSet(ScopeWidget), Scope(9), false},
	}
	for _, tt := range tests {
		if got := tt.route.Allows(tt.key); got != tt.want {
			t.Errorf("%s: Allows = %v, want %v", tt.name, got, tt.want)
		}
	}
	if got, want := NewScopeSet(ScopeRoutine).String(), "full, routine"; got != want {
		t.Errorf("ScopeSet.String() = %q, want %q", got, want)
	}
	for _, name := range []string{"full", "widget", "routine"} {
		sc, err := ParseScope(name)
		if err != nil || sc.String() != name {
			t.Errorf("ParseScope(%q) = %v, %v", name, sc, err)
		}
	}
	for _, name := range []string{"", "Full", "admin", "widget "} {
		if _, err := ParseScope(name); err == nil {
			t.Errorf("ParseScope(%q) = nil error", name)
		}
	}
}

func TestExpiryPresets(t *testing.T) {
	created := time.Date(2026, 1, 31, 10, 30, 0, 0, time.UTC)
	tests := []struct {
		expiry Expiry
		want   time.Time
	}{
		{ExpiryHour, time.Date(2026, 1, 31, 11, 30, 0, 0, time.UTC)},
		{ExpiryDay, time.Date(2026, 2, 1, 10, 30, 0, 0, time.UTC)},
		{ExpiryWeek, time.Date(2026, 2, 7, 10, 30, 0, 0, time.UTC)},
		// 31 February does not exist: AddDate normalises to 3 March.
		{ExpiryMonth, time.Date(2026, 3, 3, 10, 30, 0, 0, time.UTC)},
		{ExpiryYear, time.Date(2027, 1, 31, 10, 30, 0, 0, time.UTC)},
		{ExpiryNever, time.Time{}},
	}
	for _, tt := range tests {
		e, err := ParseExpiry(string(tt.expiry))
		if err != nil {
			t.Fatal(err)
		}
		if got := e.ExpiresAt(created); !got.Equal(tt.want) {
			t.Errorf("%s from %s = %s, want %s", tt.expiry, created, got, tt.want)
		}
	}
	// A creation time in another zone still yields UTC.
	local := created.In(time.FixedZone("X", 5*3600))
	if got := ExpiryDay.ExpiresAt(local); got.Location() != time.UTC {
		t.Errorf("ExpiresAt location = %v, want UTC", got.Location())
	}
	for _, s := range []string{"", "1m", "2h", "forever", "1M"} {
		if _, err := ParseExpiry(s); err == nil {
			t.Errorf("ParseExpiry(%q) = nil error", s)
		}
	}
}

func TestKeyStatus(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		key  Key
		at   time.Time
		want Status
	}{
		{"never expiring", Key{}, t0, StatusActive},
		{"before expiry", Key{ExpiresAt: t0}, t0.Add(-time.Nanosecond), StatusActive},
		{"at the expiry instant", Key{ExpiresAt: t0}, t0, StatusExpired},
		{"after expiry", Key{ExpiresAt: t0}, t0.Add(time.Hour), StatusExpired},
		{"revoked", Key{RevokedAt: t0}, t0, StatusRevoked},
		{"revoked and expired", Key{RevokedAt: t0, ExpiresAt: t0}, t0.Add(time.Hour), StatusRevoked},
	}
	for _, tt := range tests {
		if got := tt.key.Status(tt.at); got != tt.want {
			t.Errorf("%s: Status = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNewKeyRecordHoldsNoSecret(t *testing.T) {
	f := mustFormat(t, "dk")
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	secret, k, err := f.New("CI/CD Pipeline", ScopeRoutine, ExpiryWeek, now)
	if err != nil {
		t.Fatal(err)
	}
	if f.Check(secret) != nil || k.Digest != DigestOf(secret) || k.Hint != Hint(secret) {
		t.Errorf("record does not match secret: %+v", k)
	}
	if !ValidID(k.ID) || k.Name != "CI/CD Pipeline" || k.Scope != ScopeRoutine || k.Expiry != ExpiryWeek {
		t.Errorf("record fields wrong: %+v", k)
	}
	if !k.CreatedAt.Equal(now) || !k.ExpiresAt.Equal(now.AddDate(0, 0, 7)) {
		t.Errorf("times wrong: created %s, expires %s", k.CreatedAt, k.ExpiresAt)
	}
	if _, _, err := f.New("x", 0, ExpiryDay, now); err == nil {
		t.Error("New accepted scope 0")
	}
	if _, _, err := f.New("x", ScopeFull, "2d", now); err == nil {
		t.Error("New accepted expiry 2d")
	}
}

func TestHotPathAllocatesNothing(t *testing.T) {
	f := mustFormat(t, "dk")
	key, _ := f.Generate()
	header := "ApiKey " + key
	bad := "ApiKey " + key[:len(key)-1] + "!"
	allocs := testing.AllocsPerRun(100, func() {
		k, err := ParseAuthorization(header)
		if err != nil || f.Check(k) != nil {
			panic("valid key rejected")
		}
		_ = DigestOf(k)
		k, _ = ParseAuthorization(bad)
		_ = f.Check(k)
		_, _ = ParseAuthorization("Bearer x")
	})
	if allocs != 0 {
		t.Errorf("parse, check and digest allocate %v times per run, want 0", allocs)
	}
}

func TestParsersEchoAtMost12BytesOfTheirInput(t *testing.T) {
	// A whole key pasted into the wrong field must not come back whole in
	// the error, which the admin API answers and Caddy logs.
	secret := "dk_0123456789abcdefghijABCDEFGHIJ4G66jy"
	parsers := []struct {
		name  string
		parse func(string) error
	}{
		{"ParseScope", func(s string) error { _, err := ParseScope(s); return err }},
		{"ParseExpiry", func(s string) error { _, err := ParseExpiry(s); return err }},
		{"ParseStatus", func(s string) error { _, err := ParseStatus(s); return err }},
	}
	for _, p := range parsers {
		err := p.parse(secret)
		if err == nil {
			t.Fatalf("%s(a key) = nil error", p.name)
		}
		if want := `"dk_012345678"…`; !strings.Contains(err.Error(), want) {
			t.Errorf("%s(a key) = %q, want it to quote the first 12 bytes: %s", p.name, err, want)
		}
		if strings.Contains(err.Error(), secret[:13]) {
			t.Errorf("%s(a key) = %q: more than 12 bytes of the input", p.name, err)
		}
	}
}

func TestQuoteInput(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", `""`},
		{"short", "admin", `"admin"`},
		{"exactly 12 bytes", "abcdefghijkl", `"abcdefghijkl"`},
		{"13 bytes", "abcdefghijklm", `"abcdefghijkl"…`},
		{"a whole key", "dk_0123456789abcdefghijABCDEFGHIJ4G66jy", `"dk_012345678"…`},
		// é is 2 bytes: 11 ASCII bytes and é would make 13, so the cut
		// falls before é rather than in the middle of it.
		{"cut before a split character", "abcdefghijkéz", `"abcdefghijk"…`},
		{"control characters are escaped", "a\nb\x00", `"a\nb\x00"`},
		{"invalid UTF-8", "\xff\xfe", `"\xff\xfe"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := QuoteInput(tt.in); got != tt.want {
				t.Errorf("QuoteInput(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}
