import sys

from classwise.cli import main

sys.exit(main())
