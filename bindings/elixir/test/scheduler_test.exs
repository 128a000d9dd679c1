defmodule Gms.SchedulerTest do
  # Work that grows with a buffer's size must not hold a normal scheduler:
  # the system monitor reports any process that ran uninterrupted on one
  # for longer than @limit_ms (time on a dirty scheduler does not count;
  # a copy of 128 MiB on a normal one takes some 200 ms here).
  use ExUnit.Case, async: false
  import Bitwise
  import Gms.Test.Helpers

  @size 128 <<< 20
  @limit_ms 50

  test "large copies, scrubs and hashes run off the normal schedulers" do
    %{rt: rt, ctx: ctx, tenant: tenant} = setup_context("sched")
    other = Gms.context!(rt, tenant: unique_tenant("sched-other"), user: "bob")
    data = :binary.copy(<<7>>, @size)
    me = self()
    # The monitor's messages go to a process of their own: the BEAM sends
    # a process none about itself.
    collector =
      spawn_link(fn ->
        receive do
          :report -> send(me, {:long, Process.info(self(), :messages)})
        end
      end)

    previous = :erlang.system_monitor(collector, [{:long_schedule, @limit_ms}])

    owner =
      try do
        buf = Gms.alloc!(ctx, @size, zero: true)
        :ok = Gms.write(buf, 0, data)
        # (Only its size is checked: comparing 128 MiB binaries is itself
        # a long stretch on a normal scheduler.)
        {:ok, back} = Gms.read(buf, 0, @size)
        @size = byte_size(back)
        :ok = Gms.fill(buf, 0, 1, @size)
        {:ok, moved} = Gms.transfer_to(buf, other)
        {:ok, _id} = Gms.share(moved, grants: [[]], immutable: true)
        :ok = Gms.free(moved)
        # Released by a destructor and by a dead owner's down callback: the
        # BEAM runs these outside the processes timed here, so this checks
        # only that they release (large buffers go to the releaser thread).
        dropped = fn -> Gms.alloc!(ctx, @size) end
        _ = dropped.()
        :erlang.garbage_collect()
        {owner, ref} = spawn_monitor(fn -> Gms.alloc!(ctx, @size) end)
        assert_receive {:DOWN, ^ref, :process, ^owner, _}, 5_000
        assert live_blocks_settle(rt, tenant, 0) == 0
        owner
      after
        restore(previous)
      end

    send(collector, :report)
    assert_receive {:long, {:messages, messages}}, 5_000
    # Only this test's processes: others (the code server loading a module,
    # say) may run long for reasons of their own.
    ours = for {:monitor, pid, :long_schedule, info} <- messages, pid in [me, owner], do: info
    assert ours == []
  end

  defp restore(:undefined), do: :erlang.system_monitor(:undefined)
  defp restore({pid, opts}), do: :erlang.system_monitor(pid, opts)
end
