:ok = Gms.Test.XlangPeer.load()

# The leak check: once every test process is gone, nothing the tests made
# may be left in gms: no live block, no context (each closes when its last
# term is collected), no share, and no block reclaimed as a leak at a
# context's close. test.sh counts the line printed here.
ExUnit.after_suite(fn _ ->
  for pid <- Process.list(), do: :erlang.garbage_collect(pid)
  Gms.drain_releases()
  {:ok, rt} = Gms.open()
  {:ok, stats} = Gms.stats(rt)
  :ok = Gms.verify(rt)
  left = Map.take(stats, [:live_blocks, :live_bytes, :contexts, :shares, :leaked_blocks, :leaked_bytes])

  if Enum.all?(left, fn {_, n} -> n == 0 end) do
    IO.puts("gms leak check: clean (#{stats.allocs} allocations, #{stats.frees} frees)")
  else
    IO.puts("gms leak check: FAILED, left in gms: #{inspect(left)}")
    System.at_exit(fn _ -> System.halt(1) end)
  end
end)

ExUnit.start()
