package sluice

/*
#include "shim.h"
*/
import "C"

// Code is a stable SLUICE_E* error code (negative).
type Code int

// The codes of SLUICE_ERRNO_MAP in sluice/common.h, in order. The test
// TestCodesMatchHeader keeps this list and the header in step.
const (
	CodeInvalid      Code = -1  // SLUICE_EINVAL: invalid argument
	CodeNoMemory     Code = -2  // SLUICE_ENOMEM: out of memory
	CodeVersion      Code = -3  // SLUICE_EVERSION: unsupported struct version
	CodeClosed       Code = -4  // SLUICE_ECLOSED: closed or shutting down
	CodeCanceled     Code = -5  // SLUICE_ECANCELED: operation canceled
	CodeTimedOut     Code = -6  // SLUICE_ETIMEDOUT: deadline expired
	CodeDeadlock     Code = -7  // SLUICE_EDEADLK: blocking call on the loop thread
	CodeAgain        Code = -8  // SLUICE_EAGAIN: not available now, try again
	CodeLimit        Code = -9  // SLUICE_ELIMIT: configured limit reached
	CodeState        Code = -10 // SLUICE_ESTATE: invalid state for this operation
	CodeRange        Code = -11 // SLUICE_ERANGE: value out of range
	CodeNotSupported Code = -12 // SLUICE_ENOTSUP: operation not supported
	CodeInternal     Code = -13 // SLUICE_EINTERNAL: internal error
	CodeUV           Code = -14 // SLUICE_EUV: event loop error
	CodeRejected     Code = -15 // SLUICE_EREJECTED: rejected by rate limit
	CodeFull         Code = -16 // SLUICE_EFULL: queue full
	CodeOpen         Code = -17 // SLUICE_EOPEN: circuit breaker open
	CodeBudget       Code = -18 // SLUICE_EBUDGET: retry budget exhausted
	CodeExhausted    Code = -19 // SLUICE_EEXHAUSTED: pool exhausted
	CodeUnreachable  Code = -20 // SLUICE_EUNREACHABLE: database unreachable
	CodeAmbiguous    Code = -21 // SLUICE_EAMBIGUOUS: statement sent, outcome unknown
	CodePG           Code = -22 // SLUICE_EPG: database server error
)

// codeNames is the binding's own copy of the names, so a sentinel needs no
// cgo call to exist; the tests check it against the library and the header.
var codeNames = map[Code]string{
	CodeInvalid:      "SLUICE_EINVAL",
	CodeNoMemory:     "SLUICE_ENOMEM",
	CodeVersion:      "SLUICE_EVERSION",
	CodeClosed:       "SLUICE_ECLOSED",
	CodeCanceled:     "SLUICE_ECANCELED",
	CodeTimedOut:     "SLUICE_ETIMEDOUT",
	CodeDeadlock:     "SLUICE_EDEADLK",
	CodeAgain:        "SLUICE_EAGAIN",
	CodeLimit:        "SLUICE_ELIMIT",
	CodeState:        "SLUICE_ESTATE",
	CodeRange:        "SLUICE_ERANGE",
	CodeNotSupported: "SLUICE_ENOTSUP",
	CodeInternal:     "SLUICE_EINTERNAL",
	CodeUV:           "SLUICE_EUV",
	CodeRejected:     "SLUICE_EREJECTED",
	CodeFull:         "SLUICE_EFULL",
	CodeOpen:         "SLUICE_EOPEN",
	CodeBudget:       "SLUICE_EBUDGET",
	CodeExhausted:    "SLUICE_EEXHAUSTED",
	CodeUnreachable:  "SLUICE_EUNREACHABLE",
	CodeAmbiguous:    "SLUICE_EAMBIGUOUS",
	CodePG:           "SLUICE_EPG",
}

// Sentinels for errors.Is: any *Error with the same Code matches.
var (
	ErrInvalid      = sentinel(CodeInvalid)
	ErrNoMemory     = sentinel(CodeNoMemory)
	ErrVersion      = sentinel(CodeVersion)
	ErrClosed       = sentinel(CodeClosed)
	ErrCanceled     = sentinel(CodeCanceled)
	ErrTimedOut     = sentinel(CodeTimedOut)
	ErrDeadlock     = sentinel(CodeDeadlock)
	ErrAgain        = sentinel(CodeAgain)
	ErrLimit        = sentinel(CodeLimit)
	ErrState        = sentinel(CodeState)
	ErrRange        = sentinel(CodeRange)
	ErrNotSupported = sentinel(CodeNotSupported)
	ErrInternal     = sentinel(CodeInternal)
	ErrUV           = sentinel(CodeUV)
	ErrRejected     = sentinel(CodeRejected)
	ErrFull         = sentinel(CodeFull)
	ErrOpen         = sentinel(CodeOpen)
	ErrBudget       = sentinel(CodeBudget)
	ErrExhausted    = sentinel(CodeExhausted)
	ErrUnreachable  = sentinel(CodeUnreachable)
	ErrAmbiguous    = sentinel(CodeAmbiguous)
	ErrPG           = sentinel(CodePG)
)

func sentinel(c Code) *Error { return &Error{Code: c, Name: codeNames[c]} }

// String is the code's name, "SLUICE_EINVAL"; the library's name for a code
// this binding does not know yet.
func (c Code) String() string {
	if n, ok := codeNames[c]; ok {
		return n
	}
	return C.GoString(C.sluice_err_name(C.int(c)))
}

// Description is the library's static text for the code ("invalid argument").
func (c Code) Description() string { return C.GoString(C.sluice_strerror(C.int(c))) }

// Error is a sluice failure: the code, its name and the detail message of
// the failing call (which option was bad, which handle was closed).
//
// A failed statement (Pool, Conn and Tx queries) also says which side of
// the wire it failed on: Sent is false when the statement never reached
// the server (ErrTimedOut, ErrExhausted, ErrUnreachable, ErrFull, a cancel
// while waiting: safe to run again), true when it did (ErrAmbiguous: the
// outcome is unknown and it may have committed; ErrPG: the server answered
// with SQLState). Retryable is the library's classification
// (sluice_pg_result_retryable with idempotent = 0).
type Error struct {
	Code    Code
	Name    string // "SLUICE_EINVAL"
	Message string // detail of this failure; "" for sentinels and bare statuses

	SQLState  string // five-character SQLSTATE of a server error (ErrPG), else ""
	Detail    string // the server's DETAIL, if any
	Hint      string // the server's HINT, if any
	Sent      bool   // the statement reached the server
	Retryable bool   // running it again is safe and may succeed

	cause error // e.g. the context error behind a cancellation

	// classified: Retryable is the library's classification of a
	// statement or an acquire (sluice_pg_result_retryable), which
	// DefaultClassify then follows; retryableIdem is that classification
	// for an idempotent statement, and idempotent says the statement was
	// flagged Idempotent.
	classified, retryableIdem, idempotent bool
}

func (e *Error) Error() string {
	s := "sluice: " + e.Name + " (" + e.Code.Description() + ")"
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.SQLState != "" {
		s += " (SQLSTATE " + e.SQLState + ")"
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

// Is matches any *Error of the same code, so errors.Is(err, ErrClosed) works
// whatever the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Unwrap gives the cause, e.g. context.Canceled for a Sleep whose context
// ended.
func (e *Error) Unwrap() error { return e.cause }

func newError(code Code, msg string) *Error {
	return &Error{Code: code, Name: code.String(), Message: msg}
}

// resultErr turns a wrapper's result into an error and frees the copied
// message.
func resultErr(r *C.sg_result) error {
	if r.rc >= 0 {
		return nil
	}
	msg := C.GoStringN(r.msg.ptr, C.int(r.msg.size))
	C.sluice_buf_free(&r.msg)
	return newError(Code(r.rc), msg)
}

// statusErr maps a completion status; callbacks carry no detail message.
func statusErr(status int) error {
	if status == 0 {
		return nil
	}
	return newError(Code(status), "")
}

// libName is sluice_err_name as the loaded library spells it (for tests).
func libName(c Code) string { return C.GoString(C.sluice_err_name(C.int(c))) }
