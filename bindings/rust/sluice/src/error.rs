//! sluice's error codes as a Rust error with a kind per code.
use std::ffi::CStr;
use std::fmt;
use std::os::raw::c_int;

use sluice_sys as sys;

/// What went wrong, one variant per `SLUICE_E*` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    Invalid, NoMemory, Version, Closed, Canceled, TimedOut, Deadlock, Again, Limit, State, Range,
    NotSupported, Internal, EventLoop, Rejected, Full, Open, Budget, Exhausted, Unreachable,
    Ambiguous, Pg,
    /// A code this version of the binding does not know.
    Other(i32),
}

impl ErrorKind {
    /// The kind of a (negative) sluice code.
    pub fn from_code(code: i32) -> ErrorKind {
        use ErrorKind::*;
        const KINDS: [ErrorKind; 22] = [Invalid, NoMemory, Version, Closed, Canceled, TimedOut, Deadlock,
            Again, Limit, State, Range, NotSupported, Internal, EventLoop, Rejected, Full, Open, Budget,
            Exhausted, Unreachable, Ambiguous, Pg];
        if (-22..=-1).contains(&code) { KINDS[(-code - 1) as usize] } else { Other(code) }
    }
}

/// A sluice failure: its code, the code's name and the library's detail.
/// A failed query also carries the server's SQLSTATE, detail and hint,
/// whether the statement reached the server (`sent`) and whether running
/// it again is safe (`retryable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: i32,
    message: String,
    query: Option<Box<QueryFailure>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct QueryFailure {
    sqlstate: String,
    detail: String,
    hint: String,
    sent: bool,
    retryable: bool,
}

impl Error {
    /// An error for `code` with the detail of the last failing call on this
    /// thread (read right after the call, on the same thread).
    pub(crate) fn last(code: c_int) -> Error {
        let msg = unsafe { CStr::from_ptr(sys::sluice_error_message()) };
        Error { code, message: msg.to_string_lossy().into_owned(), query: None }
    }

    /// An error for `code` with a message of our own.
    pub fn new(code: i32, message: impl Into<String>) -> Error {
        Error { code, message: message.into(), query: None }
    }

    /// The error of a failed query, from its result.
    pub(crate) fn from_result(code: i32, r: *const sys::sluice_pg_result, idempotent: bool) -> Error {
        let text = |p: *const std::os::raw::c_char| {
            if p.is_null() { String::new() } else { unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned() }
        };
        unsafe {
            Error {
                code,
                message: text(sys::sluice_pg_result_message(r)),
                query: Some(Box::new(QueryFailure {
                    sqlstate: text(sys::sluice_pg_result_sqlstate(r)),
                    detail: text(sys::sluice_pg_result_detail(r)),
                    hint: text(sys::sluice_pg_result_hint(r)),
                    sent: sys::sluice_pg_result_sent(r) != 0,
                    retryable: sys::sluice_pg_result_retryable(r, idempotent as i32) != 0,
                })),
            }
        }
    }

    /// The server's five-character SQLSTATE (`ErrorKind::Pg`), else None.
    pub fn sqlstate(&self) -> Option<&str> {
        self.query.as_ref().map(|q| q.sqlstate.as_str()).filter(|s| !s.is_empty())
    }
    /// The server's DETAIL line, else "".
    pub fn detail(&self) -> &str { self.query.as_ref().map_or("", |q| &q.detail) }
    /// The server's HINT line, else "".
    pub fn hint(&self) -> &str { self.query.as_ref().map_or("", |q| &q.hint) }
    /// True if the statement reached the server, so a failure may have had
    /// effects (always true for `Pg` and `Ambiguous`). False for errors not
    /// from a query.
    pub fn sent(&self) -> bool { self.query.as_ref().is_some_and(|q| q.sent) }
    /// True for the error of a query (it carries the server's fields).
    pub(crate) fn is_query_error(&self) -> bool { self.query.is_some() }

    /// True if running the statement again is safe and may succeed
    /// (`sluice_pg_result_retryable`, with the query's idempotent flag).
    /// Errors that are not from a query: false.
    pub fn retryable(&self) -> bool { self.query.as_ref().is_some_and(|q| q.retryable) }

    pub fn code(&self) -> i32 { self.code }
    pub fn kind(&self) -> ErrorKind { ErrorKind::from_code(self.code) }
    /// "SLUICE_ETIMEDOUT" and so on.
    pub fn name(&self) -> &'static str {
        unsafe { CStr::from_ptr(sys::sluice_err_name(self.code)) }.to_str().unwrap_or("SLUICE_EUNKNOWN")
    }
    pub fn message(&self) -> &str { &self.message }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = if self.message.is_empty() {
            unsafe { CStr::from_ptr(sys::sluice_strerror(self.code)) }.to_string_lossy().into_owned()
        } else {
            self.message.clone()
        };
        write!(f, "{}: {}", self.name(), text)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn check(rc: c_int) -> Result<()> {
    if rc == 0 { Ok(()) } else { Err(Error::last(rc)) }
}
