package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchOrigins returns 32 allowed origins: 16 exact, 16 wildcards.
func benchOrigins() []string {
	var list []string
	for i := range MaxEntries {
		if i%2 == 0 {
			list = append(list, fmt.Sprintf("https://app%d.example.com", i))
		} else {
			list = append(list, fmt.Sprintf("https://*.site%d.example", i))
		}
	}
	return list
}

// benchIPs returns 32 allowed IPs: 16 IPv4 prefixes, 16 IPv6.
func benchIPs() []string {
	var list []string
	for i := range MaxEntries {
		if i%2 == 0 {
			list = append(list, fmt.Sprintf("10.%d.0.0/16", i))
		} else {
			list = append(list, fmt.Sprintf("2001:db8:%x::/48", i))
		}
	}
	return list
}

// BenchmarkOriginsAllows matches against 32 origins: the last one (every
// entry compared) and none.
func BenchmarkOriginsAllows(b *testing.B) {
	o, err := CompileOrigins(benchOrigins())
	if err != nil {
		b.Fatal(err)
	}
	for _, origin := range []string{"https://a.b.site31.example", "https://nomatch.example.com:8443"} {
		b.Run(origin, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				o.Allows(origin)
			}
		})
	}
}

// BenchmarkRefererOrigin extracts the origin of a Referer and matches it.
func BenchmarkRefererOrigin(b *testing.B) {
	o, _ := CompileOrigins(benchOrigins())
	b.ReportAllocs()
	for b.Loop() {
		ref, _ := RefererOrigin("https://app30.example.com/some/page?q=1")
		o.Allows(ref)
	}
}

// BenchmarkIPsAllows matches against 32 prefixes: the last one and none.
func BenchmarkIPsAllows(b *testing.B) {
	p, err := CompileIPs(benchIPs())
	if err != nil {
		b.Fatal(err)
	}
	for _, ip := range []string{"2001:db8:1f::1", "192.0.2.1", "::ffff:10.30.1.1"} {
		addr := netip.MustParseAddr(ip)
		b.Run(ip, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Allows(addr)
			}
		})
	}
}
