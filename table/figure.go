package table

import (
	"fmt"
	"strconv"
	"strings"
)

// Figure is one thing a table can store and report about each key. The zero
// Figure is ConnCur.
type Figure int

// The figures, in their config order.
const (
	ConnCur      Figure = iota // connections open now (this process's only; not carried by snapshots)
	ConnCnt                    // connections opened, total
	ConnRate                   // connections opened over the period
	HTTPReqCnt                 // HTTP requests, total
	HTTPReqRate                // HTTP requests over the period
	HTTPErrCnt                 // HTTP errors (as counted by Entry.Error), total
	HTTPErrRate                // HTTP errors over the period
	BytesInRate                // bytes from the client over the period
	BytesOutRate               // bytes to the client over the period
	numFigures
)

var figureNames = [numFigures]string{
	ConnCur:      "conn_cur",
	ConnCnt:      "conn_cnt",
	ConnRate:     "conn_rate",
	HTTPReqCnt:   "http_req_cnt",
	HTTPReqRate:  "http_req_rate",
	HTTPErrCnt:   "http_err_cnt",
	HTTPErrRate:  "http_err_rate",
	BytesInRate:  "bytes_in_rate",
	BytesOutRate: "bytes_out_rate",
}

// Indexes of the total counters and of the rate counters inside an Entry.
const (
	cConn = iota
	cReq
	cErr
	numCounts
)

const (
	rConn = iota
	rReq
	rErr
	rIn
	rOut
	numRates
)

// countIndex and rateIndex map a Figure to its counter in an Entry, or -1.
var (
	countIndex = [numFigures]int8{-1, cConn, -1, cReq, -1, cErr, -1, -1, -1}
	rateIndex  = [numFigures]int8{-1, -1, rConn, -1, rReq, -1, rErr, rIn, rOut}
)

// String gives the figure's config name, such as "http_req_rate".
func (f Figure) String() string {
	if f >= 0 && f < numFigures {
		return figureNames[f]
	}
	return "Figure(" + strconv.Itoa(int(f)) + ")"
}

// ParseFigure is the inverse of Figure.String. Its error for an unknown name
// lists the valid ones.
func ParseFigure(s string) (Figure, error) {
	for f, name := range figureNames {
		if name == s {
			return Figure(f), nil
		}
	}
	return 0, fmt.Errorf("table: unknown figure %q (valid: %s)", s, strings.Join(figureNames[:], ", "))
}

// Figures returns every figure, in order. The slice is the caller's.
func Figures() []Figure {
	fs := make([]Figure, numFigures)
	for i := range fs {
		fs[i] = Figure(i)
	}
	return fs
}

// isRate reports whether f is a *_rate figure; isCount whether it is a
// total that snapshots carry.
func (f Figure) isRate() bool  { return f >= 0 && f < numFigures && rateIndex[f] >= 0 }
func (f Figure) isCount() bool { return f >= 0 && f < numFigures && countIndex[f] >= 0 }
