// Finds libgmtrack (std only: no pkg-config or cc crate).
//
//  1. GMTRACK_LIB_DIR=<dir holding libgmtrack.so>     (and optionally
//     GMTRACK_INCLUDE_DIR=<dir holding gmtrack/rcu.h>), else
//  2. `pkg-config gmtrack` (honours PKG_CONFIG_PATH), else
//  3. the linker's default search path (a /usr install, the Debian package).
//
// GMTRACK_STATIC=1 links libgmtrack.a (and liburcu-memb) instead of the .so.
// GMTRACK_RCU_EXTERN=1/0 forces the RCU read-lock symbol names (see
// src/sys.rs); by default they follow the rcu.h found.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn pkg_config(args: &[&str]) -> Option<String> {
    let out = Command::new(env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into()))
        .args(args)
        .arg("gmtrack")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    for v in ["GMTRACK_LIB_DIR", "GMTRACK_INCLUDE_DIR", "GMTRACK_STATIC", "GMTRACK_RCU_EXTERN", "PKG_CONFIG_PATH"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(gmtrack_rcu_extern)");

    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let mut lib_dir: Option<PathBuf> = env::var_os("GMTRACK_LIB_DIR").map(PathBuf::from);
    let mut include_dir: Option<PathBuf> = env::var_os("GMTRACK_INCLUDE_DIR").map(PathBuf::from);

    let mut found = lib_dir.is_some();
    if !found {
        // --libs-only-L / --cflags-only-I honour PKG_CONFIG_SYSROOT_DIR; both
        // are empty for a /usr install (the linker's default path).
        if let Some(libs) = pkg_config(&["--libs-only-L"]) {
            found = true;
            lib_dir = libs.split_whitespace().find_map(|t| t.strip_prefix("-L")).map(PathBuf::from);
            if include_dir.is_none() {
                include_dir = pkg_config(&["--cflags-only-I"])
                    .and_then(|c| c.split_whitespace().find_map(|t| t.strip_prefix("-I")).map(PathBuf::from))
                    .or_else(|| Some(PathBuf::from("/usr/include")).filter(|d| d.join("gmtrack/rcu.h").exists()));
            }
        }
    }
    // In the source tree, the headers next to the crate match the library
    // built from the same tree.
    if include_dir.is_none() {
        let tree = manifest.join("../../include");
        if tree.join("gmtrack/rcu.h").exists() {
            include_dir = Some(tree);
        }
    }

    let statik = env::var("GMTRACK_STATIC").map(|v| v == "1").unwrap_or(false);
    if let Some(dir) = &lib_dir {
        println!("cargo:rustc-link-search=native={}", dir.display());
        // Tests, examples and binaries of this package find the .so without
        // LD_LIBRARY_PATH (outside the usual system directories).
        if !statik && !is_system_dir(dir) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
    if statik {
        println!("cargo:rustc-link-lib=static=gmtrack");
        println!("cargo:rustc-link-lib=dylib=urcu-memb");
        println!("cargo:rustc-link-lib=dylib=urcu-common");
        println!("cargo:rustc-link-lib=dylib=pthread");
    } else {
        println!("cargo:rustc-link-lib=dylib=gmtrack");
    }

    // Which names the RCU read-side entry points have (src/sys.rs).
    let rcu_extern = match env::var("GMTRACK_RCU_EXTERN").ok().as_deref() {
        Some("1") => true,
        Some("0") => false,
        _ => include_dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("gmtrack/rcu.h")).ok())
            .map(|h| h.contains("gm_rcu_read_lock_extern"))
            .unwrap_or(false),
    };
    if rcu_extern {
        println!("cargo:rustc-cfg=gmtrack_rcu_extern");
    }
    if let Some(d) = &include_dir {
        println!("cargo:rerun-if-changed={}", d.join("gmtrack/rcu.h").display());
        // tests/layout.rs compiles tests/layout.c against these headers.
        println!("cargo:rustc-env=GMTRACK_INCLUDE_DIR={}", d.display());
    }
    if !found {
        println!("cargo:warning=gmtrack: no GMTRACK_LIB_DIR and no pkg-config gmtrack: linking -lgmtrack from the default path");
    }
}

fn is_system_dir(dir: &Path) -> bool {
    ["/usr/lib", "/lib", "/usr/lib64", "/lib64"].iter().any(|s| dir == Path::new(s))
        || dir.starts_with("/usr/lib/x86_64-linux-gnu")
        || dir.starts_with("/usr/lib/aarch64-linux-gnu")
}
