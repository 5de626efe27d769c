"""`python -m podtui.cli` (how podtui starts a background `podtui serve`)."""

from . import main

main()
