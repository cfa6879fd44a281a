"""The ``course`` command: one entry point, one module per subcommand.

Each subcommand lives with the code it drives and is imported only when used, so
``course --help`` is instant and never touches the network.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "data": ("course_lib.data", "list, prepare and verify the datasets"),
    "run": ("course_lib.runner", "execute notebooks headlessly and gather RESULTS.md"),
    "bench": ("course_lib.bench", "benchmark the training engine against a tutorial-style pipeline"),
    "pretrain": ("course_lib.pretrain", "train the reference checkpoints the notebooks load"),
    "build": ("course_lib.grading.build", "generate exercises/ and solutions/ from the notebooks"),
    "refs": ("course_lib.reference_outputs", "store the outputs nbval checks (NBVAL_CHECK_OUTPUT cells) in notebooks/*.ipynb"),
    "grade": ("course_lib.grading.grade", "grade a folder of submissions with papermill"),
}


def usage() -> str:
    lines = ["usage: course COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<9} {doc}" for name, (_, doc) in COMMANDS.items()]
    lines += ["", "`course COMMAND --help` describes a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"course: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.cli(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
