"""The benchmarks' shared options: comma-separated subsets (`--workloads
mnist,cub`) and per-workload defaults (`--repeats`)."""


def add_subset_argument(parser, flag, names, default=None, note=""):
    """Adds `flag` taking a comma-separated subset of `names`.

    Args:
        default: the names selected without the flag (all by default).
        note: text appended to the help, e.g. what the default leaves out.
    """
    parser.add_argument(
        flag,
        default=",".join(names if default is None else default),
        help="comma-separated subset of: " + ", ".join(names) + note,
    )


def parse_subset(parser, value, names, what):
    """The items of a comma-separated `value`; stops with the valid names
    when one is unknown or none is given."""
    items = [item.strip() for item in value.split(",") if item.strip()]
    unknown = [item for item in items if item not in names]
    if unknown or not items:
        parser.error(
            f"unknown {what} {unknown}; choose from: " + ", ".join(names)
        )
    return items


def per_workload(table, index):
    """`"mnist 5, backbone 3"`: entry `index` of each workload's tuple."""
    return ", ".join(f"{name} {row[index]}" for name, row in table.items())


def add_per_workload_int(parser, flag, what, table, index):
    """Adds an int option whose default (None) is each workload's own,
    entry `index` of its tuple in `table`."""
    parser.add_argument(
        flag,
        type=int,
        default=None,
        help=f"{what} (default: {per_workload(table, index)})",
    )
