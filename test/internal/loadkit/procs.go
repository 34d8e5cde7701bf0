// Package loadkit is what keygate's measurement programs (test/loadbench,
// test/faults) share: starting and stopping the processes they run, in
// process groups of their own, and driving wrk with a Lua script that
// prints its results as one JSON line.
package loadkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a process a measurement program started. Every Proc is in procs
// until it has exited, so that KillAll can end whatever is left, by process
// group.
type Proc struct {
	// Name names the process in errors and its log file.
	Name string
	// Err is its exit status, once Done is closed.
	Err  error
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

var (
	procsMu sync.Mutex
	procs   = map[*Proc]bool{}
)

// StartProc starts bin with args in a process group of its own, writing its
// output to logDir/name.log.
func StartProc(name, logDir, bin string, args []string, env []string) (*Proc, error) {
	logFile, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	// A group of its own, so that a Ctrl-C in the terminal reaches only the
	// benchmark, which stops everything in order; Pdeathsig ends the child
	// if the benchmark dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{})}
	procsMu.Lock()
	defer procsMu.Unlock()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	procs[p] = true
	go func() {
		p.Err = cmd.Wait()
		logFile.Close()
		procsMu.Lock()
		delete(procs, p)
		procsMu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop asks the process to stop (SIGINT: Caddy shuts down gracefully and
// keygate writes its pending last-used times), and kills its group if it
// has not exited within grace.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = syscall.Kill(p.Pid(), syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
		<-p.done
	}
}

// KillAll kills the process group of every process still running and
// waits for them, at most a few seconds.
func KillAll() {
	procsMu.Lock()
	var left []*Proc
	for p := range procs {
		left = append(left, p)
	}
	procsMu.Unlock()
	for _, p := range left {
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	}
	for _, p := range left {
		select {
		case <-p.done:
		case <-time.After(3 * time.Second):
		}
	}
}

// StopAll stops procs in reverse order of the list, gracefully.
func StopAll(list []*Proc) {
	for i := len(list) - 1; i >= 0; i-- {
		list[i].Stop(10 * time.Second)
	}
}

// FreePort returns a port that was free a moment ago on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitHTTP waits until url answers with any status, p exits, or ctx or
// limit ends.
func WaitHTTP(ctx context.Context, p *Proc, url string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited before answering (%v): see its log", p.Name, p.Err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer at %s: %w", p.Name, url, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// clockTicks is USER_HZ, the unit of /proc CPU times; 100 on every Linux
// port Go runs on.
const clockTicks = 100

// ProcCPU returns the CPU time (user + system) process pid has used.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	user, err1 := strconv.ParseInt(fields[11], 10, 64)
	sys, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc stat format")
	}
	return time.Duration(user+sys) * time.Second / clockTicks, nil
}

// MachineCPU returns the CPU time the whole machine has spent in user,
// nice, system and steal, summed over every core (interrupts and idle
// excluded).
func MachineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, errors.New("unexpected /proc/stat format")
	}
	var sum int64
	for _, i := range []int{1, 2, 3, 8} { // user nice system steal
		v, err := strconv.ParseInt(fields[i], 10, 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return time.Duration(sum) * time.Second / clockTicks, nil
}

// LoadAverage returns the 1-minute load average.
func LoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// CPUUsed returns the CPU time an exited process used.
func (p *Proc) CPUUsed() time.Duration {
	<-p.done
	if p.cmd.ProcessState == nil {
		return 0
	}
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}
