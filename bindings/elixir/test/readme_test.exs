defmodule Gms.ReadmeTest do
  use ExUnit.Case, async: true
  import ExUnit.CaptureIO

  # The README's Elixir example, between its elixir-example markers.
  @readme Path.expand("../../../README.md", __DIR__)
  @external_resource @readme

  test "the README's example runs and prints what the README says" do
    [_, block] =
      Regex.run(
        ~r/<!-- elixir-example:begin -->\n```elixir\n(.*?)```\n<!-- elixir-example:end -->/s,
        File.read!(@readme)
      )

    out = capture_io(fn -> Code.eval_string(block) end)
    assert out =~ "read back: hello, gms\n"
    assert out =~ "overflow:  out_of_bounds"
    assert out =~ "frozen:    hello, gms\n"
    assert out =~ "owner died: invalid_handle\n"
  end
end
