defmodule Mix.Tasks.Compile.GmsNif do
  @shortdoc "Compiles the gms NIF (c_src/gms_nif.c) into priv/gms_nif.so"
  @moduledoc """
  Builds `priv/gms_nif.so` from `c_src/gms_nif.c` with the system's C
  compiler (`CC`, else `cc`), against libgms found in this order:

    * `GMS_LIB_DIR` (and `GMS_INCLUDE_DIR`, default `GMS_LIB_DIR/../include`):
      a build tree, linked with a run path to it;
    * pkg-config's `gms` package, linked with a run path to its libdir.

  `GMS_NIF_CFLAGS` adds compiler flags (a sanitizer, say). Rebuilds when a
  source or gms.h is newer than the library. Extra C files
  (the project's `gms_nif: [extra: [{source, output}]]`, for test peers)
  are built the same way into the build path.
  """
  use Mix.Task.Compiler

  @cflags ~w(-std=c11 -O2 -g -fPIC -shared -Wall -Wextra -Werror -fvisibility=hidden)

  @impl true
  def run(args) do
    force = "--force" in args
    config = Mix.Project.config()[:gms_nif] || []
    flags = gms_flags()

    headers = [
      Path.join(flags.include, "gms.h") | Path.wildcard(Path.join(flags.include, "gms/*.h"))
    ]

    extra =
      for {source, output} <- Keyword.get(config, :extra, []),
          do: {source, Path.join(Mix.Project.build_path(), output)}

    results =
      for {source, output} <- [{"c_src/gms_nif.c", "priv/gms_nif.so"} | extra] do
        build(source, output, headers, flags, force)
      end

    # Links (or copies) priv/ into the build: Mix did so before this
    # compiler ran only if priv/ already existed, as it does not in a fresh
    # checkout.
    Mix.Project.build_structure()
    if Enum.all?(results, &(&1 == :noop)), do: {:noop, []}, else: {:ok, []}
  end

  defp build(source, output, headers, flags, force) do
    if force or Mix.Utils.stale?([source | headers], [output]) do
      File.mkdir_p!(Path.dirname(output))

      extra = String.split(System.get_env("GMS_NIF_CFLAGS", ""))

      args =
        @cflags ++
          extra ++
          ["-I", erts_include(), "-I", flags.include, "-o", output, source] ++ flags.libs

      cc = System.get_env("CC", "cc")
      Mix.shell().info("gms_nif: #{cc} #{source} -> #{output}")

      case System.cmd(cc, args, stderr_to_stdout: true) do
        {_, 0} -> :ok
        {out, _} -> Mix.raise("gms_nif: compiling #{source} failed:\n" <> out)
      end
    else
      :noop
    end
  end

  defp erts_include do
    Path.join([:code.root_dir(), "erts-#{:erlang.system_info(:version)}", "include"])
  end

  defp gms_flags do
    case System.get_env("GMS_LIB_DIR") do
      dir when dir not in [nil, ""] ->
        dir = Path.expand(dir)
        include = System.get_env("GMS_INCLUDE_DIR") || Path.join(dir, "../include")
        %{include: Path.expand(include), libs: ["-L#{dir}", "-Wl,-rpath,#{dir}", "-lgms"]}

      _ ->
        libdir = pkg_config(["--variable=libdir", "gms"])
        include = pkg_config(["--variable=includedir", "gms"])
        libs = String.split(pkg_config(["--libs", "gms"]))
        %{include: include, libs: libs ++ ["-Wl,-rpath,#{libdir}"]}
    end
  end

  defp pkg_config(args) do
    case System.cmd("pkg-config", args, stderr_to_stdout: true) do
      {out, 0} ->
        String.trim(out)

      {out, _} ->
        Mix.raise(
          "gms_nif: libgms not found: set GMS_LIB_DIR to a build tree or install gms " <>
            "where pkg-config finds it (#{String.trim(out)})"
        )
    end
  rescue
    e in ErlangError -> Mix.raise("gms_nif: cannot run pkg-config: #{inspect(e.original)}")
  end
end
