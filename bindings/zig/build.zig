//! The `gms` package: a Zig module over libgms's C API (include/gms.h).
//!
//! libgms is found through pkg-config (`gms.pc`, installed by
//! `cmake --install`), or where -Dgms-include-dir and -Dgms-lib-dir say:
//!
//!     zig build test -Dgms-include-dir=../../include -Dgms-lib-dir=../../build
//!
//! A package that depends on this one passes the same options through
//! `b.dependency("gms", .{ .@"gms-lib-dir" = ... })`, or none to use pkg-config.
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const include_dir = b.option([]const u8, "gms-include-dir", "Directory holding gms.h (default: pkg-config gms)");
    const lib_dir = b.option([]const u8, "gms-lib-dir", "Directory holding libgms.so (default: pkg-config gms)");

    // The C declarations come from the header itself, so they cannot drift
    // from it: gms.h and gms/testing.h (the fail_nth_call knob of the tests).
    const translate = b.addTranslateC(.{
        .root_source_file = b.path("src/c.h"),
        .target = target,
        .optimize = optimize,
    });
    if (include_dir) |dir| {
        translate.addIncludePath(.{ .cwd_relative = dir });
    } else {
        // pkg-config's cflags give the include directory; .force makes a
        // missing gms.pc an error that names it.
        translate.linkSystemLibrary("gms", .{ .use_pkg_config = .force });
    }

    const mod = b.addModule("gms", .{
        .root_source_file = b.path("src/gms.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
        .imports = &.{.{ .name = "gms_c", .module = translate.createModule() }},
    });
    if (lib_dir) |dir| {
        mod.addLibraryPath(.{ .cwd_relative = dir });
        // Programs find libgms where they were linked against it, so a build
        // tree or a private prefix needs no LD_LIBRARY_PATH.
        mod.addRPath(.{ .cwd_relative = dir });
        mod.linkSystemLibrary("gms", .{ .use_pkg_config = .no });
    } else {
        mod.linkSystemLibrary("gms", .{ .use_pkg_config = .force });
    }

    // `zig build test`: the binding's tests, run by a runner that prints the
    // plain "N passed, N failed" line CI reads.
    const tests = b.addTest(.{
        .root_module = b.createModule(.{
            .root_source_file = b.path("tests/gms_test.zig"),
            .target = target,
            .optimize = optimize,
            .imports = &.{.{ .name = "gms", .module = mod }},
        }),
        .test_runner = .{ .path = b.path("tests/runner.zig"), .mode = .simple },
    });
    const run_tests = b.addRunArtifact(tests);
    run_tests.stdio = .inherit;
    b.step("test", "Run the binding's tests").dependOn(&run_tests.step);

    // `zig build cross`: a shared library of C-ABI functions written with the
    // binding, which tests/cross/test_cross.py loads next to the Python
    // package to pass buffers between the two languages in one process.
    const cross = b.addLibrary(.{
        .name = "gms_zig_cross",
        .linkage = .dynamic,
        .root_module = b.createModule(.{
            .root_source_file = b.path("tests/cross/lib.zig"),
            .target = target,
            .optimize = optimize,
            .imports = &.{.{ .name = "gms", .module = mod }},
        }),
    });
    b.step("cross", "Build the cross-language test's shared library")
        .dependOn(&b.addInstallArtifact(cross, .{}).step);
}
