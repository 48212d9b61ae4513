"""Griffe extensions for keras_stn's API reference (loaded by mkdocs.yml;
not part of the package).

`DoctestBlocks`: doctest examples become fenced code blocks. keras_stn's
docstrings follow Keras' style, an `Example:` line followed by
unindented `>>>` lines (so that `pytest --doctest-modules` runs them).
Markdown would render those lines as a paragraph, and read their output
(`[(2, 3), ...]`) as link references; fenced, they render as code.

`SymbolicOps`: `keras_stn.ops` publishes its functions wrapped so that they
also take `keras.Input` tensors (`affine_grid = _symbolic.symbolic(
_grids.affine_grid)`). Read statically, such a name is an attribute with no
docstring; this makes it an alias of the function it wraps, so that
`::: keras_stn.ops.affine_grid` shows that function's signature and
docstring under its public name, wherever the implementation lives.
"""

import ast

import griffe


def fence_doctests(text):
    r"""`text` with every run of doctest lines (a `>>>` line and the
    non-blank lines after it) between ```pycon fences.

    >>> fence_doctests("Example:\n>>> 1 + 1\n2\n\nEnd.").splitlines()
    ['Example:', '', '```pycon', '>>> 1 + 1', '2', '```', '', 'End.']
    """
    lines = text.splitlines()
    result = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.lstrip().startswith(">>>"):
            result.append(line)
            index += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if result and result[-1].strip():
            result.append("")
        result.append(f"{indent}```pycon")
        while index < len(lines) and lines[index].strip():
            result.append(lines[index])
            index += 1
        result.append(f"{indent}```")
        if index < len(lines):
            result.append("")
            index += 1
    return "\n".join(result)


# Google-style section headers; Griffe reads one as a section only after a
# blank line, which keras_stn's docstrings (as Keras') leave out.
SECTIONS = (
    "Args:",
    "Returns:",
    "Raises:",
    "Example:",
    "Examples:",
    "Attributes:",
    "Yields:",
    "Reference:",
    "Call arguments:",
)


def separate_sections(text):
    r"""`text` with a blank line before every section header, and Keras'
    `Call arguments:` (no Google section) as a bold title over a list.

    >>> print(separate_sections("Args:\n    a: x.\nReturns:\n    y."))
    Args:
        a: x.
    <BLANKLINE>
    Returns:
        y.
    >>> print(separate_sections("Call arguments:\n    a: x,\n        z."))
    **Call arguments:**
    <BLANKLINE>
    - `a`: x,
      z.
    """
    result = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if line.strip() not in SECTIONS or line != line.lstrip():
            result.append(line)
            continue
        if result and result[-1].strip():
            result.append("")
        if line.strip() != "Call arguments:":
            result.append(line)
            continue
        result += ["**Call arguments:**", ""]
        while index < len(lines) and lines[index].startswith("    "):
            item = lines[index]
            index += 1
            if item.startswith("     "):
                result.append("  " + item.strip())
                continue
            name, _, description = item.strip().partition(":")
            result.append(f"- `{name}`:{description}")
        if index < len(lines):
            result.append("")
    return "\n".join(result)


class DoctestBlocks(griffe.Extension):
    """Fences the doctest lines of every docstring Griffe reads, and puts
    a blank line before each section."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is None:
            return
        text = separate_sections(obj.docstring.value)
        obj.docstring.value = fence_doctests(text)


class SymbolicOps(griffe.Extension):
    """Makes `name = <...>.symbolic(<module>.<function>)` an alias of
    `<module>.<function>`."""

    def __init__(self):
        super().__init__()
        self._wrapped = []

    def on_attribute_instance(self, *, node, attr, **kwargs):
        value = getattr(node, "value", None)
        if not (
            isinstance(value, ast.Call)
            and _called_name(value.func) == "symbolic"
            and len(value.args) == 1
            and isinstance(value.args[0], ast.Attribute)
            and isinstance(value.args[0].value, ast.Name)
        ):
            return
        module = attr.parent
        imported = module.imports.get(value.args[0].value.id)
        if imported is None:
            return
        self._wrapped.append(
            (module, attr.name, f"{imported}.{value.args[0].attr}")
        )

    def on_package(self, *, pkg, **kwargs):
        for module, name, target in self._wrapped:
            if module.package is pkg:
                module.set_member(
                    name, griffe.Alias(name, target, parent=module)
                )


def _called_name(function):
    """The last name of a called expression: `symbolic` for both
    `symbolic(...)` and `_symbolic.symbolic(...)`."""
    if isinstance(function, ast.Attribute):
        return function.attr
    if isinstance(function, ast.Name):
        return function.id
    return None
