defmodule Gms.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    case Gms.Nif.load() do
      :ok -> :ok
      {:error, {:reload, _}} -> :ok
      {:error, {reason, text}} -> raise "gms: cannot load the NIF (#{reason}): #{text}"
    end

    Supervisor.start_link([Gms.Reaper], strategy: :one_for_one, name: Gms.Supervisor)
  end
end
