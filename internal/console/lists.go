package console

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/keyservice"
)

// The create and edit dialogs take a key's allowed origins and allowed IPs
// as text, one entry per line, so that they work as plain HTML forms.

// parseLines reads one entry per line for field ("allowed_origins" or
// "allowed_ips"): blank lines are skipped, space around an entry dropped,
// each entry normalised by check, and an entry given twice kept once. An
// entry check refuses is an input error of the field naming its line; the
// message echoes at most apikey.MaxEcho bytes of it. Empty text is an
// empty, non-nil list, which an update stores as "cleared".
func parseLines(text, field string, check func(string) (string, error)) ([]string, error) {
	list := []string{}
	seen := make(map[string]bool)
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		e, err := check(line)
		if err != nil {
			return nil, &keyservice.InputError{Field: field, Message: fmt.Sprintf("line %d: %v", i+1, err)}
		}
		if seen[e] {
			continue
		}
		seen[e] = true
		if len(list) == apikey.MaxPolicyEntries {
			return nil, &keyservice.InputError{Field: field, Message: fmt.Sprintf("line %d is one entry too many: at most %d", i+1, apikey.MaxPolicyEntries)}
		}
		list = append(list, e)
	}
	return list, nil
}

// checkOriginLine normalises an allowed origin: http or https, a host,
// an optional port or "*", nothing after.
func checkOriginLine(s string) (string, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	scheme = strings.ToLower(scheme)
	if !ok || (scheme != "http" && scheme != "https") {
		return "", fmt.Errorf("%s must start with http:// or https://", apikey.QuoteInput(s))
	}
	if strings.ContainsAny(rest, "/?#@ \\") {
		return "", fmt.Errorf("%s must be scheme://host[:port], with no path", apikey.QuoteInput(s))
	}
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host, port = rest[:i], rest[i+1:]
		if n, err := strconv.Atoi(port); port != "*" && (err != nil || n < 1 || n > 65535) {
			return "", fmt.Errorf("%s has a port that is not 1 to 65535 or *", apikey.QuoteInput(s))
		}
	}
	if host == "" || strings.HasPrefix(host, ".") || strings.HasSuffix(host, ".") {
		return "", fmt.Errorf("%s has no valid host", apikey.QuoteInput(s))
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	out := scheme + "://" + strings.ToLower(host)
	if port != "" {
		out += ":" + port
	}
	return out, nil
}

// checkIPLine normalises an allowed IP: an address or a CIDR prefix,
// masked.
func checkIPLine(s string) (string, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", fmt.Errorf("%s is not a CIDR prefix such as 203.0.113.0/24", apikey.QuoteInput(s))
		}
		return p.Masked().String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", fmt.Errorf("%s is not an IP address or CIDR prefix", apikey.QuoteInput(s))
	}
	return a.Unmap().String(), nil
}

// formatLines writes a list as parseLines reads it.
func formatLines(list []string) string { return strings.Join(list, "\n") }
