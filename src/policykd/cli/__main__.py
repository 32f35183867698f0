import sys

from policykd.cli.main import main

sys.exit(main())
