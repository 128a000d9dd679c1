# The tests build against the package's own sources.
switch("path", thisDir() & "/../src")
