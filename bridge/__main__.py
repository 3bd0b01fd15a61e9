"""``python -m bridge``: the ``alm-bridge`` command."""

from bridge import main

main()
