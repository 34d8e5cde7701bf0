package policy

import (
	"net/netip"
	"strings"
)

// Origins matches request origins against a key's allowed origins. Build it
// once per cached key with CompileOrigins; a nil *Origins allows any origin.
type Origins struct {
	list []origin
}

// CompileOrigins compiles an allowed_origins list, normally as CheckOrigins
// returned it; an entry NormalizeOrigin would refuse fails, one it would only
// rewrite ("https://A.com:443") is accepted. A nil or empty list returns nil,
// which allows any origin.
func CompileOrigins(list []string) (*Origins, error) {
	if len(list) == 0 {
		return nil, nil
	}
	o := &Origins{list: make([]origin, 0, len(list))}
	for i, s := range list {
		p, err := parseOrigin(s)
		if err != nil {
			return nil, &EntryError{Index: i, Err: err}
		}
		o.list = append(o.list, p)
	}
	return o, nil
}

// Allows reports whether a request from origin may use the key: origin is
// the value of the request's Origin header, or the origin of its Referer
// (RefererOrigin). The scheme and host are compared without regard to ASCII
// case and an explicit default port equals none (https://a.com:443 is
// https://a.com); anything but "scheme://host[:port]" with scheme http or
// https, including "null" and "", matches nothing. A nil *Origins allows
// every origin. Allows allocates nothing.
func (o *Origins) Allows(origin string) bool {
	if o == nil {
		return true
	}
	https, host, port, ok := splitRequestOrigin(origin)
	if !ok {
		return false
	}
	for i := range o.list {
		e := &o.list[i]
		if e.https != https || (e.port != 0 && e.port != port) {
			continue
		}
		if e.wildcard {
			// host must be "<at least one label>." + e.host.
			n := len(host) - len(e.host)
			if n >= 2 && host[0] != '.' && host[n-2] != '.' && host[n-1] == '.' && asciiEqualFold(host[n:], e.host) {
				return true
			}
			continue
		}
		if asciiEqualFold(host, e.host) {
			return true
		}
	}
	return false
}

// splitRequestOrigin splits an Origin header value into its scheme, host and
// port (the scheme's default if none), without allocating. ok is false unless
// origin is "http" or "https" (any case) + "://" + host + optional ":port",
// host made of ASCII letters, digits, '-', '.', or an IPv6 literal in
// brackets.
func splitRequestOrigin(s string) (https bool, host string, port int, ok bool) {
	switch {
	case len(s) > 8 && asciiEqualFold(s[:8], "https://"):
		https, s = true, s[8:]
	case len(s) > 7 && asciiEqualFold(s[:7], "http://"):
		s = s[7:]
	default:
		return false, "", 0, false
	}
	host, rest := s, ""
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false, "", 0, false
		}
		host, rest = s[:end+1], s[end+1:]
		for i := 1; i < len(host)-1; i++ {
			c := host[i]
			if !(isHexDigit(c) || c == ':' || c == '.') {
				return false, "", 0, false
			}
		}
	} else {
		if i := strings.IndexByte(s, ':'); i >= 0 {
			host, rest = s[:i], s[i:]
		}
		if host == "" {
			return false, "", 0, false
		}
		for i := 0; i < len(host); i++ {
			c := host[i] | 0x20 // ASCII lower case for letters
			if !(isHostByte(c) || c == '.') {
				return false, "", 0, false
			}
		}
	}
	port = defaultPort(https)
	if rest != "" {
		if rest[0] != ':' {
			return false, "", 0, false
		}
		p, err := parsePort(rest[1:])
		if err != nil || p < 0 {
			return false, "", 0, false
		}
		port = p
	}
	return https, host, port, true
}

// asciiEqualFold reports whether a and b are equal under ASCII case folding
// (not Unicode's, which would equal the Kelvin sign and 'k').
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// RefererOrigin returns the origin "scheme://host[:port]" of a Referer URL,
// a substring of it (no allocation); ok is false when referer has no
// "scheme://" followed by a host, or carries userinfo. The result is not
// otherwise checked: Origins.Allows does that.
func RefererOrigin(referer string) (string, bool) {
	i := strings.Index(referer, "://")
	if i <= 0 {
		return "", false
	}
	for j := 0; j < i; j++ {
		c := referer[j] | 0x20
		if c < 'a' || c > 'z' {
			return "", false
		}
	}
	end := len(referer)
	for j := i + 3; j < len(referer); j++ {
		c := referer[j]
		if c == '/' || c == '?' || c == '#' {
			end = j
			break
		}
		if c == '@' {
			return "", false
		}
	}
	if end == i+3 {
		return "", false
	}
	return referer[:end], true
}

// IPs matches client addresses against a key's allowed IPs. Build it once
// per cached key with CompileIPs; a nil *IPs allows any address.
type IPs struct {
	list []netip.Prefix
}

// CompileIPs compiles an allowed_ips list, normally as CheckIPs returned it;
// an entry NormalizeIP would refuse fails, one it would only rewrite
// ("10.0.0.7/32") is accepted. A nil or empty list returns nil, which allows
// any address.
func CompileIPs(list []string) (*IPs, error) {
	if len(list) == 0 {
		return nil, nil
	}
	p := &IPs{list: make([]netip.Prefix, 0, len(list))}
	for i, s := range list {
		pfx, err := parseIP(s)
		if err != nil {
			return nil, &EntryError{Index: i, Err: err}
		}
		p.list = append(p.list, pfx)
	}
	return p, nil
}

// Allows reports whether a request from the client address ip may use the
// key. An IPv4-mapped IPv6 address is matched as its IPv4 address, and a
// zone is ignored; an invalid address matches nothing. A nil *IPs allows
// every address. Allows allocates nothing.
func (p *IPs) Allows(ip netip.Addr) bool {
	if p == nil {
		return true
	}
	if !ip.IsValid() {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, pfx := range p.list {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}
