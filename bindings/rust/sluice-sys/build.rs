// Finds libsluice: $SLUICE_PREFIX/lib, else `pkg-config --libs sluice`.
use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SLUICE_PREFIX");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if let Ok(prefix) = env::var("SLUICE_PREFIX") {
        println!("cargo:rustc-link-search=native={prefix}/lib");
        println!("cargo:include={prefix}/include");
    } else if let Ok(out) = Command::new("pkg-config").args(["--libs-only-L", "sluice"]).output() {
        for flag in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Some(dir) = flag.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            }
        }
    }
    println!("cargo:rustc-link-lib=dylib=sluice");
}
