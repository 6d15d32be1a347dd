"""`python -m mauto`: the same as the `mauto` command."""
from mauto.cli import main

main()
