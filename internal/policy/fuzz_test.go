package policy

import (
	"net/netip"
	"strings"
	"testing"
)

// maxErrLen bounds an error message: its own words plus at most 12 bytes of
// input, quoted (each byte at most 4 when escaped).
const maxErrLen = 200

func FuzzNormalizeOrigin(f *testing.F) {
	for _, s := range []string{
		"https://app.example.com", "HTTP://LOCALHOST:3000", "https://a.com:443",
		"https://*.example.com:*", "https://bücher.example", "https://xn--bcher-kva.example",
		"http://[2001:db8::1]:8080", "http://127.0.0.1", "https://a.com/", "null",
		"https://u@a.com", "http://0x7f.1", "https://*.com", "https://a.com:65536",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeOrigin(s)
		if err != nil {
			if len(err.Error()) > maxErrLen {
				t.Fatalf("error of %d bytes: %v", len(err.Error()), err)
			}
			return
		}
		again, err := NormalizeOrigin(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeOrigin(%q) = %q; NormalizeOrigin of that = %q, %v", s, got, again, err)
		}
		o, err := CompileOrigins([]string{got})
		if err != nil {
			t.Fatalf("CompileOrigins(%q): %v", got, err)
		}
		origin := strings.TrimSuffix(got, ":*") // a request names a port
		scheme, host, _ := strings.Cut(origin, "://")
		if rest, ok := strings.CutPrefix(host, "*."); ok {
			if o.Allows(scheme + "://" + rest) {
				t.Fatalf("%q allows its apex %q", got, scheme+"://"+rest)
			}
			origin = scheme + "://x.y." + rest
		}
		if !o.Allows(origin) {
			t.Fatalf("%q does not allow %q", got, origin)
		}
		if !o.Allows(strings.ToUpper(origin)) {
			t.Fatalf("%q does not allow %q", got, strings.ToUpper(origin))
		}
		if o.Allows("null") {
			t.Fatalf("%q allows null", got)
		}
	})
}

func FuzzNormalizeIP(f *testing.F) {
	for _, s := range []string{
		"203.0.113.7", "10.0.0.0/8", "10.0.0.1/8", "2001:db8::/32", "::1/128",
		"fe80::1%eth0", "::ffff:10.0.0.1", "0.0.0.0/0", "1.2.3.4/32",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeIP(s)
		if err != nil {
			if len(err.Error()) > maxErrLen {
				t.Fatalf("error of %d bytes: %v", len(err.Error()), err)
			}
			return
		}
		again, err := NormalizeIP(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeIP(%q) = %q; NormalizeIP of that = %q, %v", s, got, again, err)
		}
		p, err := CompileIPs([]string{got})
		if err != nil {
			t.Fatalf("CompileIPs(%q): %v", got, err)
		}
		addr, _, _ := strings.Cut(got, "/")
		if !p.Allows(netip.MustParseAddr(addr)) {
			t.Fatalf("%q does not allow %s", got, addr)
		}
	})
}
