//! Checks the hand-written declarations against the installed C headers:
//! error codes, option versions, the set of functions, and every struct's
//! size and field offsets as the C compiler lays them out.
use std::collections::BTreeSet;
use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use sluice_sys::*;

fn include_dir() -> PathBuf {
    match std::env::var("SLUICE_PREFIX") {
        Ok(p) => PathBuf::from(p).join("include"),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../include"),
    }
}

fn header(name: &str) -> String {
    std::fs::read_to_string(include_dir().join("sluice").join(name)).expect("header")
}

#[test]
fn error_codes_match_the_errno_map() {
    let text = header("common.h");
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("XX(") {
            let mut parts = rest.split(',');
            let name = parts.next().unwrap().trim().to_string();
            let value: i32 = parts.next().unwrap().trim().parse().unwrap();
            found.push((value, name));
        }
    }
    let ours: Vec<(i32, String)> = SLUICE_ERRNO_MAP.iter().map(|(c, n)| (*c, n.to_string())).collect();
    assert_eq!(found, ours);
}

#[test]
fn every_function_of_the_headers_is_declared() {
    let mut in_headers = BTreeSet::new();
    for h in ["common.h", "op.h", "runtime.h"] {
        let text = header(h);
        for chunk in text.split("SLUICE_EXTERN").skip(1) {
            let before_paren = chunk.split('(').next().unwrap();
            let name = before_paren.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .filter(|s| !s.is_empty()).last().unwrap();
            // Declarations only: the macro's own definition is not one.
            if name.starts_with("sluice_") {
                in_headers.insert(name.to_string());
            }
        }
    }
    let declared: BTreeSet<String> = DECLARED.iter().map(|s| s.to_string()).collect();
    assert_eq!(in_headers, declared);
    assert!(header("runtime.h").contains(&format!(
        "#define SLUICE_RUNTIME_OPTIONS_VERSION {}", SLUICE_RUNTIME_OPTIONS_VERSION)));
}

#[test]
fn struct_layouts_match_the_c_compiler() {
    let dir = std::env::temp_dir().join(format!("sluice-sys-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    std::fs::write(&src, r#"
#include <stdio.h>
#include <stddef.h>
#include <sluice.h>
#define S(t) printf(#t " %zu\n", sizeof(t));
#define O(t, f) printf(#t "." #f " %zu\n", offsetof(t, f));
int main(void) {
  S(sluice_buf) O(sluice_buf, size)
  S(sluice_runtime_options) O(sluice_runtime_options, thread_name) O(sluice_runtime_options, lag_interval_ms)
  S(sluice_runtime_stats) O(sluice_runtime_stats, posted) O(sluice_runtime_stats, lag_mean_ns)
  O(sluice_runtime_stats, is_own_thread) O(sluice_runtime_stats, is_closed)
  S(sluice_memory_stats) O(sluice_memory_stats, jemalloc) O(sluice_memory_stats, allocated) O(sluice_memory_stats, arena)
  return 0;
}
"#).unwrap();
    let exe = dir.join("layout");
    let status = Command::new("cc").arg("-I").arg(include_dir()).arg(&src).arg("-o").arg(&exe)
        .status().expect("cc");
    assert!(status.success());
    let out = String::from_utf8(Command::new(&exe).output().unwrap().stdout).unwrap();
    let c: std::collections::HashMap<&str, usize> = out.lines()
        .map(|l| { let mut p = l.split(' '); (p.next().unwrap(), p.next().unwrap().parse().unwrap()) })
        .collect();
    let rust = [
        ("sluice_buf", size_of::<sluice_buf>()), ("sluice_buf.size", offset_of!(sluice_buf, size)),
        ("sluice_runtime_options", size_of::<sluice_runtime_options>()),
        ("sluice_runtime_options.thread_name", offset_of!(sluice_runtime_options, thread_name)),
        ("sluice_runtime_options.lag_interval_ms", offset_of!(sluice_runtime_options, lag_interval_ms)),
        ("sluice_runtime_stats", size_of::<sluice_runtime_stats>()),
        ("sluice_runtime_stats.posted", offset_of!(sluice_runtime_stats, posted)),
        ("sluice_runtime_stats.lag_mean_ns", offset_of!(sluice_runtime_stats, lag_mean_ns)),
        ("sluice_runtime_stats.is_own_thread", offset_of!(sluice_runtime_stats, is_own_thread)),
        ("sluice_runtime_stats.is_closed", offset_of!(sluice_runtime_stats, is_closed)),
        ("sluice_memory_stats", size_of::<sluice_memory_stats>()),
        ("sluice_memory_stats.jemalloc", offset_of!(sluice_memory_stats, jemalloc)),
        ("sluice_memory_stats.allocated", offset_of!(sluice_memory_stats, allocated)),
        ("sluice_memory_stats.arena", offset_of!(sluice_memory_stats, arena)),
    ];
    for (name, value) in rust {
        assert_eq!(c[name], value, "{name}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_loaded_library_names_the_same_codes() {
    for (code, name) in SLUICE_ERRNO_MAP {
        let got = unsafe { std::ffi::CStr::from_ptr(sluice_err_name(*code)) }.to_str().unwrap();
        assert_eq!(got, format!("SLUICE_{name}"));
    }
}
