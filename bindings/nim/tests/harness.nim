## A small test runner: `test` runs a body and counts it as passed or
## failed; `expect` checks that a body raises a given GmsError subtype with
## libgms's code and a message; `summary` prints the closing line CI reads.

import std/strutils
import gms

var passed, failed: int

template test*(title: string, body: untyped) =
  try:
    block:
      body
    inc passed
  except CatchableError, AssertionDefect:
    let e = getCurrentException()
    inc failed
    echo "FAIL ", title, ": ", e.name, ": ", e.msg
    echo e.getStackTrace()

template expect*(E: typedesc, wanted: int, body: untyped) =
  ## body must raise E (a GmsError) with this code and a message.
  var raised = false
  try:
    body
  except E as e:
    raised = true
    doAssert e.code == wanted, "code " & $e.code & ", not " & $wanted
    doAssert e.msg.len > 0, "no message"
  doAssert raised, "no " & $E & " raised"

proc summary*(): int =
  ## Prints "N passed, N failed"; the exit status for the run.
  echo passed, " passed, ", failed, " failed"
  if failed == 0: 0 else: 1

proc contains*(lines: seq[string], part: string): bool =
  for line in lines:
    if part in line:
      return true
