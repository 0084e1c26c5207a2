"""The ``kerasc`` command the package installs: the same command line as the Rust binary."""

import signal
import sys

from ._kerasc import _cli


def main() -> None:
    # Ctrl-C ends the command at once, as it ends the native binary.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(_cli(["kerasc", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
