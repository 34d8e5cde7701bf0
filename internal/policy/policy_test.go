package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestNormalizeOrigin(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"https", "https://app.example.com", "https://app.example.com"},
		{"http", "http://app.example.com", "http://app.example.com"},
		{"upper-case scheme and host", "HTTPS://App.Example.COM", "https://app.example.com"},
		{"https default port dropped", "https://a.com:443", "https://a.com"},
		{"http default port dropped", "http://a.com:80", "http://a.com"},
		{"https on port 80 kept", "https://a.com:80", "https://a.com:80"},
		{"http on port 443 kept", "http://a.com:443", "http://a.com:443"},
		{"other port", "http://localhost:3000", "http://localhost:3000"},
		{"port with leading zeros", "https://a.com:0443", "https://a.com"},
		{"any port", "https://a.com:*", "https://a.com:*"},
		{"wildcard", "https://*.Example.com", "https://*.example.com"},
		{"wildcard, any port", "http://*.example.com:*", "http://*.example.com:*"},
		{"IDN to punycode", "https://bücher.example", "https://xn--bcher-kva.example"},
		{"IDN upper case", "https://BÜCHER.example", "https://xn--bcher-kva.example"},
		{"IDN sharp s, non-transitional as in the URL standard", "https://faß.de", "https://xn--fa-hia.de"},
		{"full-width letters mapped", "https://ＡＢＣ.com", "https://abc.com"},
		{"punycode kept", "https://xn--bcher-kva.example", "https://xn--bcher-kva.example"},
		{"IDN wildcard", "https://*.bücher.example", "https://*.xn--bcher-kva.example"},
		{"IPv4", "http://127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"IPv6", "http://[::1]:3000", "http://[::1]:3000"},
		{"IPv6 canonical", "https://[2001:DB8:0:0::1]", "https://[2001:db8::1]"},
		{"IPv6 default port", "https://[2001:db8::1]:443", "https://[2001:db8::1]"},
		{"single label", "http://localhost", "http://localhost"},
		{"hyphen", "https://my-app.example.com", "https://my-app.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeOrigin(tt.in)
			if err != nil {
				t.Fatalf("NormalizeOrigin(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("NormalizeOrigin(%q) = %q, want %q", tt.in, got, tt.want)
			}
			again, err := NormalizeOrigin(got)
			if err != nil || again != got {
				t.Fatalf("NormalizeOrigin(%q) = %q, %v; want itself", got, again, err)
			}
		})
	}
}

func TestNormalizeOriginRefuses(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "empty origin"},
		{"no scheme", "app.example.com", "want scheme://host"},
		{"ftp", "ftp://a.com", "scheme must be http or https"},
		{"javascript", "javascript://a.com", "scheme must be http or https"},
		{"null", "null", "want scheme://host"},
		{"path", "https://a.com/app", "no path"},
		{"trailing slash", "https://a.com/", "no path"},
		{"query", "https://a.com?x=1", "no query"},
		{"fragment", "https://a.com#top", "no fragment"},
		{"userinfo", "https://user:pw@a.com", "no user name or password"},
		{"no host", "https://", "no host"},
		{"no host, port", "https://:443", "no host"},
		{"empty port", "https://a.com:", "empty port"},
		{"port zero", "https://a.com:0", "port must be"},
		{"port too big", "https://a.com:65536", "port must be"},
		{"port not a number", "https://a.com:http", "port must be"},
		{"port negative", "https://a.com:-1", "port must be"},
		{"port too long", "https://a.com:000443", "port must be"},
		{"bare star", "https://*", "\"*\" is allowed only"},
		{"star in the middle", "https://a.*.com", "\"*\" is allowed only"},
		{"star inside a label", "https://*a.example.com", "\"*\" is allowed only"},
		{"two stars", "https://*.*.example.com", "\"*\" is allowed only"},
		{"wildcard on a TLD", "https://*.com", "at least two labels"},
		{"wildcard on an IP", "https://*.10.0.0.1", "wildcard needs a domain name"},
		{"trailing dot", "https://a.com.", "ends with"},
		{"empty label", "https://a..com", "1 to 63 bytes"},
		{"underscore", "https://a_b.com", "not a valid host name"},
		{"space", "https://a b.com", "not a valid host name"},
		{"leading hyphen", "https://-a.com", "not a valid host name"},
		{"label too long", "https://" + strings.Repeat("a", 64) + ".com", "1 to 63 bytes"},
		{"host too long", "https://" + strings.Repeat("abcdefghi.", 26) + "com", "longer than 253"},
		{"zero-width joiner", "https://a\u200db.com", "not a valid host name"},
		{"invalid UTF-8", "https://\xc30.com", "not valid UTF-8"},
		{"invalid punycode", "https://xn--a.com", "not a valid host name"},
		{"short IPv4", "http://127.1", "not an IPv4 address"},
		{"hex IPv4", "http://0x7f.0.0.1", "not an IPv4 address"},
		{"IPv4 leading zero", "http://010.0.0.1", "not an IPv4 address"},
		{"numeric last label", "http://a.123", "not an IPv4 address"},
		{"IPv6 without brackets", "http://::1", "not a valid host name"},
		{"IPv6 unclosed", "http://[::1", "closing"},
		{"IPv6 junk after", "http://[::1]x", "want \":port\""},
		{"IPv4 in brackets", "http://[127.0.0.1]", "not an IPv6 address"},
		{"IPv6 zone", "http://[fe80::1%25eth0]", "not an IPv6 address"},
		{"IPv4-mapped", "http://[::ffff:10.0.0.1]", "as IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeOrigin(tt.in)
			if err == nil {
				t.Fatalf("NormalizeOrigin(%q) = %q, want an error", tt.in, got)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NormalizeOrigin(%q): %v, want it to say %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestNormalizeOriginErrorEchoesAtMost12Bytes(t *testing.T) {
	secret := "https://sk_live_0123456789abcdef.example.com/path"
	_, err := NormalizeOrigin(secret)
	if err == nil {
		t.Fatal("want an error")
	}
	if strings.Contains(err.Error(), "0123") || !strings.Contains(err.Error(), `"https://sk_l"…`) {
		t.Fatalf("error %q echoes more than 12 bytes of its input", err)
	}
}

func TestNormalizeIP(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"IPv4", "203.0.113.7", "203.0.113.7"},
		{"IPv4 /32", "203.0.113.7/32", "203.0.113.7"},
		{"IPv4 prefix", "10.0.0.0/8", "10.0.0.0/8"},
		{"IPv4 /0", "0.0.0.0/0", "0.0.0.0/0"},
		{"IPv6", "2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
		{"IPv6 /128", "2001:db8::1/128", "2001:db8::1"},
		{"IPv6 prefix", "2001:db8::/32", "2001:db8::/32"},
		{"IPv6 prefix upper case", "2001:DB8::/32", "2001:db8::/32"},
		{"IPv6 /0", "::/0", "::/0"},
		{"loopback", "::1", "::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeIP(tt.in)
			if err != nil {
				t.Fatalf("NormalizeIP(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("NormalizeIP(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNormalizeIPRefuses(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "empty IP address"},
		{"host bits set", "10.0.0.1/8", "bits are set after the prefix length /8"},
		{"IPv6 host bits set", "2001:db8::1/32", "bits are set after the prefix length /32"},
		{"prefix too long", "10.0.0.0/33", "not an IP address or CIDR prefix"},
		{"no prefix length", "10.0.0.0/", "not an IP address or CIDR prefix"},
		{"short IPv4", "10.1", "not an IP address or CIDR prefix"},
		{"leading zero", "010.0.0.1", "not an IP address or CIDR prefix"},
		{"host name", "example.com", "not an IP address or CIDR prefix"},
		{"zone", "fe80::1%eth0", "zone"},
		{"zone with prefix", "fe80::1%eth0/64", "zone"},
		{"IPv4-mapped", "::ffff:10.0.0.1", "as IPv4"},
		{"IPv4-mapped prefix", "::ffff:10.0.0.0/104", "as IPv4"},
		{"brackets", "[::1]", "not an IP address or CIDR prefix"},
		{"space", " 10.0.0.1", "not an IP address or CIDR prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeIP(tt.in)
			if err == nil {
				t.Fatalf("NormalizeIP(%q) = %q, want an error", tt.in, got)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NormalizeIP(%q): %v, want it to say %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestCheckLists(t *testing.T) {
	got, err := CheckOrigins([]string{"https://A.com", "https://b.com", "https://a.com:443", "https://a.com:8443"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://a.com https://b.com https://a.com:8443"; strings.Join(got, " ") != want {
		t.Fatalf("CheckOrigins = %q, want duplicates dropped: %q", got, want)
	}
	got, err = CheckIPs([]string{"10.0.0.7/32", "10.0.0.0/8", "10.0.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "10.0.0.7 10.0.0.0/8"; strings.Join(got, " ") != want {
		t.Fatalf("CheckIPs = %q, want %q", got, want)
	}
	for _, empty := range [][]string{nil, {}} {
		if got, err := CheckOrigins(empty); got != nil || err != nil {
			t.Fatalf("CheckOrigins(%#v) = %#v, %v; want nil, nil", empty, got, err)
		}
		if got, err := CheckIPs(empty); got != nil || err != nil {
			t.Fatalf("CheckIPs(%#v) = %#v, %v; want nil, nil", empty, got, err)
		}
	}

	_, err = CheckOrigins([]string{"https://a.com", "https://b.com/"})
	var ee *EntryError
	if !errors.As(err, &ee) || ee.Index != 1 || !strings.HasPrefix(err.Error(), "entry 1: ") {
		t.Fatalf("CheckOrigins with a bad second entry: %v, want an *EntryError for entry 1", err)
	}
	_, err = CheckIPs([]string{"10.0.0.1/8"})
	if !errors.As(err, &ee) || ee.Index != 0 {
		t.Fatalf("CheckIPs with a bad first entry: %v, want an *EntryError for entry 0", err)
	}

	many := make([]string, MaxEntries+1)
	for i := range many {
		many[i] = "10.0.0.1"
	}
	if _, err := CheckIPs(many); err == nil || !strings.Contains(err.Error(), "at most 32") {
		t.Fatalf("CheckIPs with 33 entries: %v, want at most 32", err)
	}
	if _, err := CheckOrigins(many); err == nil || !strings.Contains(err.Error(), "at most 32") {
		t.Fatalf("CheckOrigins with 33 entries: %v, want at most 32", err)
	}
	if _, err := CheckIPs(many[:MaxEntries]); err != nil {
		t.Fatalf("CheckIPs with 32 entries: %v", err)
	}
}

func TestOriginsAllows(t *testing.T) {
	o, err := CompileOrigins([]string{
		"https://app.example.com",
		"http://localhost:3000",
		"https://*.widgets.example",
		"https://any-port.example:*",
		"https://xn--bcher-kva.example",
		"http://[::1]:8080",
		"https://203.0.113.7",
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		origin string
		want   bool
	}{
		{"https://app.example.com", true},
		{"https://APP.Example.Com", true},
		{"HTTPS://app.example.com", true},
		{"https://app.example.com:443", true},
		{"https://app.example.com:0443", true},
		{"https://app.example.com:8443", false},
		{"http://app.example.com", false},
		{"https://app.example.com.", false},
		{"https://app.example.com/", false},
		{"https://xapp.example.com", false},
		{"https://evil.app.example.com", false},
		{"https://app.example.co", false},
		{"http://localhost:3000", true},
		{"http://localhost", false},
		{"http://localhost:3001", false},
		{"https://localhost:3000", false},
		{"https://a.widgets.example", true},
		{"https://a.b.c.widgets.example", true},
		{"https://A.WIDGETS.EXAMPLE:443", true},
		{"https://widgets.example", false},
		{"https://.widgets.example", false},
		{"https://a..widgets.example", false},
		{"https://evilwidgets.example", false},
		{"http://a.widgets.example", false},
		{"https://a.widgets.example:8443", false},
		{"https://any-port.example", true},
		{"https://any-port.example:1", true},
		{"https://any-port.example:65535", true},
		{"https://any-port.example:65536", false},
		{"https://any-port.example:", false},
		{"https://xn--bcher-kva.example", true},
		{"https://bücher.example", false},
		{"http://[::1]:8080", true},
		{"http://[::1]", false},
		{"https://203.0.113.7", true},
		{"https://203.0.113.7:443", true},
		{"null", false},
		{"", false},
		{"https://", false},
		{"https://app.example.com\x00", false},
		{"https://app.example.com@evil.example", false},
		{"ftp://app.example.com", false},
		{"https://app.\u212aexample.com", false}, // Kelvin sign folds to k in Unicode only
	}
	for _, tt := range tests {
		if got := o.Allows(tt.origin); got != tt.want {
			t.Errorf("Allows(%q) = %v, want %v", tt.origin, got, tt.want)
		}
	}

	var none *Origins
	if !none.Allows("https://anything.example") || !none.Allows("null") {
		t.Error("a nil *Origins must allow any origin")
	}
	if o, err := CompileOrigins(nil); o != nil || err != nil {
		t.Errorf("CompileOrigins(nil) = %v, %v; want nil, nil", o, err)
	}
	if _, err := CompileOrigins([]string{"https://a.com/"}); err == nil {
		t.Error("CompileOrigins accepted an invalid entry")
	}
}

func TestRefererOrigin(t *testing.T) {
	tests := []struct {
		referer, want string
		ok            bool
	}{
		{"https://app.example.com/page?q=1#x", "https://app.example.com", true},
		{"https://app.example.com", "https://app.example.com", true},
		{"https://app.example.com:8443/", "https://app.example.com:8443", true},
		{"http://[::1]:3000/a", "http://[::1]:3000", true},
		{"https://app.example.com?q", "https://app.example.com", true},
		{"https://app.example.com#f", "https://app.example.com", true},
		{"https://user@app.example.com/", "", false},
		{"https:///path", "", false},
		{"https://", "", false},
		{"/relative/path", "", false},
		{"", "", false},
		{"://a.com", "", false},
		{"1http://a.com", "", false},
		{"about:blank", "", false},
	}
	for _, tt := range tests {
		got, ok := RefererOrigin(tt.referer)
		if got != tt.want || ok != tt.ok {
			t.Errorf("RefererOrigin(%q) = %q, %v; want %q, %v", tt.referer, got, ok, tt.want, tt.ok)
		}
	}
}

func TestIPsAllows(t *testing.T) {
	p, err := CompileIPs([]string{"203.0.113.7", "10.0.0.0/8", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip   string
		want bool
	}{
		{"203.0.113.7", true},
		{"203.0.113.8", false},
		{"10.0.0.1", true},
		{"10.255.255.255", true},
		{"11.0.0.0", false},
		{"::ffff:10.1.2.3", true},
		{"::ffff:203.0.113.7", true},
		{"2001:db8::1", true},
		{"2001:db8:ffff::1", true},
		{"2001:db9::1", false},
		{"fe80::1%eth0", false},
		{"::1", false},
	}
	for _, tt := range tests {
		if got := p.Allows(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Allows(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
	if p.Allows(netip.Addr{}) {
		t.Error("Allows(invalid address) = true")
	}
	zoned, _ := CompileIPs([]string{"fe80::/10"})
	if !zoned.Allows(netip.MustParseAddr("fe80::1%eth0")) {
		t.Error("a zone must not keep an address from matching its prefix")
	}
	var none *IPs
	if !none.Allows(netip.MustParseAddr("192.0.2.1")) {
		t.Error("a nil *IPs must allow any address")
	}
	if p, err := CompileIPs([]string{}); p != nil || err != nil {
		t.Errorf("CompileIPs([]) = %v, %v; want nil, nil", p, err)
	}
	if _, err := CompileIPs([]string{"10.0.0.1/8"}); err == nil {
		t.Error("CompileIPs accepted an invalid entry")
	}
	if p, err := CompileIPs([]string{"10.0.0.7/32"}); err != nil || !p.Allows(netip.MustParseAddr("10.0.0.7")) {
		t.Errorf("CompileIPs of an entry not in normal form: %v", err)
	}
}

func TestAllowsAllocatesNothing(t *testing.T) {
	o, _ := CompileOrigins(benchOrigins())
	p, _ := CompileIPs(benchIPs())
	ip := netip.MustParseAddr("2001:db8:1f::1")
	if n := testing.AllocsPerRun(100, func() {
		ref, _ := RefererOrigin("https://x.y.site31.example/page")
		_ = o.Allows("https://nomatch.example") || o.Allows(ref)
		_ = p.Allows(ip)
	}); n != 0 {
		t.Fatalf("Allows allocates %v times per call, want 0", n)
	}
}
