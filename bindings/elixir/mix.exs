defmodule Gms.MixProject do
  use Mix.Project

  def project do
    [
      app: :gms,
      version: "0.1.0",
      elixir: "~> 1.14",
      # The NIF (c_src/gms_nif.c) is built by the project's own compiler,
      # Mix.Tasks.Compile.GmsNif (lib/mix/tasks), after the Elixir sources.
      compilers: Mix.compilers() ++ [:gms_nif],
      gms_nif: gms_nif(Mix.env()),
      elixirc_paths: elixirc_paths(Mix.env()),
      start_permanent: Mix.env() == :prod,
      deps: []
    ]
  end

  def application do
    [mod: {Gms.Application, []}, extra_applications: [:logger]]
  end

  # In tests, a small C library that uses gms on its own (the
  # cross-language test's peer) is built too.
  defp gms_nif(:test), do: [extra: [{"test/support/xlang_peer.c", "gms_xlang_peer.so"}]]
  defp gms_nif(_), do: []

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]
end
