package loadkit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkScript is the Lua script every run uses. With one key, the key is a
// static header, and wrk sends one prepared request over and over; with a
// key file of several, every request is prepared once at start and
// request() only picks the next one, round-robin, so rotating keys costs
// wrk next to nothing. done() prints the results as one JSON line.
const wrkScript = `-- written by test/internal/loadkit
local keysfile = %q
local single = %t
local reqs = {}
local n = 0
local i = 0

if single then
  for line in io.lines(keysfile) do
    wrk.headers["Authorization"] = "ApiKey " .. line
    break
  end
else
  init = function(args)
    local headers = {}
    for line in io.lines(keysfile) do
      n = n + 1
      reqs[n] = wrk.format(nil, nil, {["Host"] = wrk.headers["Host"], ["Authorization"] = "ApiKey " .. line})
    end
  end
  request = function()
    i = i + 1
    if i > n then i = 1 end
    return reqs[i]
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('LOADBENCH {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,"mean_us":%%.1f,"max_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
`

// WrkResult is what one wrk run measured.
type WrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	P50US      int64   `json:"p50_us"`
	P99US      int64   `json:"p99_us"`
	MeanUS     float64 `json:"mean_us"`
	MaxUS      int64   `json:"max_us"`
	Connect    int64   `json:"connect"`
	Read       int64   `json:"read"`
	Write      int64   `json:"write"`
	Status     int64   `json:"status"` // responses other than 2xx or 3xx
	Timeout    int64   `json:"timeout"`

	// CPU is the CPU time the wrk process itself used.
	CPU time.Duration `json:"-"`
}

// RPS returns the requests per second.
func (r WrkResult) RPS() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

// Errors returns the socket errors and timeouts (not the non-2xx answers).
func (r WrkResult) Errors() int64 { return r.Connect + r.Read + r.Write + r.Timeout }

// WrkLoad describes one wrk instance.
type WrkLoad struct {
	Name        string // for its log file
	URL         string
	KeysFile    string // keys sent as "Authorization: ApiKey <key>", round-robin
	Keys        int    // lines in KeysFile
	Threads     int
	Connections int
	Duration    time.Duration
}

// StartWrk starts wrk for load l; wait for it with WaitWrk.
func StartWrk(workDir string, l WrkLoad) (*Proc, error) {
	script := filepath.Join(workDir, l.Name+".lua")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(wrkScript, l.KeysFile, l.Keys == 1)), 0o600); err != nil {
		return nil, err
	}
	secs := int(l.Duration.Round(time.Second) / time.Second)
	args := []string{
		"-t", strconv.Itoa(l.Threads), "-c", strconv.Itoa(l.Connections), "-d", strconv.Itoa(max(secs, 1)) + "s",
		"--timeout", "10s", "-s", script, l.URL,
	}
	return StartProc(l.Name, workDir, "wrk", args, nil)
}

// WaitWrk waits for a wrk started by StartWrk and reads its result,
// killing it if ctx ends first.
func WaitWrk(ctx context.Context, workDir string, p *Proc) (WrkResult, error) {
	select {
	case <-p.Done():
	case <-ctx.Done():
		p.Stop(time.Second)
		return WrkResult{}, ctx.Err()
	}
	logPath := filepath.Join(workDir, p.Name+".log")
	f, err := os.Open(logPath)
	if err != nil {
		return WrkResult{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "LOADBENCH "); ok {
			var r WrkResult
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				return WrkResult{}, fmt.Errorf("reading wrk's result in %s: %w", logPath, err)
			}
			r.CPU = p.CPUUsed()
			return r, nil
		}
	}
	return WrkResult{}, fmt.Errorf("wrk printed no result (exit: %v): see %s", p.Err, logPath)
}
