"""``python -m bridge.sender URL [OPTIONS]``: the ``send`` command on its own."""

from bridge.sender.cli import main

main()
