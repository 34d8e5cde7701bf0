package caddymodule

import (
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/policy"
	"github.com/docana/keygate/internal/ratelimit"
)

// Placeholders the handler sets on success, besides id, name and scope.
const (
	// placeholderOwner is the key's owner, "" when it has none.
	placeholderOwner = "http.auth.user.owner"
	// placeholderMetadata starts {http.auth.user.metadata.<name>}, the
	// key's metadata entry <name>.
	placeholderMetadata = "http.auth.user.metadata."
)

// keyValues are what the handler derives from a key, made once per key
// record (see verifier.Config.Attach) so that a request allocates nothing
// for them: the owner boxed into an interface and the function that
// resolves the metadata placeholders, for Caddy's replacer, the key's
// allowed origins and IPs compiled into matchers, and its rate limits
// compiled into a policy.
type keyValues struct {
	// owner is the key's Owner as an any.
	owner any
	// metadata resolves {http.auth.user.metadata.<name>}. It is a
	// provider (caddy.Replacer.Map), not static values, so that a key's
	// metadata costs nothing unless a placeholder asks for it.
	metadata caddy.ReplacerFunc
	// origins and ips match the key's AllowedOrigins and AllowedIPs; nil
	// when the key has none (any origin or IP is accepted).
	origins *policy.Origins
	ips     *policy.IPs
	// badOrigins and badIPs are set when the stored lists do not compile
	// (a store edited by hand, or a rule that changed): such a key is
	// refused at that step, never let through unrestricted.
	badOrigins, badIPs bool
	// limits are the key's own rate limits; nil when it has none (its
	// scope's defaults apply). badLimits, like badIPs, marks stored limits
	// that do not parse: the key is refused rather than unlimited.
	limits    *ratelimit.Policy
	badLimits bool
}

// plainValues are the values of every key with no owner and no metadata,
// shared so that such keys cost no memory.
var plainValues = &keyValues{owner: "", metadata: noMetadata}

// valuesOf returns the values of k. It allocates only if k has an owner,
// metadata, allowed origins, allowed IPs or rate limits.
func valuesOf(k *apikey.Key) *keyValues {
	if k.Owner == "" && len(k.Metadata) == 0 && len(k.AllowedOrigins) == 0 && len(k.AllowedIPs) == 0 &&
		len(k.RateLimits) == 0 {
		return plainValues
	}
	kv := &keyValues{owner: k.Owner, metadata: noMetadata}
	if len(k.AllowedOrigins) > 0 {
		var err error
		if kv.origins, err = policy.CompileOrigins(k.AllowedOrigins); err != nil || kv.origins == nil {
			kv.origins, kv.badOrigins = nil, true
		}
	}
	if len(k.AllowedIPs) > 0 {
		var err error
		if kv.ips, err = policy.CompileIPs(k.AllowedIPs); err != nil || kv.ips == nil {
			kv.ips, kv.badIPs = nil, true
		}
	}
	if len(k.RateLimits) > 0 {
		var err error
		if kv.limits, err = ratelimit.Compile(k.RateLimits); err != nil || kv.limits == nil {
			kv.limits, kv.badLimits = nil, true
		}
	}
	if len(k.Metadata) > 0 {
		// Boxed once here, not at every lookup. Metadata is never
		// modified after the key is read, so a copy is not needed for
		// safety; the boxed map is the one the provider reads.
		boxed := make(map[string]any, len(k.Metadata))
		for name, v := range k.Metadata {
			boxed[name] = v
		}
		kv.metadata = func(key string) (any, bool) {
			name, ok := metadataName(key)
			if !ok {
				return nil, false
			}
			if v, ok := boxed[name]; ok {
				return v, true
			}
			return "", true
		}
	}
	return kv
}

// attachValues is the verifier's Config.Attach: the values of each key
// record, kept with it in the cache.
func attachValues(k *apikey.Key) any { return valuesOf(k) }

// noMetadata resolves the metadata placeholders of a key without metadata:
// every valid name is known and empty.
func noMetadata(key string) (any, bool) {
	if _, ok := metadataName(key); !ok {
		return nil, false
	}
	return "", true
}

// metadataName returns the entry name of a metadata placeholder, and false
// if key is not one or names no possible entry. A name that no key can
// have (see validMetadataName) is left unknown, so that a typo such as
// {http.auth.user.metadata.Plan} shows in the output (or fails a strict
// replacement) instead of passing silently as empty.
func metadataName(key string) (string, bool) {
	name, ok := strings.CutPrefix(key, placeholderMetadata)
	if !ok || !validMetadataName(name) {
		return "", false
	}
	return name, true
}

// validMetadataName reports whether name is a possible metadata entry
// name: [a-z][a-z0-9_]{0,31}, the rule of apikey's metadata checks.
func validMetadataName(name string) bool {
	if len(name) == 0 || len(name) > 32 || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
