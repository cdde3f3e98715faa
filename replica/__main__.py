"""`python -m replica ...` (used by `accelerate launch -m replica train ...`)."""

from replica.cli import main

main()
