"""`python -m streamrec.cli`: the `streamrec` command."""

from streamrec.cli import main

main()
