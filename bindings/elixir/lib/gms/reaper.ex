defmodule Gms.Reaper do
  @moduledoc """
  The BEAM's side of gms's memory pressure callback.

  When an allocation of any language in the process finds the memory or the
  tenant's quota short, gms calls its pressure callbacks; the NIF's sends
  this process `{:gms_pressure, token, caller, tenant, {bytes, reason}}`.
  The reaper then

    * sends `{:gms_pressure, %{tenant: ..., bytes_wanted: ..., reason: ...}}`
      to every process subscribed with `Gms.subscribe_pressure/0`, which may
      drop caches of their own;
    * collects garbage in every process but the allocating one (which is
      inside the NIF: `Gms.alloc/3` collects it itself), so buffers that
      only garbage still refers to are freed by their destructors;
    * tells the NIF it is done, and the waiting allocation retries.

  Started by the `:gms` application's supervisor.
  """
  use GenServer

  # How long the reaper waits for the collections it asked for.
  @collect_timeout 1_000

  @doc false
  def start_link(_opts), do: GenServer.start_link(__MODULE__, nil, name: __MODULE__)

  @doc false
  @spec subscribe(pid()) :: :ok
  def subscribe(pid), do: GenServer.call(__MODULE__, {:subscribe, pid})

  @doc false
  @spec unsubscribe(pid()) :: :ok
  def unsubscribe(pid), do: GenServer.call(__MODULE__, {:unsubscribe, pid})

  @impl true
  def init(nil) do
    :ok = Gms.Nif.set_reaper(self())
    {:ok, %{}}
  end

  @impl true
  def handle_call({:subscribe, pid}, _from, subscribers) do
    if Map.has_key?(subscribers, pid) do
      {:reply, :ok, subscribers}
    else
      {:reply, :ok, Map.put(subscribers, pid, Process.monitor(pid))}
    end
  end

  def handle_call({:unsubscribe, pid}, _from, subscribers) do
    {ref, subscribers} = Map.pop(subscribers, pid)
    if ref, do: Process.demonitor(ref, [:flush])
    {:reply, :ok, subscribers}
  end

  @impl true
  def handle_info({:gms_pressure, token, caller, tenant, {bytes, reason}}, subscribers) do
    event = %{tenant: tenant, bytes_wanted: bytes, reason: reason}
    for pid <- Map.keys(subscribers), do: send(pid, {:gms_pressure, event})
    collect_all_but(caller)
    :ok = Gms.Nif.pressure_done(token)
    {:noreply, subscribers}
  end

  def handle_info({:DOWN, _ref, :process, pid, _reason}, subscribers) do
    {:noreply, Map.delete(subscribers, pid)}
  end

  def handle_info(_other, subscribers), do: {:noreply, subscribers}

  # Asks every process but `caller` to collect, all at once, and waits for
  # their answers (a process inside a long NIF answers late: not waited for).
  defp collect_all_but(caller) do
    ref = make_ref()
    pids = for pid <- Process.list(), pid != caller, pid != self(), do: pid
    asked = Enum.count(pids, &(:erlang.garbage_collect(&1, async: ref, type: :major) == :async))
    :erlang.garbage_collect()
    deadline = System.monotonic_time(:millisecond) + @collect_timeout
    await_collections(ref, asked, deadline)
  end

  defp await_collections(_ref, 0, _deadline), do: :ok

  defp await_collections(ref, left, deadline) do
    wait = max(deadline - System.monotonic_time(:millisecond), 0)

    receive do
      {:garbage_collect, ^ref, _} -> await_collections(ref, left - 1, deadline)
    after
      wait -> :ok
    end
  end
end
