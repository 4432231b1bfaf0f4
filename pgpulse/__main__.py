import sys

from pgpulse.cli import main

sys.exit(main())
