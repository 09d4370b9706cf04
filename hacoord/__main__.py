"""``python -m hacoord``: the same as the ``hacoord`` command."""

from hacoord.cli.main import main

main()
