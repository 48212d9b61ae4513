"""The benchmarks' comma-separated subset options (`--workloads mnist,cub`)."""


def add_subset_argument(parser, flag, names):
    """Adds `flag` taking a comma-separated subset of `names` (all by
    default)."""
    parser.add_argument(
        flag,
        default=",".join(names),
        help="comma-separated subset of: " + ", ".join(names),
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
