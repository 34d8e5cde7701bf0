package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/docana/keygate/internal/apikey"
)

// NormalizeIP checks one allowed-IP entry, an IPv4 or IPv6 address or CIDR
// prefix, and returns its canonical form: an address as netip writes it
// ("2001:db8::1", "203.0.113.7"), a prefix likewise ("10.0.0.0/8"), and a
// prefix of the whole address ("203.0.113.7/32") as the address alone.
//
// A prefix with bits set after its length ("10.0.0.1/8") is refused rather
// than masked: it may be a typo for an address or for a longer prefix, and
// silently widening it to 10.0.0.0/8 would allow far more than meant. So are
// zones ("fe80::1%eth0"), which name an interface of one machine, and
// IPv4-mapped IPv6 addresses ("::ffff:10.0.0.1"): write the IPv4 address,
// which also matches clients seen as mapped addresses.
func NormalizeIP(s string) (string, error) {
	p, err := parseIP(s)
	if err != nil {
		return "", err
	}
	if p.IsSingleIP() {
		return p.Addr().String(), nil
	}
	return p.String(), nil
}

// parseIP parses an allowed-IP entry as a prefix (an address is a prefix of
// its whole length).
func parseIP(s string) (netip.Prefix, error) {
	q := apikey.QuoteInput(s)
	if s == "" {
		return netip.Prefix{}, errors.New("empty IP address")
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			if strings.Contains(s, "%") {
				return p, fmt.Errorf("IP %s: an address with a zone (%%) is not allowed", q)
			}
			return p, fmt.Errorf("IP %s: not an IP address or CIDR prefix", q)
		}
		if p.Masked() != p {
			return p, fmt.Errorf("IP %s: bits are set after the prefix length /%d; write the network's first address, or the address alone", q, p.Bits())
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, fmt.Errorf("IP %s: not an IP address or CIDR prefix", q)
		}
		if a.Zone() != "" {
			return p, fmt.Errorf("IP %s: an address with a zone (%%) is not allowed", q)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		return p, fmt.Errorf("IP %s: write an IPv4-mapped address as IPv4", q)
	}
	return p, nil
}

// CheckIPs checks a whole allowed_ips list and returns it normalised: at
// most MaxEntries entries, each normalised by NormalizeIP; an entry equal to
// an earlier one after normalisation ("10.0.0.7/32" and "10.0.0.7") is
// dropped, keeping the first's place. (An entry inside an earlier prefix is
// kept: it is not a duplicate, and dropping it would surprise whoever later
// removes the prefix.) An error names the entry by its index from 0
// (*EntryError). An empty or nil list returns nil: any address.
func CheckIPs(list []string) ([]string, error) {
	return checkList(list, NormalizeIP)
}
