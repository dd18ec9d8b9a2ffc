"""The hypothesis journal (report/journal.md): add notes and reflections, or show it.

    uv run scripts/journal.py add "Balanced sampling may hurt N precision more than it helps S"
    uv run scripts/journal.py reflect asha_cnn-20261128-143200 "Confirmed: S recall +0.08"
    uv run scripts/journal.py show [sweep_id]

Sweeps append their hypothesis and result themselves (scripts/tune.py).
"""

import sys

from absl import app

from ecgjax.tuning import journal

USAGE = 'usage: journal.py add "text" | reflect <sweep_id> "text" | show [sweep_id]'


def main(argv: list[str]) -> None:
    args = argv[1:]
    if args[:1] == ["add"] and len(args) == 2:
        print(f"added to {journal.add_note(args[1])}")
    elif args[:1] == ["reflect"] and len(args) == 3:
        print(f"added to {journal.add_reflection(args[1], args[2])}")
    elif args[:1] == ["show"] and len(args) <= 2:
        text = "\n\n".join(journal.entries_for(args[1])) if len(args) == 2 else journal.read()
        print(text or f"(nothing in {journal.journal_path()})")
    else:
        sys.exit(USAGE)


if __name__ == "__main__":
    app.run(main)
