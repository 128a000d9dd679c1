defmodule Gms.Test.Helpers do
  @moduledoc false
  # A tenant of its own per test, so tests running at once do not see each
  # other in the tenant's statistics.
  def unique_tenant(prefix), do: "#{prefix}-#{System.unique_integer([:positive])}"

  def setup_context(tenant_prefix) do
    rt = Gms.open!()
    tenant = unique_tenant(tenant_prefix)
    ctx = Gms.context!(rt, tenant: tenant, user: "tester")
    %{rt: rt, ctx: ctx, tenant: tenant}
  end

  def live_blocks(rt, tenant) do
    Gms.drain_releases()
    {:ok, %{live_blocks: n}} = Gms.tenant_stats(rt, tenant)
    n
  end

  # The tenant's live blocks once they reach `want`, or what they are
  # after a second: a dead owner's down callback runs on another
  # scheduler, and may come a moment after its DOWN message.
  def live_blocks_settle(rt, tenant, want, tries \\ 100) do
    case live_blocks(rt, tenant) do
      ^want -> want
      n when tries == 0 -> n
      _ -> Process.sleep(10) && live_blocks_settle(rt, tenant, want, tries - 1)
    end
  end

  # Waits for a process to be gone (its monitors have fired once it is).
  def kill_and_wait(pid) do
    ref = Process.monitor(pid)
    Process.exit(pid, :kill)

    receive do
      {:DOWN, ^ref, :process, ^pid, _} -> :ok
    after
      5_000 -> raise "#{inspect(pid)} did not die"
    end
  end
end
