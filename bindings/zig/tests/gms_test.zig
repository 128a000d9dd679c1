const std = @import("std");
const gms = @import("gms");

test "version" {
    try std.testing.expectEqual(@as(usize, 0), gms.version().major);
}
