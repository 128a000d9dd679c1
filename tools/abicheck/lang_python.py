"""Python's ctypes declarations, read by importing the module and asking
ctypes (not by reading its text): function prototypes from the module's
_PROTOTYPES table {name: (restype, argtypes)} and from any foreign function
it holds with argtypes set, structs from its Structure subclasses (ctypes
gives their layout), constants from its int globals and IntEnum classes
and those of the package's other modules, and the error codes from a
BY_CODE {code: exception class} table.
"""

import ctypes
import enum
import importlib
import inspect
import importlib.util
import os
import pkgutil
import re
import sys

import model
from check import Binding, Struct
from textparse import read

_SIMPLE = {"b": "i8", "B": "u8", "h": "i16", "H": "u16", "i": "i32", "I": "u32",
           "q": "i64", "Q": "u64", "c": "char", "?": "bool", "f": "f32", "d": "f64"}


def ctype(t):
    if t is None:
        return model.VOID
    if isinstance(t, type) and issubclass(t, ctypes._Pointer):
        return model.ptr(ctype(t._type_))
    if isinstance(t, type) and issubclass(t, ctypes.Array):
        return ("array", ctype(t._type_), t._length_)
    if isinstance(t, type) and issubclass(t, (ctypes.Structure, ctypes.Union)):
        return ("struct", t.__name__)
    if isinstance(t, type) and issubclass(t, ctypes._CFuncPtr):
        return model.ptr(("fn", ctype(t._restype_), tuple(ctype(a) for a in t._argtypes_)))
    code = getattr(t, "_type_", None)
    if code in ("l", "L"):
        return ("int", ("i" if code == "l" else "u") + str(8 * ctypes.sizeof(t)))
    if code == "P":
        return model.ptr(model.VOID)
    if code == "z":
        return model.ptr(("int", "char"))
    if code in _SIMPLE:
        return ("int", _SIMPLE[code])
    raise ValueError("unknown ctypes type %r" % (t,))


def _load(path):
    """The module at path (a .py file, or a package's folder: its _lib)."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "_lib.py")
    folder, fname = os.path.split(path)
    if os.path.exists(os.path.join(folder, "__init__.py")):
        parent, package = os.path.split(folder)
        sys.path.insert(0, parent)
        return importlib.import_module(package + "." + fname[:-3]), package
    spec = importlib.util.spec_from_file_location("abicheck_" + fname[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # for inspect to find its source
    spec.loader.exec_module(mod)
    return mod, None


def extract(path):
    b = Binding("python")
    b.aliases = {("size_t", "u64")}  # ctypes.c_size_t is c_ulong, c_uint64 too
    mod, package = _load(path)
    where = os.path.relpath(mod.__file__)
    protos = dict(getattr(mod, "_PROTOTYPES", {}))
    for value in vars(mod).values():
        if isinstance(value, ctypes._CFuncPtr) and value.argtypes is not None \
                and value.__name__ not in protos:
            protos[value.__name__] = (value.restype, value.argtypes)
    for name, (res, args) in protos.items():
        b.functions[name] = (ctype(res), [("", ctype(a)) for a in args], where)
    if hasattr(mod, "has"):
        missing = [n for n in protos if not mod.has(n)]
        if missing:
            b.notes.append("not exported by the loaded library: " + " ".join(sorted(missing)))

    modules = [mod]
    if package:
        for info in pkgutil.iter_modules(sys.modules[package].__path__):
            try:
                modules.append(importlib.import_module(package + "." + info.name))
            except Exception as e:  # an optional framework's module
                b.notes.append("module %s not imported (%s)" % (info.name, e))
    # A call such as lib.gms_x(...) with no prototype behind it: ctypes would
    # pass and return C ints (a size_t or a pointer cut to 32 bits).
    for m in modules:
        text = read(m.__file__)
        for c in re.finditer(r"\.(gms_\w+)\s*\(", text):
            b.calls.setdefault(c.group(1), "%s:%d" % (os.path.relpath(m.__file__),
                                                      text.count("\n", 0, c.start()) + 1))
    for m in modules:
        mwhere = os.path.relpath(m.__file__)
        for name, value in vars(m).items():
            if isinstance(value, type) and value.__module__ != m.__name__:
                continue  # imported from elsewhere: seen there
            if isinstance(value, type) and issubclass(value, ctypes.Structure) \
                    and "_fields_" in vars(value):
                fields = [(f[0], ctype(f[1])) for f in value._fields_]
                layout = (ctypes.sizeof(value), ctypes.alignment(value),
                          [getattr(value, f).offset for f, _ in fields],
                          [getattr(value, f).size for f, _ in fields])
                line = inspect.getsourcelines(value)[1]
                b.structs[name] = Struct(name, fields, "%s:%d" % (mwhere, line), layout=layout)
            elif isinstance(value, type) and issubclass(value, enum.IntEnum):
                b.enums[name] = ([(e.name, int(e)) for e in value], mwhere)
            elif type(value) is int and name.isupper():
                b.constants.append((name, value, mwhere))
            elif name == "BY_CODE" and isinstance(value, dict):
                b.value_sets.append(("BY_CODE (error classes)", "GMS_E_", set(value), mwhere))
    return b
