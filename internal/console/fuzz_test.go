package console

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/policy"
)

// FuzzParseFilter checks the console's reading of a query string: it never
// panics, what it keeps is acceptable to the key service (so a URL can
// never make the list fail with 400 or 503), and the links it makes read
// back as the same filter.
func FuzzParseFilter(f *testing.F) {
	for _, seed := range []string{
		"",
		"status=all&scope=widget&q=prod",
		"q=%00%ff%7f&status=revoked",
		"cursor=AAAAAAAAAABrZXlfMDEyMzQ1Njc4OUFCQ0RFRmFiY2RlZg",
		"before=AAAAAAAAAABrZXlfMDEyMzQ1Njc4OUFCQ0RFRmFiY2RlZg&cursor=x",
		"cursor=dk_0123456789abcdefghijABCDEFGHIJ01abcdef",
		"q=" + strings.Repeat("%C3%A9", 300),
		"q=100%25_%5C&status=expired",
		"owner=acme%3Aeu%40x&status=all",
		"owner=%20acme%20&owner=globex",
		"owner=" + strings.Repeat("a", 129),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		got := parseFilter(q)
		switch got.Status {
		case "active", "expired", "revoked", "all":
		default:
			t.Fatalf("status %q", got.Status)
		}
		if !utf8.ValidString(got.Query) || utf8.RuneCountInString(got.Query) > keyservice.MaxQueryLength {
			t.Fatalf("query %q not acceptable", got.Query)
		}
		for _, c := range []string{got.Cursor, got.Before} {
			if c == "" {
				continue
			}
			if _, err := keyservice.DecodeCursor(c); err != nil {
				t.Fatalf("kept cursor that does not decode: %v", err)
			}
		}
		if got.Cursor != "" && got.Before != "" {
			t.Fatal("kept both cursor and before")
		}
		back, err := url.ParseQuery(strings.TrimPrefix(strings.TrimPrefix(got.href(), "./"), "?"))
		if err != nil {
			t.Fatalf("href %q does not parse: %v", got.href(), err)
		}
		again := parseFilter(back)
		got.BadCursor = false
		if again != got {
			t.Fatalf("href %q reads back as %+v, want %+v", got.href(), again, got)
		}
		// Whatever the URL, the service takes the options.
		if o := got.options(); o.Limit != pageSize {
			t.Fatalf("limit %d", o.Limit)
		}
	})
}

// FuzzDecodeCursor checks that decoding any string neither panics nor
// accepts what encoding would not make, and that errors never repeat it.
func FuzzDecodeCursor(f *testing.F) {
	f.Add("AAAAAAAAAABrZXlfMDEyMzQ1Njc4OUFCQ0RFRmFiY2RlZg")
	f.Add("")
	f.Add(strings.Repeat("_", keyservice.CursorLength))
	f.Fuzz(func(t *testing.T, c string) {
		p, err := keyservice.DecodeCursor(c)
		if err != nil {
			if len(c) > 12 && strings.Contains(err.Error(), c[:13]) {
				t.Fatalf("error %q repeats the cursor", err)
			}
			return
		}
		if len(c) != keyservice.CursorLength || p.ID == "" || p.CreatedAt.Year() < 1 || p.CreatedAt.Year() > 9999 {
			t.Fatalf("accepted %q as %+v", c, p)
		}
	})
}

// FuzzParseLines checks the console's reading of the allowed origins and
// IPs textareas: it never panics, an error is an input error of the field
// naming a line, and what it accepts is at most 32 distinct entries, each
// in its normal form, that read back the same once written out.
func FuzzParseLines(f *testing.F) {
	for _, seed := range []string{
		"",
		"https://www.example.com\nhttps://*.example.org\r\nhttp://localhost:*",
		"HTTPS://B\u00fccher.Example:443\n\n https://b\u00fccher.example ",
		"example.com",
		"203.0.113.7\n10.0.0.0/8\n2001:db8::/32",
		"10.1.2.3/8\nfe80::1%eth0",
		strings.Repeat("https://a.example\n", 40),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, l := range []struct {
			field string
			norm  func(string) (string, error)
		}{{"allowed_origins", policy.NormalizeOrigin}, {"allowed_ips", policy.NormalizeIP}} {
			list, err := parseLines(text, l.field, l.norm)
			if err != nil {
				ie, ok := errors.AsType[*keyservice.InputError](err)
				if !ok || ie.Field != l.field || !strings.HasPrefix(ie.Message, "line ") {
					t.Fatalf("%s: error %#v is not an input error of the field naming a line", l.field, err)
				}
				continue
			}
			if list == nil || len(list) > apikey.MaxPolicyEntries {
				t.Fatalf("%s: accepted %d entries (nil: %v)", l.field, len(list), list == nil)
			}
			for i, e := range list {
				if n, err := l.norm(e); err != nil || n != e {
					t.Fatalf("%s: entry %q is not in normal form (%q, %v)", l.field, e, n, err)
				}
				if slices.Contains(list[:i], e) {
					t.Fatalf("%s: entry %q twice", l.field, e)
				}
			}
			again, err := parseLines(formatLines(list), l.field, l.norm)
			if err != nil || !slices.Equal(again, list) {
				t.Fatalf("%s: %q written and read again: %q, %v", l.field, list, again, err)
			}
		}
	})
}
