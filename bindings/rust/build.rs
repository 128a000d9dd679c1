//! Finds libgms and links the crate against it (dynamically, so that every
//! language in a process shares one libgms and its process-wide runtime).
//!
//! In order: the folder named by `GMS_LIB_DIR`; the `libdir` of the `gms`
//! pkg-config package (what `cmake --install` puts there); else libgms is
//! built with CMake from the source tree this crate sits in
//! (`bindings/rust` of the gms repository) into `OUT_DIR`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GMS_LIB_DIR");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let dir = match env::var_os("GMS_LIB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => pkg_config_libdir().unwrap_or_else(build_from_source),
    };
    if !dir.join("libgms.so").exists() {
        panic!("gms: no libgms.so in {}", dir.display());
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=gms");
    // This crate's own tests, examples and doc tests find it without
    // LD_LIBRARY_PATH. A dependent crate gets no rpath from here (Cargo
    // passes link arguments of a build script to its own package only):
    // `cargo run` and `cargo test` find a libgms built into OUT_DIR, and
    // one installed in a folder the loader does not search needs
    // LD_LIBRARY_PATH, or DEP_GMS_LIB_DIR in the dependent's build script.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    println!("cargo:lib_dir={}", dir.display());
}

/// `pkg-config --variable=libdir gms`, when pkg-config and the package exist.
fn pkg_config_libdir() -> Option<PathBuf> {
    let out = Command::new("pkg-config").args(["--variable=libdir", "gms"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?;
    let dir = PathBuf::from(dir.trim());
    dir.join("libgms.so").exists().then_some(dir)
}

/// Builds only the shared library, with CMake, from the repository around
/// this crate.
fn build_from_source() -> PathBuf {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    if !root.join("CMakeLists.txt").exists() || !root.join("include/gms.h").exists() {
        panic!(
            "gms: libgms not found. Set GMS_LIB_DIR to the folder holding libgms.so, \
             install gms where pkg-config finds it (PKG_CONFIG_PATH), or build this crate \
             from the gms source tree (bindings/rust)."
        );
    }
    for path in ["CMakeLists.txt", "include", "src", "cmake", "gms.pc.in"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let build = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("libgms");
    run(Command::new("cmake").arg("-S").arg(&root).arg("-B").arg(&build).args([
        "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
        "-DBUILD_TESTING=OFF",
        "-DGMS_PYTHON_PLUGIN=OFF",
    ]));
    let jobs = env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
    run(Command::new("cmake").arg("--build").arg(&build).args(["--target", "gms", "-j", &jobs]));
    build
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("gms: cannot run {:?} (is CMake installed?): {e}", cmd.get_program()));
    if !status.success() {
        panic!("gms: {cmd:?} failed ({status})");
    }
}
