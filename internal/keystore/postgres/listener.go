package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

const (
	// minBackoff and maxBackoff bound the wait between reconnection
	// attempts of the listener, which doubles from one to the other.
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
	// attemptTimeout bounds one connection attempt, LISTEN included.
	attemptTimeout = 10 * time.Second
	// pingInterval is how long the listener waits for a notification
	// before it pings the server, so that a connection that died without
	// a word (a network partition) is noticed and replaced.
	pingInterval = 30 * time.Second
	// pingTimeout bounds that ping.
	pingTimeout = 5 * time.Second
)

// listener holds the dedicated connection that LISTENs for the changes of
// every instance, reconnecting when it is lost.
type listener struct {
	dial   func(ctx context.Context) (*pgx.Conn, error)
	notify func()
	// applied is called for every notification on appliedChannel (an
	// instance applied changes), and after every connection, as such
	// notifications may have been missed too.
	applied func()
	logger  *zap.Logger
}

// listen connects with dial and subscribes to the change channel and to
// the instances' applied channel.
func listen(ctx context.Context, dial func(ctx context.Context) (*pgx.Conn, error)) (*pgx.Conn, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	for _, ch := range []string{channel, appliedChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+ch); err != nil {
			closeConn(conn)
			return nil, err
		}
	}
	return conn, nil
}

// run sends a notice for every notification on conn until it is lost, then
// reconnects with backoff and starts again, until ctx ends. After every
// connection, the first included, it sends a notice: notifications sent
// while it was away are lost, and the reader catches up with Changes.
func (l *listener) run(ctx context.Context, conn *pgx.Conn) {
	backoff := minBackoff
	for {
		l.notify()
		if l.applied != nil {
			l.applied()
		}
		err := l.wait(ctx, conn)
		closeConn(conn)
		if ctx.Err() != nil {
			return
		}
		l.logger.Warn("lost the connection listening for key changes; reconnecting", zap.Error(err))
		for conn = nil; conn == nil; {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, maxBackoff)
			actx, cancel := context.WithTimeout(ctx, attemptTimeout)
			conn, err = listen(actx, l.dial)
			cancel()
			if ctx.Err() != nil {
				if conn != nil {
					closeConn(conn)
				}
				return
			}
			if err != nil {
				l.logger.Debug("reconnecting the key change listener failed", zap.Error(err), zap.Duration("retry_in", backoff))
			}
		}
		backoff = minBackoff
		l.logger.Info("reconnected the key change listener")
	}
}

// wait sends a notice for every notification on conn, and returns why it
// stopped: conn failed, or ctx ended.
func (l *listener) wait(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, pingInterval)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil && n.Channel == appliedChannel:
			if l.applied != nil {
				l.applied()
			}
		case err == nil:
			l.notify()
		case ctx.Err() != nil:
			return ctx.Err()
		case pgconn.Timeout(err) && !conn.IsClosed():
			// Quiet for a while: the connection stays usable after a
			// timed-out wait; check the server is still there.
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("pinging the server: %w", err)
			}
		default:
			return err
		}
	}
}

// closeConn closes conn, waiting at most a second for the server.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx) //nolint:errcheck // the connection is given up either way
}
