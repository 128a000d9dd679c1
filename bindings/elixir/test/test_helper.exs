:ok = Gms.Test.XlangPeer.load()

# The leak check: once every test process is gone, nothing the tests made
# may be left in gms: no live block, no context (each closes when its last
# term is collected), no share, and no block reclaimed as a leak at a
# context's close. test.sh counts the line printed here.
defmodule Gms.Test.LeakCheck do
  @keys [:live_blocks, :live_bytes, :contexts, :shares, :leaked_blocks, :leaked_bytes]

  # What is left in gms once every process has collected its garbage;
  # retried for a while, as processes of the last tests (a supervisor's
  # children, say) may still be on their way out.
  def left(rt, tries \\ 50) do
    for pid <- Process.list(), do: :erlang.garbage_collect(pid)
    Gms.drain_releases()
    {:ok, stats} = Gms.stats(rt)
    left = Map.take(stats, @keys)

    if tries > 0 and Enum.any?(left, fn {_, n} -> n != 0 end) do
      Process.sleep(20)
      left(rt, tries - 1)
    else
      {left, stats}
    end
  end
end

ExUnit.after_suite(fn _ ->
  {:ok, rt} = Gms.open()
  {left, stats} = Gms.Test.LeakCheck.left(rt)
  :ok = Gms.verify(rt)

  if Enum.all?(left, fn {_, n} -> n == 0 end) do
    IO.puts("gms leak check: clean (#{stats.allocs} allocations, #{stats.frees} frees)")
  else
    IO.puts("gms leak check: FAILED, left in gms: #{inspect(left)}")
    System.at_exit(fn _ -> System.halt(1) end)
  end
end)

ExUnit.start()
