package main

import "github.com/docana/keygate/test/internal/loadkit"

// The processes and wrk runs of the benchmark, from the package it shares
// with test/faults.
type (
	proc      = loadkit.Proc
	wrkLoad   = loadkit.WrkLoad
	wrkResult = loadkit.WrkResult
)

var (
	startProc   = loadkit.StartProc
	killAll     = loadkit.KillAll
	stopAll     = loadkit.StopAll
	freePort    = loadkit.FreePort
	waitHTTP    = loadkit.WaitHTTP
	procCPU     = loadkit.ProcCPU
	machineCPU  = loadkit.MachineCPU
	loadAverage = loadkit.LoadAverage
	startWrk    = loadkit.StartWrk
	waitWrk     = loadkit.WaitWrk
)
