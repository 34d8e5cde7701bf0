package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/ratelimit"
)

// limiter is what the handler needs of ratelimit.Local and ratelimit.Redis.
type limiter interface {
	Allow(id string, p *ratelimit.Policy, now time.Time) (ratelimit.Decision, error)
}

// rateLimits are an apikeys app's rate-limit settings, ready for
// handlers: the shared limiter, the default policies by scope and the
// failure mode.
type rateLimits struct {
	limiter  limiter
	defaults [scopeSlots]*ratelimit.Policy
	deny     bool // rate_limit_on_error deny
}

// limiterPool holds the limiters, one per rate-limit store configuration
// ("local", or "redis" and its URL), shared by every config loaded with
// it: a reload, or a change of any other option (the default limits
// among them), keeps what keys have used.
var limiterPool = caddy.NewUsagePool()

// pooledLimiter is a limiter in limiterPool.
type pooledLimiter struct {
	limiter
	close func() error
}

// Destruct stops the limiter: the Redis limiter sends what it has not.
func (p pooledLimiter) Destruct() error { return p.close() }

// provisionRateLimits checks the rate-limit options and takes the
// limiter of the store they name from limiterPool.
func (a *App) provisionRateLimits() error {
	rl := &rateLimits{}
	for name, list := range a.RateLimits {
		s, err := apikey.ParseScope(name)
		if err != nil {
			return fmt.Errorf("apikeys: rate_limit: %w", err)
		}
		p, err := ratelimit.Compile(list)
		if err != nil {
			return fmt.Errorf("apikeys: rate_limit %s: %w", name, err)
		}
		rl.defaults[s] = p
	}
	switch a.RateLimitOnError {
	case "", RateLimitAllow:
	case RateLimitDeny:
		rl.deny = true
	default:
		return fmt.Errorf("apikeys: rate_limit_on_error %q: want allow or deny", a.RateLimitOnError)
	}
	store := RateLimitStoreConfig{Backend: RateLimitLocal}
	if a.RateLimitStore != nil {
		store = *a.RateLimitStore
	}
	var key string
	switch store.Backend {
	case "", RateLimitLocal:
		if store.URL != "" {
			return errors.New("apikeys: rate_limit_store local takes no URL")
		}
		key = RateLimitLocal
	case RateLimitRedis:
		if store.URL == "" {
			return errors.New("apikeys: rate_limit_store redis needs a URL, such as redis://127.0.0.1:6379/0")
		}
		// The error names the placeholder, never the value.
		url, err := caddy.NewReplacer().ReplaceOrErr(store.URL, true, true)
		if err != nil {
			return fmt.Errorf("apikeys: rate_limit_store url: %w", err)
		}
		store.URL = url
		key = RateLimitRedis + " " + url
	default:
		return fmt.Errorf("apikeys: unknown rate_limit_store %q: want local or redis", store.Backend)
	}
	val, _, err := limiterPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		if store.Backend == RateLimitRedis {
			r, err := ratelimit.NewRedis(ratelimit.RedisConfig{
				URL:    store.URL,
				Logger: poolLogger().Named("rate_limit"),
				Errors: processMetrics.RateLimitStoreErrors,
			})
			if err != nil {
				return nil, fmt.Errorf("apikeys: %w", err)
			}
			return pooledLimiter{r, r.Close}, nil
		}
		l := ratelimit.NewLocal(0)
		return pooledLimiter{l, l.Close}, nil
	})
	if err != nil {
		return err
	}
	rl.limiter = val.(pooledLimiter).limiter
	a.limits, a.limitKey = rl, key
	return nil
}

// rateLimitRetryAfter is the Retry-After of a 503 rate_limit_unavailable
// answer: the Redis limiter tries again after a second.
const rateLimitRetryAfter = "1"

// setRateLimited sets the headers of a 429 answer for decision d under p:
// Retry-After, and both fields of draft-ietf-httpapi-ratelimit-headers-10.
func setRateLimited(hdr http.Header, p *ratelimit.Policy, d ratelimit.Decision) {
	hdr["Retry-After"] = []string{strconv.FormatInt(ratelimit.Seconds(d.RetryAfter), 10)}
	hdr["Ratelimit-Policy"] = []string{p.PolicyHeader()}
	hdr["Ratelimit"] = p.RateLimitValue(d)
}
