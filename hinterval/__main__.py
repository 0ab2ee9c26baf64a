import sys

from hinterval.cli import main

sys.exit(main())
