const gms = @import("gms");
export fn gms_zig_cross_version() u32 {
    return @intCast(gms.version().minor);
}
