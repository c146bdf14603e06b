"""`python -m claudesidian_tools`: the `claudesidian-synthetic` command."""

import sys

from claudesidian_tools.command import main

sys.exit(main())
