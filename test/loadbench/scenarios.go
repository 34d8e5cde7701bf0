package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// scenarios are the benchmark's tables, in the order they run.
var scenarios = []scenario{
	{
		name:  "upstream",
		title: "the upstream alone, and bare proxies to each upstream candidate",
		about: "Checks that the upstream is not what limits the proxies: each upstream candidate is loaded directly, " +
			"and a bare reverse_proxy is run in front of each. The one that lets the bare proxy go fastest is the upstream of every other scenario.",
		runs:  4,
		setup: setupUpstream,
	},
	{
		name:  "cached",
		title: "one key, cached",
		about: "Every request carries the same valid key: after the first, keygate answers from its cache. " +
			"The header matcher holds that one key in the Caddyfile.",
		runs:     6,
		profiles: 2,
		setup:    setupCached,
	},
	{
		name:     "cached10k",
		title:    "10,000 keys round-robin, all cached",
		about:    "Requests rotate over 10,000 valid keys of the million-key SQLite store; keygate's cache (cache_size 100000) holds them all after the warm-up.",
		runs:     3,
		profiles: 1,
		setup:    setupCached10k,
	},
	{
		name:  "cached100k",
		title: "100,000 keys round-robin, all cached",
		about: "Requests rotate over 100,000 valid keys of the million-key SQLite store with cache_size 120000: keygate's cache holds them all after the warm-up, which sends every key at least once. " +
			"(At cache_size 100000 the shards a digest's first byte picks hold 6,250 keys each and the fuller ones would evict in a round-robin over exactly 100,000.)",
		runs:     3,
		profiles: 1,
		setup:    setupCached100k,
	},
	{
		name:  "miss",
		title: "100,000 keys round-robin over a cache of 10,000: every request misses",
		about: "Requests rotate over 100,000 valid keys of the million-key SQLite store with cache_size 10000: " +
			"a round-robin over more keys than an LRU holds never hits, so every request reads the store.",
		runs:     4,
		profiles: 1,
		setup:    setupMiss,
	},
	{
		name:  "flood",
		title: "valid keys while random well-formed keys flood",
		about: "The valid load (10,000 cached keys round-robin) runs alone, then with a second wrk sending random keys " +
			"with a valid checksum that no store holds (200,000 of them round-robin, more than the negative cache's 16,384, so none is remembered). " +
			"The table shows the valid load's throughput and latency; the flood's own rate is in its column.",
		runs:     6,
		profiles: 1,
		setup:    setupFlood,
	},
	{
		name:  "ratelimit",
		title: "one key, cached, with a rate limit far from exhaustion",
		about: "The cached scenario's key, with limits it never comes near (1000000000/1m and 1000000000/1d, the defaults of every scope), " +
			"counted in memory (rate_limit_store local) or shared through Redis (rate_limit_store redis, 127.0.0.1:6379 database 14), " +
			"next to keygate without limits and a second keygate without limits (the A/A line: how far two identical configurations measure apart). " +
			"Admitted answers carry the RateLimit field.",
		runs:  5,
		setup: setupRateLimit,
	},
	{
		name:  "postgres",
		title: "PostgreSQL store, one and two keygate instances",
		about: "keygate instances share a PostgreSQL database (on this machine, 127.0.0.1:5432) holding the dataset. " +
			"Cached: 10,000 keys round-robin with cache_size 100000. Miss: 100,000 keys round-robin with cache_size 10000, every request a query. " +
			"With two instances, the wrk connections are split between them; req/s is the sum, p50 and p99 the slower instance's.",
		runs:  5,
		setup: setupPostgres,
	},
}

// bareProxy is a bare reverse_proxy to the upstream.
func (b *bench) bareProxy(ctx context.Context, name string) (*instance, error) {
	return b.startCaddy(ctx, name, caddyConfig{Kind: "bare", Upstream: b.upstreamAddr})
}

// keygateProxy is keygate over the SQLite store at dataset, run with
// binary bin ("" for the one built).
func (b *bench) keygateProxy(ctx context.Context, name, bin, dataset string, cacheSize int) (*instance, error) {
	return b.startCaddy(ctx, name, caddyConfig{
		Kind: "keygate", Upstream: b.upstreamAddr, Store: fmt.Sprintf("store sqlite %q", dataset), CacheSize: cacheSize, bin: bin,
	})
}

// forwardAuth is forward_auth to an auth service over the SQLite dataset,
// with the given cache mode (map or none). It returns the target.
func (b *bench) forwardAuth(ctx context.Context, name, cache string, started *[]*proc) (*target, error) {
	auth, addr, err := b.startHelper(ctx, name+"-authsvc", b.authsvc, "-db", b.dataset, "-cache", cache)
	if err != nil {
		return nil, err
	}
	*started = append(*started, auth)
	in, err := b.startCaddy(ctx, name, caddyConfig{Kind: "forward_auth", Upstream: b.upstreamAddr, Auth: addr})
	if err != nil {
		return nil, err
	}
	*started = append(*started, in.proc)
	t := instances(in)
	t.helpers = []*proc{auth}
	return t, nil
}

// starter collects the processes a setup starts, so that they are stopped
// even if a later one fails.
type starter struct {
	b       *bench
	ctx     context.Context
	started []*proc
	after   []func() // run after the processes are stopped
	err     error
}

// stop stops what was started, then runs the after functions.
func (s *starter) stop() {
	stopAll(s.started)
	for _, f := range s.after {
		f()
	}
}

func (s *starter) caddy(name string, start func(ctx context.Context, name string) (*instance, error)) *instance {
	if s.err != nil {
		return nil
	}
	in, err := start(s.ctx, name)
	if err != nil {
		s.err = err
		return nil
	}
	s.started = append(s.started, in.proc)
	return in
}

// keygate starts keygate on a copy of the dataset of its own, removed when
// the scenario's processes stop: keygate writes last-used times and usage
// into its store, and a scenario must not start on what earlier ones
// wrote (nor on a file an earlier keygate migrated).
func (s *starter) keygate(name string, cacheSize int) *instance {
	return s.caddy(name, func(ctx context.Context, name string) (*instance, error) {
		dataset := filepath.Join(s.b.work, name+".db")
		s.after = append(s.after, func() { removeStore(dataset) })
		if err := copyDataset(ctx, s.b.dataset, dataset); err != nil {
			return nil, fmt.Errorf("copying the dataset: %w", err)
		}
		return s.b.keygateProxy(ctx, name, "", dataset, cacheSize)
	})
}

// compared starts, with -compare, the same keygate with the binary to
// compare, and returns the variants made by rows for it, renamed; nil
// without -compare. The binary runs on a copy of the dataset of its own
// (of -compare-dataset's file if given), as keygate does: a binary of a
// newer schema migrates the file it opens in place, and one of an older
// schema refuses the newer file the other rows run on.
func (s *starter) compared(name string, cacheSize int, rows func(kg *instance) []variant) []variant {
	if s.b.opt.compare == "" || s.err != nil {
		return nil
	}
	in := s.caddy(name+"-compare", func(ctx context.Context, name string) (*instance, error) {
		src := s.b.dataset
		if s.b.opt.compareDataset != "" {
			src = s.b.opt.compareDataset
		}
		dataset := filepath.Join(s.b.work, name+".db")
		s.after = append(s.after, func() { removeStore(dataset) })
		if err := copyDataset(ctx, src, dataset); err != nil {
			return nil, fmt.Errorf("copying the dataset for -compare: %w", err)
		}
		return s.b.keygateProxy(ctx, name, s.b.opt.compare, dataset, cacheSize)
	})
	if in == nil {
		return nil
	}
	vs := rows(in)
	for i := range vs {
		vs[i].name = strings.Replace(vs[i].name, "keygate", "keygate "+compareTag, 1)
		if strings.HasPrefix(vs[i].base, "keygate") {
			vs[i].base = strings.Replace(vs[i].base, "keygate", "keygate "+compareTag, 1)
		}
		vs[i].about += " (with -compare's binary)"
	}
	return vs
}

// compareTag marks the rows of -compare's binary.
const compareTag = "[B]"

func (s *starter) bare(name string) *instance { return s.caddy(name, s.b.bareProxy) }

func (s *starter) forwardAuth(name, cache string) *target {
	if s.err != nil {
		return nil
	}
	t, err := s.b.forwardAuth(s.ctx, name, cache, &s.started)
	if err != nil {
		s.err = err
	}
	return t
}

const (
	aboutBare    = "reverse_proxy alone"
	aboutKeygate = "apikey, then reverse_proxy"
	aboutMap     = "forward_auth to authsvc (found keys kept in a map), then reverse_proxy"
	aboutNoCache = "forward_auth to authsvc (a store query per request), then reverse_proxy"
)

func setupUpstream(ctx context.Context, b *bench) ([]variant, func(), error) {
	s := &starter{b: b, ctx: ctx}
	respond := s.caddy("upstream-caddy", func(ctx context.Context, name string) (*instance, error) {
		return b.startCaddy(ctx, name, caddyConfig{Kind: "respond"})
	})
	bare := s.bare("bare")
	var bareCaddy *instance
	if respond != nil {
		bareCaddy = s.caddy("bare-to-caddy", func(ctx context.Context, name string) (*instance, error) {
			return b.startCaddy(ctx, name, caddyConfig{Kind: "bare", Upstream: respond.url[len("http://") : len(respond.url)-1]})
		})
	}
	if s.err != nil {
		return nil, s.stop, s.err
	}
	one := b.keys["1"]
	direct := &target{urls: []string{"http://" + b.upstreamAddr + "/"}, proxies: []*proc{b.upstreamProc}}
	return []variant{
		{name: "upstream (Go net/http)", about: "wrk straight to the Go upstream", target: direct, keys: one},
		{name: "upstream (Caddy respond)", about: "wrk straight to a Caddy process answering with respond", target: instances(respond), keys: one},
		{name: "bare", about: aboutBare + " to the Go upstream", target: instances(bare), keys: one},
		{name: "bare to Caddy respond", about: aboutBare + " to the Caddy respond upstream", target: instances(bareCaddy), keys: one, base: "bare"},
	}, s.stop, nil
}

func setupCached(ctx context.Context, b *bench) ([]variant, func(), error) {
	s := &starter{b: b, ctx: ctx}
	bare := s.bare("bare")
	bare2 := s.bare("bare-2")
	header := s.caddy("header", func(ctx context.Context, name string) (*instance, error) {
		return b.startCaddy(ctx, name, caddyConfig{Kind: "header", Upstream: b.upstreamAddr, Secret: secretOf(0)})
	})
	kg := s.keygate("keygate", 100_000)
	fa := s.forwardAuth("forward_auth", "map")
	faNone := s.forwardAuth("forward_auth-nocache", "none")
	one := b.keys["1"]
	rows := func(kg *instance) []variant {
		return []variant{{name: "keygate", about: aboutKeygate, target: instances(kg), keys: one, base: "bare", profile: true}}
	}
	compared := s.compared("keygate", 100_000, rows)
	if s.err != nil {
		return nil, s.stop, s.err
	}
	return append([]variant{
		{name: "bare", about: aboutBare, target: instances(bare), keys: one, profile: true},
		{name: "bare, second process", about: aboutBare + ", the same configuration in another process: how far apart two identical configurations measure", target: instances(bare2), keys: one, base: "bare"},
		{name: "header matcher", about: "`header Authorization \"ApiKey <the key>\"` matcher, then reverse_proxy", target: instances(header), keys: one, base: "bare"},
		rows(kg)[0],
		{name: "forward_auth", about: aboutMap, target: fa, keys: one, base: "bare"},
		{name: "forward_auth, no cache", about: aboutNoCache, target: faNone, keys: one, base: "bare"},
	}, compared...), s.stop, nil
}

func setupCached10k(ctx context.Context, b *bench) ([]variant, func(), error) {
	s := &starter{b: b, ctx: ctx}
	bare := s.bare("bare")
	kg := s.keygate("keygate", 100_000)
	fa := s.forwardAuth("forward_auth", "map")
	keys := b.keys["10k"]
	rows := func(kg *instance) []variant {
		return []variant{{name: "keygate", about: aboutKeygate, target: instances(kg), keys: keys, base: "bare", profile: true}}
	}
	compared := s.compared("keygate", 100_000, rows)
	if s.err != nil {
		return nil, s.stop, s.err
	}
	return append([]variant{
		{name: "bare", about: aboutBare, target: instances(bare), keys: keys},
		rows(kg)[0],
		{name: "forward_auth", about: aboutMap, target: fa, keys: keys, base: "bare"},
	}, compared...), s.stop, nil
}

func setupCached100k(ctx context.Context, b *bench) ([]variant, func(), error) {
	s := &starter{b: b, ctx: ctx}
	bare := s.bare("bare")
	kg := s.keygate("keygate", 120_000)
	keys := b.keys["100k"]
	rows := func(kg *instance) []variant {
		return []variant{{name: "keygate", about: aboutKeygate, target: instances(kg), keys: keys, base: "bare", profile: true, cover: true}}
	}
	compared := s.compared("keygate", 120_000, rows)
	if s.err != nil {
		return nil, s.stop, s.err
	}
	return append([]variant{
		{name: "bare", about: aboutBare, target: instances(bare), keys: keys, cover: true},
		rows(kg)[0],
	}, compared...), s.stop, nil
}

func setupMiss(ctx context.Context, b *bench) ([]variant, func(), error) {
	s := &starter{b: b, ctx: ctx}
	bare := s.bare("bare")
	kg := s.keygate("keygate-cache10k", 10_000)
	faNone := s.forwardAuth("forward_auth-nocache", "none")
	fa := s.forwardAuth("forward_auth", "map")
	keys := b.keys["100k"]
	rows := func(kg *instance) []variant {
		return []variant{{name: "keygate, cache_size 10000", about: aboutKeygate + "; every request a cache miss and a store query", target: instances(kg), keys: keys, base: "bare", profile: true}}
	}
	compared := s.compared("keygate-cache10k", 10_000, rows)
	if s.err != nil {
		return nil, s.stop, s.err
	}
	return append([]variant{
		{name: "bare", about: aboutBare, target: instances(bare), keys: keys},
		rows(kg)[0],
		{name: "forward_auth, no cache", about: aboutNoCache, target: faNone, keys: keys, base: "bare"},
		{name: "forward_auth", about: aboutMap + "; its unbounded map ends up holding all 100,000 keys", target: fa, keys: keys, base: "bare"},
	}, compared...), s.stop, nil
}

func setupFlood(ctx context.Context, b *bench) ([]variant, func(), error) {
	s := &starter{b: b, ctx: ctx}
	bare := s.bare("bare")
	kg := s.keygate("keygate", 100_000)
	fa := s.forwardAuth("forward_auth", "map")
	keys := b.keys["10k"]
	rows := func(kg *instance) []variant {
		kt := instances(kg)
		return []variant{
			{name: "keygate", about: aboutKeygate, target: kt, keys: keys},
			{name: "keygate + flood", about: "the same, while the flood is refused (401 invalid_api_key)", target: kt, keys: keys, flood: true, base: "keygate", profile: true},
		}
	}
	compared := s.compared("keygate", 100_000, rows)
	if s.err != nil {
		return nil, s.stop, s.err
	}
	bt := instances(bare)
	return append(append([]variant{
		{name: "bare", about: aboutBare, target: bt, keys: keys},
		{name: "bare + flood", about: "the same, while the flood is proxied too", target: bt, keys: keys, flood: true, base: "bare"}},
		rows(kg)...), append([]variant{
		{name: "forward_auth", about: aboutMap, target: fa, keys: keys},
		{name: "forward_auth + flood", about: "the same, while the flood is refused (each unknown key a store query)", target: fa, keys: keys, flood: true, base: "forward_auth"},
	}, compared...)...), s.stop, nil
}

// farLimits are rate limits a benchmark never comes near, for every scope.
var farLimits = []string{
	"rate_limit full 1000000000/1m 1000000000/1d",
	"rate_limit widget 1000000000/1m 1000000000/1d",
	"rate_limit routine 1000000000/1m 1000000000/1d",
}

func setupRateLimit(ctx context.Context, b *bench) ([]variant, func(), error) {
	s := &starter{b: b, ctx: ctx}
	limited := func(store string) func(ctx context.Context, name string) (*instance, error) {
		return func(ctx context.Context, name string) (*instance, error) {
			return b.startCaddy(ctx, name, caddyConfig{
				Kind: "keygate", Upstream: b.upstreamAddr, Store: fmt.Sprintf("store sqlite %q", b.dataset), CacheSize: 100_000,
				RateLimit: append(slices.Clone(farLimits), store),
			})
		}
	}
	bare := s.bare("bare")
	kg := s.keygate("keygate", 100_000)
	kg2 := s.keygate("keygate-2", 100_000)
	local := s.caddy("keygate-local", limited("rate_limit_store local"))
	redis := s.caddy("keygate-redis", limited("rate_limit_store redis redis://127.0.0.1:6379/14"))
	if s.err != nil {
		return nil, s.stop, s.err
	}
	one := b.keys["1"]
	return []variant{
		{name: "bare", about: aboutBare, target: instances(bare), keys: one},
		{name: "keygate", about: aboutKeygate + ", no rate limit", target: instances(kg), keys: one, base: "bare"},
		{name: "keygate, second process", about: aboutKeygate + ", no rate limit, another process: the A/A line", target: instances(kg2), keys: one, base: "keygate"},
		{name: "keygate, local limit", about: aboutKeygate + ", limits counted in memory", target: instances(local), keys: one, base: "keygate"},
		{name: "keygate, Redis limit", about: aboutKeygate + ", limits shared through Redis, decided locally far from them", target: instances(redis), keys: one, base: "keygate"},
	}, s.stop, nil
}

func setupPostgres(ctx context.Context, b *bench) ([]variant, func(), error) {
	logf("creating a PostgreSQL database with %d keys", b.opt.pgKeys)
	db, err := createPGDataset(ctx, b.opt.pgDSN, b.opt.pgKeys)
	if err != nil {
		return nil, func() {}, fmt.Errorf("%w (skip this scenario with -scenarios, or point -pg at a server)", err)
	}
	// Dropped once the instances using it are stopped.
	s := &starter{b: b, ctx: ctx, after: []func(){db.drop}}
	pg := func(cacheSize int) func(ctx context.Context, name string) (*instance, error) {
		return func(ctx context.Context, name string) (*instance, error) {
			return b.startCaddy(ctx, name, caddyConfig{
				Kind: "keygate", Upstream: b.upstreamAddr, Store: fmt.Sprintf("store postgres %q", db.dsn), CacheSize: cacheSize,
			})
		}
	}
	bare := s.bare("bare")
	c1 := s.caddy("keygate-pg-cached-1", pg(100_000))
	c2 := s.caddy("keygate-pg-cached-2", pg(100_000))
	m1 := s.caddy("keygate-pg-miss-1", pg(10_000))
	m2 := s.caddy("keygate-pg-miss-2", pg(10_000))
	if s.err != nil {
		return nil, s.stop, s.err
	}
	cached, miss := b.keys["10k"], b.keys["100k"]
	return []variant{
		{name: "bare", about: aboutBare + " (100,000 keys sent)", target: instances(bare), keys: miss},
		{name: "keygate postgres, 1 instance, cached", about: aboutKeygate, target: instances(c1), keys: cached, base: "bare"},
		{name: "keygate postgres, 2 instances, cached", about: aboutKeygate + ", two gateways", target: instances(c1, c2), keys: cached, base: "bare"},
		{name: "keygate postgres, 1 instance, miss", about: aboutKeygate + ", every request a query", target: instances(m1), keys: miss, base: "bare"},
		{name: "keygate postgres, 2 instances, miss", about: aboutKeygate + ", two gateways, every request a query", target: instances(m1, m2), keys: miss, base: "bare"},
	}, s.stop, nil
}
