// Package policy checks and matches the per-key restrictions of issue 11:
// the origins (scheme://host[:port]) a key may be used from, and the client
// IP addresses or CIDR prefixes it may be used from.
//
// Entries are checked and normalised once, when a key is created or updated
// (NormalizeOrigin, NormalizeIP, CheckOrigins, CheckIPs), and compiled once
// per cached key (CompileOrigins, CompileIPs) into matchers whose Allows
// methods allocate nothing, for the request path.
//
// Errors quote their input with apikey.QuoteInput: never more than 12 bytes
// of it, whatever was pasted where an origin belongs.
package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/docana/keygate/internal/apikey"
)

// MaxEntries is the most entries an allowed_origins or allowed_ips list holds.
const MaxEntries = 32

// maxHostLen is the longest host name DNS carries (RFC 1035, without the
// root's final dot).
const maxHostLen = 253

// origin is one parsed allowed origin.
type origin struct {
	https    bool   // scheme https, else http
	host     string // lower case ASCII (punycode), or an IP literal; IPv6 in brackets
	wildcard bool   // host was "*.<host>": any subdomain of host, at any depth
	port     int    // 1-65535; 0 = any port ("*")
}

// defaultPort returns the scheme's default port.
func defaultPort(https bool) int {
	if https {
		return 443
	}
	return 80
}

// String returns o's stored form.
func (o origin) String() string {
	var b strings.Builder
	if o.https {
		b.WriteString("https://")
	} else {
		b.WriteString("http://")
	}
	if o.wildcard {
		b.WriteString("*.")
	}
	b.WriteString(o.host)
	switch {
	case o.port == 0:
		b.WriteString(":*")
	case o.port != defaultPort(o.https):
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(o.port))
	}
	return b.String()
}

// NormalizeOrigin checks one allowed-origin entry and returns its stored
// form: scheme http or https (in lower case), the host in lower case with
// IDNs as punycode, IPv4 and bracketed IPv6 literals in canonical form, the
// scheme's default port dropped, port "*" for any port, and a host
// "*.example.com" for every subdomain of example.com at any depth (not
// example.com itself). No path (not even "/"), query, fragment or userinfo.
func NormalizeOrigin(s string) (string, error) {
	o, err := parseOrigin(s)
	if err != nil {
		return "", err
	}
	return o.String(), nil
}

// parseOrigin parses and checks an allowed-origin entry.
func parseOrigin(s string) (origin, error) {
	var o origin
	q := apikey.QuoteInput(s)
	if s == "" {
		return o, errors.New("empty origin")
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return o, fmt.Errorf("origin %s: want scheme://host[:port], e.g. https://app.example.com", q)
	}
	switch strings.ToLower(scheme) {
	case "https":
		o.https = true
	case "http":
	default:
		return o, fmt.Errorf("origin %s: scheme must be http or https", q)
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		switch rest[i] {
		case '/':
			return o, fmt.Errorf("origin %s: an origin has no path, not even \"/\"", q)
		case '?':
			return o, fmt.Errorf("origin %s: an origin has no query", q)
		default:
			return o, fmt.Errorf("origin %s: an origin has no fragment", q)
		}
	}
	if strings.Contains(rest, "@") {
		return o, fmt.Errorf("origin %s: an origin has no user name or password", q)
	}
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return o, fmt.Errorf("origin %s: IPv6 address without its closing \"]\"", q)
		}
		host, port = rest[:end+1], rest[end+1:]
		if port != "" && port[0] != ':' {
			return o, fmt.Errorf("origin %s: want \":port\" after the IPv6 address", q)
		}
	} else if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i:]
	}
	if port == "" {
		o.port = defaultPort(o.https)
	} else {
		p, err := parsePort(port[1:])
		if err != nil {
			return o, fmt.Errorf("origin %s: %w", q, err)
		}
		if p < 0 {
			o.port = 0
		} else {
			o.port = p
		}
	}
	if host == "" {
		return o, fmt.Errorf("origin %s: no host", q)
	}
	if host[0] == '[' {
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return o, fmt.Errorf("origin %s: not an IPv6 address in brackets", q)
		}
		if a.Is4In6() {
			return o, fmt.Errorf("origin %s: write an IPv4-mapped address as IPv4", q)
		}
		o.host = "[" + a.String() + "]"
		return o, nil
	}
	if strings.HasPrefix(host, "*.") {
		o.wildcard = true
		host = host[2:]
	}
	if strings.Contains(host, "*") {
		return o, fmt.Errorf("origin %s: \"*\" is allowed only as the whole first label, as in https://*.example.com", q)
	}
	if looksNumeric(host) {
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is4() {
			return o, fmt.Errorf("origin %s: not an IPv4 address in dotted decimal", q)
		}
		if o.wildcard {
			return o, fmt.Errorf("origin %s: a wildcard needs a domain name, not an IP address", q)
		}
		o.host = a.String()
		return o, nil
	}
	if strings.HasSuffix(host, ".") {
		return o, fmt.Errorf("origin %s: host ends with \".\"", q)
	}
	if !utf8.ValidString(host) {
		return o, fmt.Errorf("origin %s: host is not valid UTF-8", q)
	}
	ascii, err := idna.Lookup.ToASCII(host)
	if err != nil {
		return o, fmt.Errorf("origin %s: not a valid host name", q)
	}
	// The stored form must read back as itself: refuse what maps to
	// punycode that the same profile would refuse or map again.
	if back, err := idna.Lookup.ToASCII(ascii); err != nil || back != ascii {
		return o, fmt.Errorf("origin %s: not a valid host name", q)
	}
	if len(ascii) > maxHostLen {
		return o, fmt.Errorf("origin %s: host name longer than %d bytes", q, maxHostLen)
	}
	for label := range strings.SplitSeq(ascii, ".") {
		if label == "" || len(label) > 63 {
			return o, fmt.Errorf("origin %s: host name labels must have 1 to 63 bytes", q)
		}
		for i := 0; i < len(label); i++ {
			if !isHostByte(label[i]) {
				return o, fmt.Errorf("origin %s: not a valid host name", q)
			}
		}
	}
	if looksNumeric(ascii) {
		// An IDN whose ASCII form ends in a number would be read as an
		// IPv4 address by browsers.
		return o, fmt.Errorf("origin %s: not a valid host name", q)
	}
	if o.wildcard && !strings.Contains(ascii, ".") {
		return o, fmt.Errorf("origin %s: a wildcard needs at least two labels after \"*.\"", q)
	}
	o.host = ascii
	return o, nil
}

// parsePort parses the port of an allowed origin: "*" returns -1; else a
// decimal number from 1 to 65535.
func parsePort(p string) (int, error) {
	if p == "*" {
		return -1, nil
	}
	if p == "" {
		return 0, errors.New("empty port")
	}
	if len(p) > 5 {
		return 0, errors.New("port must be a number from 1 to 65535, or *")
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return 0, errors.New("port must be a number from 1 to 65535, or *")
		}
		n = n*10 + int(p[i]-'0')
	}
	if n < 1 || n > 65535 {
		return 0, errors.New("port must be a number from 1 to 65535, or *")
	}
	return n, nil
}

// looksNumeric reports whether a host's last label is a number (decimal, or
// hexadecimal with 0x), which the URL standard reads as an IPv4 address.
func looksNumeric(host string) bool {
	last := host
	if i := strings.LastIndexByte(host, '.'); i >= 0 {
		last = host[i+1:]
	}
	if last == "" {
		return false
	}
	if len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		for i := 2; i < len(last); i++ {
			if !isHexDigit(last[i]) {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(last); i++ {
		if last[i] < '0' || last[i] > '9' {
			return false
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// isHostByte reports whether c may appear in a label of a host name in
// ASCII form (lower case).
func isHostByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-'
}

// CheckOrigins checks a whole allowed_origins list and returns it
// normalised: at most MaxEntries entries, each normalised by
// NormalizeOrigin; an entry equal to an earlier one after normalisation
// (https://A.com and https://a.com:443) is dropped, keeping the first's
// place. An error names the entry by its index from 0 (*EntryError). An
// empty or nil list returns nil: any origin.
func CheckOrigins(list []string) ([]string, error) {
	return checkList(list, NormalizeOrigin)
}

// EntryError is the error of one entry of a list, by its index from 0.
type EntryError struct {
	Index int
	Err   error
}

func (e *EntryError) Error() string { return fmt.Sprintf("entry %d: %v", e.Index, e.Err) }

func (e *EntryError) Unwrap() error { return e.Err }

// checkList normalises every entry of list with norm, dropping duplicates.
func checkList(list []string, norm func(string) (string, error)) ([]string, error) {
	if len(list) > MaxEntries {
		return nil, fmt.Errorf("%d entries, at most %d", len(list), MaxEntries)
	}
	if len(list) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(list))
outer:
	for i, s := range list {
		n, err := norm(s)
		if err != nil {
			return nil, &EntryError{Index: i, Err: err}
		}
		for _, prev := range out {
			if prev == n {
				continue outer
			}
		}
		out = append(out, n)
	}
	return out, nil
}
