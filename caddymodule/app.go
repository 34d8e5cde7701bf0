// Package caddymodule is keygate's Caddy glue: the apikeys app, which owns
// the key store, the verification cache and the last-used recorder; the
// apikey HTTP handler, which authenticates requests and enforces scopes;
// their Caddyfile syntax; the admin API; the CLI; and the metrics.
package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/docana/keygate/internal/apikey"
	"github.com/docana/keygate/internal/instance"
	"github.com/docana/keygate/internal/keyservice"
	"github.com/docana/keygate/internal/keystore"
	"github.com/docana/keygate/internal/keystore/postgres"
	"github.com/docana/keygate/internal/keystore/sqlite"
	"github.com/docana/keygate/internal/lastused"
	"github.com/docana/keygate/internal/verifier"
	"github.com/docana/keygate/internal/version"
)

func init() {
	caddy.RegisterModule(App{})
}

// Defaults of the apikeys app: those of the verifier and the recorder,
// named here as the Caddyfile names them.
const (
	// DefaultCacheSize is how many verified keys are held in memory.
	DefaultCacheSize = verifier.DefaultCacheSize
	// DefaultCacheTTL is how long the cache is trusted without reading the
	// change log.
	DefaultCacheTTL = verifier.DefaultCacheTTL
	// DefaultNegativeCacheTTL is how long "no such key" is remembered.
	DefaultNegativeCacheTTL = verifier.DefaultNegativeTTL
	// DefaultLastUsedInterval is how often pending last-used times are
	// written.
	DefaultLastUsedInterval = lastused.DefaultInterval
	// DefaultSyncInterval is how often the store is polled for changes
	// made by other instances.
	DefaultSyncInterval = verifier.DefaultSyncInterval
	// DefaultConfirmTimeout is how long a change waits for every live
	// instance.
	DefaultConfirmTimeout = keyservice.DefaultConfirmTimeout
	// DefaultAuditRetention is how long audit events are kept: 400 days.
	DefaultAuditRetention = 400 * 24 * time.Hour
)

// Store backends.
const (
	BackendSQLite   = "sqlite"
	BackendPostgres = "postgres"
)

// openTimeout bounds opening a store (connecting, migrating the schema).
const openTimeout = 30 * time.Second

// closeTimeout bounds the last flush of last-used times when resources are
// destructed.
const closeTimeout = 10 * time.Second

// App is the apikeys app: it owns the key store, the verification cache and
// the last-used recorder that every apikey handler and the admin API use.
// Without an apikeys global option, Caddy runs it with its defaults as soon
// as a handler needs it: an embedded SQLite store in Caddy's data
// directory.
//
// The open store, the cache and the pending last-used times survive config
// reloads as long as the effective configuration (this struct after
// defaults and placeholders) stays the same; a changed configuration opens
// new ones and closes the old ones, flushing their pending last-used times,
// once the old config is unloaded.
type App struct {
	// Store is where keys are kept. Default: the sqlite backend at
	// `<caddy data dir>/keygate/keys.db`.
	Store *StoreConfig `json:"store,omitempty"`

	// KeyPrefix starts every key this gateway makes and accepts, before
	// an underscore: 2 to 10 lowercase letters or digits. Changing it
	// makes every existing key malformed. Default: `dk`.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// CacheSize is how many verified keys are held in memory. Default:
	// 100000.
	CacheSize int `json:"cache_size,omitempty"`

	// CacheTTL is how long the cache is trusted without a successful
	// read of the store's change log. While the log is followed, cached
	// keys are never refetched (changes drop them); this bounds how long a
	// key keeps working when changes cannot be heard of, and how long a
	// cached key keeps working while the store is down (then every key
	// gets 503). Default: 1m.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// NegativeCacheTTL is how long "no such key" is remembered, so a
	// client repeating an unknown key does not reach the store every time.
	// Default: 10s.
	NegativeCacheTTL caddy.Duration `json:"negative_cache_ttl,omitempty"`

	// LastUsedInterval is how often the last-used times noted in memory
	// are written to the store. They are also written when the process
	// stops. Default: 10s.
	LastUsedInterval caddy.Duration `json:"last_used_interval,omitempty"`

	// SyncInterval is how often the store is polled for changes made by
	// other instances, a safety net for lost notifications. Default: 5s.
	SyncInterval caddy.Duration `json:"sync_interval,omitempty"`

	// ConfirmTimeout is how long a change made through the admin API or
	// the console waits for every live instance to apply it before it
	// answers, naming those that have not. 0s answers at once (with what
	// has been confirmed by then). Default: 2s. It is not part of the
	// pooled resources: changing it keeps the store and the cache.
	ConfirmTimeout *caddy.Duration `json:"confirm_timeout,omitempty"`

	// RateLimits are the default rate limits by scope ("full", "widget",
	// "routine"): the limits of the keys of that scope that have none of
	// their own, each "N/WINDOW" as a key's rate_limits (at most 4, each
	// window once). A scope without defaults leaves such keys unlimited.
	// Changing them keeps what keys have used.
	RateLimits map[string][]string `json:"rate_limits,omitempty"`

	// RateLimitStore is where requests are counted against rate limits.
	// Default: local (each instance counts in its own memory, so behind a
	// load balancer over N instances a key may make N times its limit).
	RateLimitStore *RateLimitStoreConfig `json:"rate_limit_store,omitempty"`

	// RateLimitOnError is what happens to requests of keys with rate
	// limits while the shared rate-limit store (Redis) fails: "allow"
	// admits them uncounted (the default: an outage of the counter does
	// not become an outage of the API), "deny" refuses them with 503
	// rate_limit_unavailable and Retry-After.
	RateLimitOnError string `json:"rate_limit_on_error,omitempty"`

	// AuditRetention is how long the audit log keeps an event. Every
	// instance deletes older events (and usage beyond its own retention:
	// per minute 48h, per hour 90d, per day 400d) about once an hour.
	// Default: 400d.
	AuditRetention caddy.Duration `json:"audit_retention,omitempty"`

	res     *resources          // nil until Provision succeeds
	svc     *keyservice.Service // res.service with this config's confirm_timeout
	poolKey string
	// limits is what handlers need to enforce rate limits; limitKey its
	// entry in limiterPool ("" if none was taken).
	limits   *rateLimits
	limitKey string
	logger   *zap.Logger
}

// Rate-limit stores.
const (
	RateLimitLocal = "local"
	RateLimitRedis = "redis"
)

// Values of RateLimitOnError.
const (
	RateLimitAllow = "allow"
	RateLimitDeny  = "deny"
)

// RateLimitStoreConfig selects where requests are counted.
type RateLimitStoreConfig struct {
	// Backend is "local" (the default) or "redis".
	Backend string `json:"backend,omitempty"`
	// URL locates Redis, redis://[user:password@]host:port/db or
	// rediss:// for TLS; placeholders such as {env.KEYGATE_REDIS} are
	// replaced when the app is provisioned. It may hold a password and is
	// never logged. Required for redis.
	URL string `json:"url,omitempty"`
}

// StoreConfig selects and locates the key store. Placeholders such as
// {env.KEYGATE_DSN} are replaced when the app is provisioned; a placeholder
// that resolves to nothing is an error.
type StoreConfig struct {
	// Backend is "sqlite" (embedded, one gateway host) or "postgres"
	// (shared by several gateway instances). Default: sqlite.
	Backend string `json:"backend,omitempty"`

	// Path is the SQLite database file, created with its directory if
	// missing. Default: `<caddy data dir>/keygate/keys.db`.
	Path string `json:"path,omitempty"`

	// DSN is the PostgreSQL connection string (URL or key=value form).
	// It usually holds a password: keep it out of the config with a
	// placeholder such as {env.KEYGATE_DSN}. Required for postgres.
	DSN string `json:"dsn,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "apikeys",
		New: func() caddy.Module { return new(App) },
	}
}

// resourcePool holds what outlives a config load: one *resources per
// effective apikeys configuration (the JSON of App.effective), shared by
// every config loaded with it. Each successful Provision takes a reference
// (LoadOrNew) and its Cleanup gives it back (Delete); the last Delete
// destructs the resources, which flushes the pending last-used times and
// closes the store. A reload with an unchanged configuration therefore
// keeps the open store, the warm cache and the pending writes.
var resourcePool = caddy.NewUsagePool()

// resources are the long-lived parts behind an apikeys configuration.
type resources struct {
	store    keystore.Store
	verifier *verifier.Verifier
	recorder *lastused.Recorder
	service  *keyservice.Service
	reporter *instance.Reporter
	location string // the store's identity in instanceUsers
	logger   *zap.Logger
}

// thisInstance is this process in the instance registry: one identity per
// process, whatever configs are loaded, so that a reload that opens new
// resources (a changed apikeys configuration) goes on reporting the same
// instance instead of registering a second one.
var thisInstance = sync.OnceValue(func() keystore.Instance {
	return keystore.Instance{
		ID:        instance.NewID(),
		Hostname:  instance.Hostname(),
		Version:   version.String(),
		StartedAt: time.Now().UTC().Truncate(time.Microsecond),
	}
})

// instanceUsers counts, per store location, the resources of this process
// reporting the instance there. During a reload with a changed
// configuration the new resources open before the old ones close; only
// the last to close deregisters the instance, so a reload never
// deregisters the instance that goes on running.
var instanceUsers = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// Provision applies the defaults and placeholders, then takes the
// resources of the resulting configuration from the pool, opening them if
// no loaded config uses them yet.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	cfg, err := a.effective()
	if err != nil {
		return err
	}
	confirmTimeout := DefaultConfirmTimeout
	if a.ConfirmTimeout != nil {
		if *a.ConfirmTimeout < 0 {
			return fmt.Errorf("apikeys: confirm_timeout %v is negative", time.Duration(*a.ConfirmTimeout))
		}
		confirmTimeout = time.Duration(*a.ConfirmTimeout)
	}
	key, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encoding apikeys configuration: %w", err)
	}
	val, _, err := resourcePool.LoadOrNew(string(key), func() (caddy.Destructor, error) {
		return newResources(ctx, cfg, poolLogger())
	})
	if err != nil {
		return err
	}
	a.res, a.poolKey = val.(*resources), string(key)
	a.svc = a.res.service.WithConfirmTimeout(confirmTimeout)
	return a.provisionRateLimits()
}

// Start does nothing: the resources are ready after Provision, as handlers
// may serve before this app starts (Caddy starts apps in any order).
func (a *App) Start() error { return nil }

// Stop does nothing: resources are released by Cleanup, once no loaded
// config uses them.
func (a *App) Stop() error { return nil }

// Cleanup gives back the resources taken by Provision. It does nothing if
// Provision failed before taking them.
func (a *App) Cleanup() error {
	var errs []error
	if a.limitKey != "" {
		if _, err := limiterPool.Delete(a.limitKey); err != nil {
			errs = append(errs, err)
		}
		a.limitKey, a.limits = "", nil
	}
	if a.res != nil {
		a.res, a.svc = nil, nil
		if _, err := resourcePool.Delete(a.poolKey); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// service returns the key management service; nil if the app was not
// provisioned.
// apikeysApp returns the apikeys app of ctx, which Caddy loads (with its
// defaults if the config has none) for the first module that asks.
func apikeysApp(ctx caddy.Context) (*App, error) {
	app, err := ctx.App("apikeys")
	if err != nil {
		return nil, fmt.Errorf("getting apikeys app: %w", err)
	}
	return app.(*App), nil
}

func (a *App) service() *keyservice.Service {
	return a.svc
}

// effective returns a copy of a with the defaults applied and placeholders
// in the store location replaced, after checking every value.
func (a *App) effective() (App, error) {
	cfg := App{
		KeyPrefix:        a.KeyPrefix,
		CacheSize:        a.CacheSize,
		CacheTTL:         a.CacheTTL,
		NegativeCacheTTL: a.NegativeCacheTTL,
		LastUsedInterval: a.LastUsedInterval,
		SyncInterval:     a.SyncInterval,
		AuditRetention:   a.AuditRetention,
	}
	store := StoreConfig{}
	if a.Store != nil {
		store = *a.Store
	}
	if store.Backend == "" {
		store.Backend = BackendSQLite
	}
	repl := caddy.NewReplacer()
	switch store.Backend {
	case BackendSQLite:
		if store.DSN != "" {
			return App{}, errors.New("apikeys: store: dsn is for the postgres backend; sqlite takes a path")
		}
		if store.Path == "" {
			store.Path = filepath.Join(caddy.AppDataDir(), "keygate", "keys.db")
		}
		path, err := repl.ReplaceOrErr(store.Path, true, true)
		if err != nil {
			return App{}, fmt.Errorf("apikeys: store path: %w", err)
		}
		if path, err = filepath.Abs(path); err != nil {
			return App{}, fmt.Errorf("apikeys: store path: %w", err)
		}
		store.Path = path
	case BackendPostgres:
		if store.Path != "" {
			return App{}, errors.New("apikeys: store: path is for the sqlite backend; postgres takes a dsn")
		}
		if store.DSN == "" {
			return App{}, errors.New("apikeys: store: the postgres backend needs a dsn")
		}
		// The error names the placeholder, never the value.
		dsn, err := repl.ReplaceOrErr(store.DSN, true, true)
		if err != nil {
			return App{}, fmt.Errorf("apikeys: store dsn: %w", err)
		}
		store.DSN = dsn
	default:
		return App{}, fmt.Errorf("apikeys: unknown store backend %q: want sqlite or postgres", store.Backend)
	}
	cfg.Store = &store

	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = apikey.DefaultPrefix
	}
	if _, err := apikey.NewFormat(cfg.KeyPrefix); err != nil {
		return App{}, fmt.Errorf("apikeys: %w", err)
	}
	if cfg.CacheSize < 0 {
		return App{}, fmt.Errorf("apikeys: cache_size %d is negative", cfg.CacheSize)
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	for _, d := range []struct {
		name string
		val  *caddy.Duration
		def  time.Duration
	}{
		{"cache_ttl", &cfg.CacheTTL, DefaultCacheTTL},
		{"negative_cache_ttl", &cfg.NegativeCacheTTL, DefaultNegativeCacheTTL},
		{"last_used_interval", &cfg.LastUsedInterval, DefaultLastUsedInterval},
		{"sync_interval", &cfg.SyncInterval, DefaultSyncInterval},
		{"audit_retention", &cfg.AuditRetention, DefaultAuditRetention},
	} {
		if *d.val < 0 {
			return App{}, fmt.Errorf("apikeys: %s %v is negative", d.name, time.Duration(*d.val))
		}
		if *d.val == 0 {
			*d.val = caddy.Duration(d.def)
		}
	}
	return cfg, nil
}

// poolLogger returns the logger of pooled resources, named "apikeys" as
// the app's own: the resources outlive the config that opened them, and
// Caddy closes a config's log writers when it is unloaded, so they log
// through Caddy's default logger of the moment instead, whichever config
// set it.
func poolLogger() *zap.Logger {
	return zap.New(defaultLogCore{}).Named("apikeys")
}

// defaultLogCore is a zapcore.Core that writes through caddy.Log(), looked
// up on every entry: a config load replaces Caddy's default logger, and
// the one a config set is closed with that config.
type defaultLogCore struct {
	fields []zapcore.Field // added by With
}

func (c defaultLogCore) core() zapcore.Core {
	core := caddy.Log().Core()
	if len(c.fields) > 0 {
		core = core.With(c.fields)
	}
	return core
}

// Enabled reports whether the current default logger logs level.
func (c defaultLogCore) Enabled(level zapcore.Level) bool { return caddy.Log().Core().Enabled(level) }

// With returns a core that adds fields to every entry.
func (c defaultLogCore) With(fields []zapcore.Field) zapcore.Core {
	return defaultLogCore{fields: append(slices.Clip(c.fields), fields...)}
}

// Check lets the current default logger's core decide, and write.
func (c defaultLogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return c.core().Check(e, ce)
}

// Write writes through the current default logger's core.
func (c defaultLogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	return c.core().Write(e, fields)
}

// Sync flushes the current default logger.
func (c defaultLogCore) Sync() error { return caddy.Log().Core().Sync() }

// newResources opens the store of cfg, an effective configuration, and
// starts the verifier and the recorder over it.
func newResources(ctx context.Context, cfg App, logger *zap.Logger) (*resources, error) {
	format, err := apikey.NewFormat(cfg.KeyPrefix)
	if err != nil {
		return nil, fmt.Errorf("apikeys: %w", err)
	}
	openCtx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	store, err := openStore(openCtx, cfg.Store, logger)
	if err != nil {
		return nil, err
	}
	var (
		reg      keystore.Registry
		location string
	)
	switch s := store.(type) {
	case keystore.Registry:
		reg, location = s, cfg.Store.Backend+" "+cfg.Store.DSN
	default:
		// One host uses the store alone: the registry holds this process.
		reg = keystore.NewMemoryRegistry(func(ctx context.Context) (int64, error) {
			_, seq, err := store.Changes(ctx, math.MaxInt64, 1)
			return seq, err
		}, nil)
		location = cfg.Store.Backend + " " + cfg.Store.Path
	}
	self := thisInstance()
	rep := instance.New(reg, self, time.Duration(cfg.SyncInterval), logger.Named("instance"))
	v, err := verifier.New(store, verifier.Config{
		Format:       format,
		CacheSize:    cfg.CacheSize,
		CacheTTL:     time.Duration(cfg.CacheTTL),
		NegativeTTL:  time.Duration(cfg.NegativeCacheTTL),
		SyncInterval: time.Duration(cfg.SyncInterval),
		Logger:       logger.Named("verifier"),
		Metrics:      processMetrics,
		Attach:       attachValues,
		OnApplied:    rep.Notify,
	})
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("apikeys: starting the verifier: %w", err)
	}
	rec := lastused.New(store, lastused.Config{
		Interval:  time.Duration(cfg.LastUsedInterval),
		Logger:    logger.Named("last_used"),
		Metrics:   processMetrics,
		Retention: keystore.Retention{Audit: time.Duration(cfg.AuditRetention)},
	})
	if l, ok := store.(keystore.EventListener); ok {
		l.OnEvents(auditLogger(logger.Named("audit")))
	}
	svc := keyservice.New(store, format, v, rec, nil)
	svc.CountStoreErrors(processMetrics.StoreErrors)
	svc.SetFleet(keyservice.Fleet{
		Registry:    reg,
		Self:        self.ID,
		Applied:     v.Applied,
		Timeout:     DefaultConfirmTimeout,
		Live:        3 * time.Duration(cfg.SyncInterval),
		Unconfirmed: processMetrics.ChangesUnconfirmed,
	})
	instanceUsers.Lock()
	instanceUsers.n[location]++
	instanceUsers.Unlock()
	rep.Start(v)
	return &resources{
		store:    store,
		verifier: v,
		recorder: rec,
		service:  svc,
		reporter: rep,
		location: location,
		logger:   logger,
	}, nil
}

// openStore opens the backend that sc, after defaults, names.
func openStore(ctx context.Context, sc *StoreConfig, logger *zap.Logger) (keystore.Store, error) {
	switch sc.Backend {
	case BackendSQLite:
		s, err := sqlite.Open(ctx, sc.Path)
		if err != nil {
			return nil, fmt.Errorf("apikeys: opening sqlite key store %s: %w", sc.Path, err)
		}
		logger.Info("key store opened", zap.String("backend", sc.Backend), zap.String("path", sc.Path))
		return s, nil
	case BackendPostgres:
		// The DSN is never logged or put in an error: it may hold a
		// password.
		s, err := postgres.Open(ctx, sc.DSN, logger.Named("postgres"))
		if err != nil {
			return nil, fmt.Errorf("apikeys: %w", err)
		}
		logger.Info("key store opened", zap.String("backend", sc.Backend))
		return s, nil
	}
	return nil, fmt.Errorf("apikeys: unknown store backend %q", sc.Backend)
}

// Destruct flushes the pending last-used times and closes the verifier and
// the store, in that order: the recorder writes to the store, and the
// verifier's sync goroutine reads it.
func (r *resources) Destruct() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var errs []error
	instanceUsers.Lock()
	instanceUsers.n[r.location]--
	last := instanceUsers.n[r.location] == 0
	if last {
		delete(instanceUsers.n, r.location)
	}
	instanceUsers.Unlock()
	if err := r.reporter.Close(ctx, last); err != nil {
		errs = append(errs, fmt.Errorf("apikeys: deregistering this instance: %w", err))
	}
	if err := r.recorder.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("apikeys: writing pending last-used times: %w", err))
	}
	if err := r.verifier.Close(); err != nil {
		errs = append(errs, fmt.Errorf("apikeys: closing the verifier: %w", err))
	}
	if err := r.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("apikeys: closing the key store: %w", err))
	}
	err := errors.Join(errs...)
	if err != nil {
		r.logger.Error("closing key store resources", zap.Error(err))
	}
	return err
}

// auditLogger returns the listener that logs every audit event at info
// level, as the logger apikeys.audit, for operators to ship to their log
// pipeline. Events hold no secret; their fields are those of the admin
// API's JSON.
func auditLogger(logger *zap.Logger) func([]keystore.Event) {
	return func(events []keystore.Event) {
		for _, e := range events {
			v := keyservice.EventView(e)
			logger.Info("key changed",
				zap.Int64("id", v.ID),
				zap.Time("at", v.At),
				zap.String("action", v.Action),
				zap.String("key_id", v.KeyID),
				zap.Stringp("owner", v.Owner),
				zap.String("actor_type", v.Actor.Type),
				zap.String("actor_id", v.Actor.ID),
				zap.Stringp("remote_ip", v.RemoteIP),
				zap.Stringp("user_agent", v.UserAgent),
				zap.Any("changes", v.Changes),
				zap.Any("details", v.Details))
		}
	}
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
	_ caddy.Destructor   = (*resources)(nil)
	_ zapcore.Core       = defaultLogCore{}
)
