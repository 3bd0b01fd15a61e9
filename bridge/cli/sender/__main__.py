"""``python -m bridge.cli.sender URL [OPTIONS]``: the ``send`` command on its own."""

from bridge.cli.sender.cli import main

main()
