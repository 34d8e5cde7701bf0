// Package instance reports a gateway instance in its store's registry
// (keystore.Registry): a beat every sync interval with what the instance
// is and how far it has applied the change log, and an immediate report
// whenever it applies changes, so that a change waiting for every
// instance (keyservice.Confirm) hears of it at once.
package instance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/docana/keygate/internal/keystore"
)

// writeTimeout bounds one write to the registry.
const writeTimeout = 5 * time.Second

// NewID returns a fresh instance ID: "inst_" and 12 random hex digits.
func NewID() string {
	var b [6]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand.Read never fails
	return "inst_" + hex.EncodeToString(b[:])
}

// Hostname returns the host's name, or "unknown".
func Hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return h
}

// Source is what the reporter reads of the instance's cache: the
// verifier.
type Source interface {
	// Applied returns the change sequence applied.
	Applied() int64
	// Len returns how many keys are cached.
	Len() int
}

// Reporter keeps an instance's row in a registry up to date. Make it with
// New, hand its Notify to the verifier (verifier.Config.OnApplied), then
// Start it with the verifier.
type Reporter struct {
	reg      keystore.Registry
	self     keystore.Instance
	interval time.Duration
	logger   *zap.Logger

	src      Source
	signal   chan struct{}
	reported int64 // the last applied sequence written; run's own
	failing  bool  // the last write failed (to log only transitions); run's own

	ctx    context.Context
	cancel context.CancelFunc
	done   sync.WaitGroup
	once   sync.Once
}

// New returns a reporter of self (ID, Hostname, Version, StartedAt) in
// reg, beating every interval. A nil logger discards its warnings.
func New(reg keystore.Registry, self keystore.Instance, interval time.Duration, logger *zap.Logger) *Reporter {
	if logger == nil {
		logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Reporter{
		reg: reg, self: self, interval: interval, logger: logger,
		signal: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
	}
}

// ID returns the instance's ID.
func (r *Reporter) ID() string { return r.self.ID }

// Notify says the instance applied changes: the reporter writes the new
// sequence at once. It never blocks.
func (r *Reporter) Notify(int64) {
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// Start registers the instance (a first beat, in the background: a
// gateway starts while its database is down) and keeps beating every
// interval until Close.
func (r *Reporter) Start(src Source) {
	r.src = src
	r.done.Add(1)
	go r.run()
}

func (r *Reporter) run() {
	defer r.done.Done()
	r.beat()
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-ticker.C:
			r.beat()
		case <-r.signal:
			r.applied()
		}
	}
}

// beat writes the whole row.
func (r *Reporter) beat() {
	in := r.self
	in.AppliedSeq, in.CacheEntries = r.src.Applied(), r.src.Len()
	ctx, cancel := context.WithTimeout(r.ctx, writeTimeout)
	defer cancel()
	err := r.reg.Beat(ctx, in)
	if err == nil {
		r.reported = max(r.reported, in.AppliedSeq)
	}
	r.result(err)
}

// applied writes the applied sequence if it moved.
func (r *Reporter) applied() {
	seq := r.src.Applied()
	if seq <= r.reported {
		return
	}
	ctx, cancel := context.WithTimeout(r.ctx, writeTimeout)
	defer cancel()
	err := r.reg.Applied(ctx, r.self.ID, seq)
	if err == nil {
		r.reported = seq
	}
	r.result(err)
}

// result logs when writing to the registry starts or stops failing.
func (r *Reporter) result(err error) {
	if r.ctx.Err() != nil {
		return
	}
	switch {
	case err != nil && !r.failing:
		r.logger.Warn("cannot report this instance in the instance registry: changes will wait for it until confirm_timeout", zap.String("instance", r.self.ID), zap.Error(err))
	case err == nil && r.failing:
		r.logger.Info("reporting this instance in the instance registry again", zap.String("instance", r.self.ID))
	}
	r.failing = err != nil
}

// Close stops beating and, if deregister, deletes the instance's row, so
// that a change made after a clean stop waits for it no longer. An
// instance that is not deregistered (it stops for a reload that keeps it
// running, or it dies) stops being live after three sync intervals.
func (r *Reporter) Close(ctx context.Context, deregister bool) error {
	var err error
	r.once.Do(func() {
		r.cancel()
		r.done.Wait()
		if deregister {
			ctx, cancel := context.WithTimeout(ctx, writeTimeout)
			defer cancel()
			err = r.reg.Deregister(ctx, r.self.ID)
		}
	})
	return err
}
